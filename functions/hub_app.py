"""The district clearing hub's Chalice app (its own stack: ``infra/hubs/<district>.toml``,
``make package COMMUNITY=hub-<district>``): only the hub's Blueprint, so its package creates only the
hub's tables and queues. Communities call it with signed requests; there is no bearer-token
login here.
"""
from __future__ import annotations

from chalice import Chalice

from functions.core import observability, web
from functions.hub.routes import hub_bp

app = Chalice(app_name="timebank-hub", configure_logs=False)
app.register_middleware(observability.invocation, "all")
app.register_middleware(web.contract_error_shape, "http")
app.register_blueprint(hub_bp)
