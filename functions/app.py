"""The Chalice app: middleware, then one Blueprint per domain.

Each Blueprint carries its domain's HTTP routes, schedules and queue handlers; what they need
is built by ``functions.bootstrap``.
"""
from __future__ import annotations

from chalice import Chalice

from functions import bootstrap
from functions.activities.routes import activities_bp
from functions.core import observability, web
from functions.district.routes import district_bp
from functions.identity.routes import identity_bp
from functions.ledger.routes import ledger_bp
from functions.notifications.routes import notifications_bp
from functions.requests.routes import requests_bp
from functions.rewards.routes import rewards_bp
from functions.risk.routes import risk_bp
from functions.safety.routes import safety_bp
from functions.stats.routes import stats_bp
from functions.system.routes import system_bp
from functions.volunteers.routes import volunteers_bp

app = Chalice(app_name="timebank", configure_logs=False)
web.use_authenticator(bootstrap.authenticate)
app.register_middleware(observability.invocation, "all")
app.register_middleware(web.contract_error_shape, "http")

for blueprint in (system_bp, identity_bp, ledger_bp, requests_bp, activities_bp, volunteers_bp, safety_bp,
                  notifications_bp, risk_bp, rewards_bp, district_bp, stats_bp):
    app.register_blueprint(blueprint)
