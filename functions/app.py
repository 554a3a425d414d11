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
app.register_middleware(web.contract_error_shape, "http")

app.register_blueprint(system_bp)
app.register_blueprint(identity_bp)
app.register_blueprint(ledger_bp)
app.register_blueprint(requests_bp)


# --- schedules of the request lifecycle --------------------------------------------------
from chalice import Rate  # noqa: E402

from functions.requests.wiring import get_request_service  # noqa: E402


@app.schedule(Rate(10, unit=Rate.MINUTES), name="expire-requests")
def expire_requests(event):
    """Unaccepted needs whose start has passed expire and release their hold."""
    return {"expired": get_request_service().expire_due()}


@app.schedule(Rate(30, unit=Rate.MINUTES), name="auto-confirm")
def auto_confirm(event):
    """Completions unconfirmed for the configured period (default 48 h) settle."""
    return {"settled": get_request_service().auto_confirm_due()}


# --- safety: insurance records (queue), evidence photos (routes, retention) -----------------
from chalice import Rate  # noqa: E402,F811

from functions.core.messaging import queue_name  # noqa: E402
from functions.safety.insurance_consumer import handle_insurance_batch  # noqa: E402
from functions.safety.routes import safety_bp  # noqa: E402
from functions.safety.wiring import evidence_service  # noqa: E402

app.register_blueprint(safety_bp)


@app.on_sqs_message(queue=queue_name("insurance"), batch_size=10, name="insurance-records")
def insurance_records(event):
    """Accepted services → one insurance record each; failures reported per message (DLQ after 5)."""
    return handle_insurance_batch(event.to_dict(), event.context)


@app.schedule(Rate(1, unit=Rate.DAYS), name="evidence-retention")
def evidence_retention(event):
    """Deletes check-in/out photos older than the community's retention period (default 180 days)."""
    return {"deleted": evidence_service().purge_expired()}


# --- matching, notifications, reminders ---------------------------------------------------------
from chalice import Rate  # noqa: E402,F811
from functions.core.messaging import queue_name  # noqa: E402,F811
from functions.notifications.routes import notifications_bp  # noqa: E402
from functions.notifications.wiring import send_due_reminders  # noqa: E402
from functions.requests.matching_routes import handle_matching_batch, matching_bp  # noqa: E402

app.register_blueprint(matching_bp)
app.register_blueprint(notifications_bp)


@app.on_sqs_message(queue=queue_name("matching"), batch_size=10, name="match-requests")
def match_requests(event):
    """Posted needs → rank volunteers, notify the best few; failures per message (DLQ after 5)."""
    return handle_matching_batch(event.to_dict(), event.context)


@app.schedule(Rate(5, unit=Rate.MINUTES), name="send-reminders")
def send_reminders(event):
    """One reminder per participant of each accepted service starting within the lead time."""
    return send_due_reminders()


# --- ledger --------------------------------------------------------------------------------
from chalice import Cron  # noqa: E402

from functions.ledger.reconciliation import run_scheduled_check  # noqa: E402


@app.schedule(Cron(0, 18, "*", "*", "?", "*"), name="ledger-check")
def ledger_check(event):
    """Daily at 02:00 Beijing time: the ledger invariants, as a log line and metrics."""
    report = run_scheduled_check()
    return {"ok": report["ok"], "violations": len(report["violations"])}
