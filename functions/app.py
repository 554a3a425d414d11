"""Composition root: the one Chalice app, one Blueprint per domain.

Everything that must be wired once (auth, blueprints, queue and schedule handlers) is wired
here; domains never import each other's entrypoints.
"""
from __future__ import annotations

from chalice import Chalice

from functions.core import web
from functions.core.system_routes import system_bp
from functions.identity.auth import authenticate
from functions.identity.routes import identity_bp
from functions.ledger.routes import ledger_bp
from functions.requests.routes import requests_bp

app = Chalice(app_name="timebank", configure_logs=False)
web.use_authenticator(authenticate)

app.register_blueprint(system_bp)
app.register_blueprint(identity_bp)
app.register_blueprint(ledger_bp)
app.register_blueprint(requests_bp)
