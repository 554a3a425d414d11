"""The hub's entrypoints (the hub stack's app, ``functions/hub_app.py``): for community stacks
only, every call signed with the key of the calling community (``core.signing``; 401 for
anything else). Never for the mini-program.

- ``POST /v1/hub/transfers``  a community hands over a transfer (idempotent by id; the source
  named in it must be the signing community);
- ``GET /v1/hub/position``    the signing community's net positions and open transfers;
- ``GET /v1/hub/reconcile``   the district-wide report.

Queues: ``hub-deliveries`` (``hub.transfer.received`` → ask the destination) and
``hub-outcomes`` (``hub.transfer.resolved`` → tell the source). Schedules: ``hub-sweep``
(ask again about what is stuck), ``hub-reconcile`` (daily report; a mismatch fails the run,
which is the function's error alarm) and ``hub-relay-events`` (the outbox sweep).
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Cron, Rate

from functions import bootstrap
from functions.core.errors import Conflict, Forbidden
from functions.core.events import parse_event
from functions.core.messaging import QueueSpec, register_queue
from functions.core.observability import count, logger
from functions.core.signing import SIGNATURE_ERRORS
from functions.core.validation import Bool, FieldError, Id, ListOf, Schema, Str, amount_field
from functions.core.web import Auth, RequestContext, route
from functions.hub.model import RECEIVED_EVENT, RESOLVED_EVENT
from functions.ledger.model import ASSET_CODES

hub_bp = Blueprint(__name__)

DELIVERIES = register_queue(QueueSpec("hub-deliveries", purpose="hub.transfer.received → the destination decides",
                                      events=(RECEIVED_EVENT,), max_receive_count=10, stack="hub"))
OUTCOMES = register_queue(QueueSpec("hub-outcomes", purpose="hub.transfer.resolved → the source posts or voids",
                                    events=(RESOLVED_EVENT,), max_receive_count=10, stack="hub"))

COMMUNITY = r"[a-z][a-z0-9]*(-[a-z0-9]+)*"
SIGNED_ERRORS = tuple((401, error.code) for error in SIGNATURE_ERRORS)


def _one_receiver(to: dict[str, Any]) -> None:
    if len([k for k in ("household_id", "resident_id", "self") if to.get(k) is not None]) != 1 \
            or to.get("self") is False:
        raise FieldError("收款方须且只能是 household_id、resident_id、self 之一")


SUBMISSION = Schema({
    "id": Id(max_len=128),
    "source": Str(max_len=20, pattern=COMMUNITY),
    "destination": Str(max_len=20, pattern=COMMUNITY),
    "asset": Str(choices=ASSET_CODES),
    "amount": amount_field(),
    "memo": Str(max_len=200, min_len=0, required=False),
    "to": Schema({"household_id": Id(max_len=100, required=False), "resident_id": Id(max_len=100, required=False),
                  "self": Bool(required=False)}, check=_one_receiver),
    "payer": Schema({"household_id": Id(max_len=100),
                     "phone_hash": Str(max_len=64, pattern=r"[0-9a-f]{64}", required=False),
                     "declared": ListOf(Id(max_len=100), max_items=20, required=False)}),
}, name="HubSubmission")


def _community(ctx: RequestContext) -> str:
    """The community whose key signed this call."""
    request = ctx.request
    return bootstrap.hub_verifier().verify(request.method, request.path, ctx.headers, ctx.raw_body())


@route(hub_bp, "/v1/health", auth=Auth.PUBLIC, response="HubHealth")
def health(ctx: RequestContext) -> dict[str, Any]:
    """Liveness."""
    return {"status": "ok", "stack": "hub"}


@route(hub_bp, "/v1/hub/transfers", methods=["POST"], auth=Auth.PUBLIC, body=SUBMISSION, response="HubAnswer",
       errors=(*SIGNED_ERRORS, Forbidden, Conflict))
def submit(ctx: RequestContext) -> dict[str, Any]:
    """A community hands over a transfer of its resident's: recorded once, then delivered."""
    return bootstrap.hub().submit(_community(ctx), ctx.data)


@route(hub_bp, "/v1/hub/position", auth=Auth.PUBLIC, response="HubPosition", errors=SIGNED_ERRORS)
def position(ctx: RequestContext) -> dict[str, Any]:
    """The signing community's net positions and the open transfers naming it."""
    return bootstrap.hub().position(_community(ctx))


@route(hub_bp, "/v1/hub/reconcile", auth=Auth.PUBLIC, response="HubReport", errors=SIGNED_ERRORS)
def reconcile(ctx: RequestContext) -> dict[str, Any]:
    """The district-wide report (positions only: the communities are asked by the daily run)."""
    _community(ctx)
    return bootstrap.hub().report(ask_communities=False)


@hub_bp.on_sqs_message(queue=DELIVERIES.name, batch_size=DELIVERIES.batch_size, name="hub-deliver")
def hub_deliver(event: Any) -> dict[str, Any]:
    """Recorded transfers → their destination decides; no answer leaves the message for a retry."""
    from functions.core.queue_consumer import process_queue_batch

    service = bootstrap.hub()
    return process_queue_batch(event.to_dict(), event.context, DELIVERIES.logical_name,
                               lambda message: service.deliver(parse_event(message).subject))


@hub_bp.on_sqs_message(queue=OUTCOMES.name, batch_size=OUTCOMES.batch_size, name="hub-notify")
def hub_notify(event: Any) -> dict[str, Any]:
    """Recorded outcomes → the source posts or voids its hold."""
    from functions.core.queue_consumer import process_queue_batch

    service = bootstrap.hub()
    return process_queue_batch(event.to_dict(), event.context, OUTCOMES.logical_name,
                               lambda message: service.notify(parse_event(message).subject))


@hub_bp.schedule(Rate(5, unit=Rate.MINUTES), name="hub-sweep")
def hub_sweep(event: Any) -> dict[str, Any]:
    """Asks again about every transfer open for more than five minutes."""
    return bootstrap.hub().sweep()


class DistrictMismatch(RuntimeError):
    """Raised by the daily report: the function's error alarm is the district's mismatch alarm."""


@hub_bp.schedule(Cron(0, 19, "*", "*", "?", "*"), name="hub-reconcile")
def hub_reconcile(event: Any) -> dict[str, Any]:
    """Daily at 03:00 Beijing time: the district-wide report; a mismatch anywhere fails the run."""
    report = bootstrap.hub().report()
    count("HubReconcileRuns")
    if not report["ok"]:
        count("HubReconcileMismatches")
        logger.error("district report mismatch", extra={"violations": report["violations"][:20]})
        raise DistrictMismatch(f"{len(report['violations'])} violation(s) in the district report")
    logger.info("district report", extra={"ok": True, "totals": report["totals"], "open": report["open"]})
    return {"ok": True, "totals": report["totals"], "open": report["open"]}


@hub_bp.schedule(Rate(1, unit=Rate.MINUTES), name="hub-relay-events")
def hub_relay_events(event: Any) -> dict[str, Any]:
    """Sends the hub's events the eager dispatch after their commit did not (a crash, SQS down)."""
    return bootstrap.relay().sweep()
