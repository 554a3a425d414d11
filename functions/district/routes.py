"""通存通兑 entrypoints of a community (API.md "通存通兑: across communities").

For residents and admins: ``GET /v1/transfers/{id}`` (a cross-community transfer's status;
``POST /v1/transfers`` with ``to.community`` is the ledger's route, handed here through the
``CrossCommunity`` port) and ``GET /v1/admin/district/reconcile``.

For the district hub only (signed calls, ``core.signing``; 401 for anything else):
``POST /v1/district/incoming`` (a transfer from another community: decide it, once),
``POST /v1/district/outcomes`` (the outcome of a transfer sent from here: post or void) and
``GET /v1/district/reconcile`` (the hub's daily district-wide report asks every community).

Queue ``district-outgoing`` (the ``district.transfer.initiated`` events) hands each new
transfer to the hub; the ``district-sweep`` schedule asks the hub again about every transfer
pending too long, and ``district-reconcile`` checks the clearing account against the hub's
position daily and fails (the function's error alarm) on a mismatch.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Cron, Rate

from functions import bootstrap
from functions.core.errors import Conflict, Forbidden, InvalidState, NotFound, ValidationError
from functions.core.events import parse_event
from functions.core.messaging import QueueSpec, register_queue
from functions.core.observability import count, logger
from functions.core.settings import get_settings
from functions.core.signing import SIGNATURE_ERRORS
from functions.core.validation import Bool, FieldError, Id, Int, ListOf, Schema, Str, amount_field
from functions.core.web import Auth, RequestContext, route
from functions.district.model import CREDITED, FAILURE_CODES, INITIATED_EVENT, REFUSED
from functions.district.views import local_transfer_view, outgoing_view
from functions.ledger.accounts import household_account, resident_account
from functions.ledger.model import ASSET_CODES
from functions.ledger.views import transfer_view

district_bp = Blueprint(__name__)

OUTGOING = register_queue(QueueSpec("district-outgoing", purpose="district.transfer.initiated → submit to the hub",
                                    events=(INITIATED_EVENT,), max_receive_count=10))

COMMUNITY = r"[a-z][a-z0-9]*(-[a-z0-9]+)*"
HASH = r"[0-9a-f]{64}"
SIGNED_ERRORS = tuple((401, error.code) for error in SIGNATURE_ERRORS)


def _one_receiver(to: dict[str, Any]) -> None:
    if len([k for k in ("household_id", "resident_id", "self") if to.get(k) is not None]) != 1 \
            or to.get("self") is False:
        raise FieldError("收款方须且只能是 household_id、resident_id、self 之一")


DETAILS = Schema({"limit": Str(max_len=40, required=False), "max": Int(min=0, max=10**9, required=False),
                  "cap": Int(min=0, max=10**9, required=False), "asset": Str(max_len=40, required=False),
                  "household_id": Id(max_len=100, required=False), "resident_id": Id(max_len=100, required=False),
                  "to": Str(max_len=40, required=False), "community": Str(max_len=20, required=False)},
                 required=False, name="DistrictFailureDetails")
DELIVERY = Schema({
    "id": Id(max_len=128),
    "source": Str(max_len=20, pattern=COMMUNITY),
    "destination": Str(max_len=20, pattern=COMMUNITY),
    "asset": Str(choices=ASSET_CODES),
    "amount": amount_field(),
    "memo": Str(max_len=200, min_len=0, required=False),
    "to": Schema({"household_id": Id(max_len=100, required=False), "resident_id": Id(max_len=100, required=False),
                  "self": Bool(required=False)}, check=_one_receiver),
    "payer": Schema({"household_id": Id(max_len=100), "phone_hash": Str(max_len=64, pattern=HASH, required=False),
                     "declared": ListOf(Id(max_len=100), max_items=20, required=False)}),
}, name="DistrictDelivery", description="a transfer from another community, as the hub delivers it")
OUTCOME = Schema({
    "id": Id(max_len=128),
    "status": Str(choices=(CREDITED, REFUSED)),
    "failure_code": Str(choices=FAILURE_CODES, required=False),
    "failure_details": DETAILS,
}, name="DistrictOutcome", description="the destination's decision on a transfer sent from here")


def _from_hub(ctx: RequestContext) -> None:
    """Only the hub, signing with the key it shares with this community, gets past here."""
    request = ctx.request
    bootstrap.district_verifier().verify(request.method, request.path, ctx.headers, ctx.raw_body())


# --- residents and admins ------------------------------------------------------------------------

@route(district_bp, "/v1/transfers/{transfer_id}", auth=Auth.VERIFIED_OR_ADMIN,
       path_params={"transfer_id": Id(max_len=128)}, errors=(NotFound,), response="CrossCommunityTransfer")
def get_transfer(ctx: RequestContext, transfer_id: str) -> dict[str, Any]:
    """A transfer the caller's household made (any, for an admin): pending, posted or failed."""
    caller = ctx.caller
    try:
        transfer = bootstrap.district().outgoing(caller, transfer_id)
    except Forbidden:
        transfer = None  # someone else's: as good as absent
    else:
        if transfer is not None:
            return outgoing_view(transfer)
    record = bootstrap.ledger().get_transfer(transfer_id)
    if record is not None and (caller.is_admin or (transfer is None and record.debit_account in (
            household_account(caller.household_id) if caller.household_id else "",
            resident_account(caller.resident_id) if caller.resident_id else ""))):
        return local_transfer_view(transfer_view(record))
    raise NotFound("转账不存在", {"transfer_id": transfer_id})


@route(district_bp, "/v1/admin/district/reconcile", auth=Auth.ADMIN, response="DistrictReconciliation",
       errors=((422, "NO_DISTRICT"), (502, "PEER_UNAVAILABLE")), admin_action="district.reconcile")
def admin_reconcile(ctx: RequestContext) -> dict[str, Any]:
    """This community's hub clearing account against the hub's position for it, with what is in flight."""
    return _reconcile()


def _reconcile() -> dict[str, Any]:
    from functions.district.service import NoDistrict

    if not get_settings().district_id:
        raise NoDistrict()
    return bootstrap.district().reconcile()


# --- the hub's calls -------------------------------------------------------------------------------

@route(district_bp, "/v1/district/incoming", methods=["POST"], auth=Auth.PUBLIC, body=DELIVERY,
       response="DistrictAnswer", errors=(*SIGNED_ERRORS, Conflict))
def incoming(ctx: RequestContext) -> dict[str, Any]:
    """The hub delivers a transfer from another community: credited or refused, decided once."""
    _from_hub(ctx)
    if ctx.data["destination"] != get_settings().community_id:
        raise ValidationError("收款社区不是本社区", {"fields": {"destination": "不是本社区"}})
    return bootstrap.district().receive(ctx.data)


@route(district_bp, "/v1/district/outcomes", methods=["POST"], auth=Auth.PUBLIC, body=OUTCOME,
       response="DistrictAnswer", errors=(*SIGNED_ERRORS, NotFound, Conflict, InvalidState))
def outcome(ctx: RequestContext) -> dict[str, Any]:
    """The hub reports the destination's decision on a transfer sent from here: post or void it."""
    _from_hub(ctx)
    transfer = bootstrap.district().apply_outcome(ctx.data["id"], ctx.data)
    return {"id": transfer.id, "status": transfer.status}


@route(district_bp, "/v1/district/reconcile", auth=Auth.PUBLIC, response="DistrictReconciliation",
       errors=(*SIGNED_ERRORS, (422, "NO_DISTRICT"), (502, "PEER_UNAVAILABLE")))
def hub_reconcile(ctx: RequestContext) -> dict[str, Any]:
    """The hub's daily report asks this community to reconcile (the same report admins see)."""
    _from_hub(ctx)
    return _reconcile()


# --- queue and schedules -----------------------------------------------------------------------------

@district_bp.on_sqs_message(queue=OUTGOING.name, batch_size=OUTGOING.batch_size, name="district-forward")
def district_forward(event: Any) -> dict[str, Any]:
    """New cross-community transfers → the hub; no answer leaves the message for a retry."""
    from functions.core.queue_consumer import process_queue_batch

    service = bootstrap.district()
    return process_queue_batch(event.to_dict(), event.context, OUTGOING.logical_name,
                               lambda message: service.forward(parse_event(message).subject))


@district_bp.schedule(Rate(5, unit=Rate.MINUTES), name="district-sweep")
def district_sweep(event: Any) -> dict[str, Any]:
    """Asks the hub again about every transfer pending for more than five minutes."""
    if not get_settings().district_id:
        return {"skipped": "no district"}
    return bootstrap.district().sweep()


class ReconciliationMismatch(RuntimeError):
    """Raised by the daily check: the function's error alarm is the mismatch alarm."""


@district_bp.schedule(Cron(30, 18, "*", "*", "?", "*"), name="district-reconcile")
def district_reconcile(event: Any) -> dict[str, Any]:
    """Daily at 02:30 Beijing time: the clearing account against the hub; a mismatch fails the run."""
    if not get_settings().district_id:
        return {"skipped": "no district"}
    report = bootstrap.district().reconcile()
    count("DistrictReconcileRuns")
    if not report["ok"]:
        count("DistrictReconcileMismatches")
        logger.error("district reconciliation mismatch", extra={"mismatches": report["mismatches"],
                                                                "assets": report["assets"]})
        raise ReconciliationMismatch(f"clearing account differs from the hub for {report['mismatches']}")
    logger.info("district reconciliation", extra={"ok": True, "assets": report["assets"]})
    return {"ok": True, "assets": report["assets"]}
