"""Risk entrypoints: the admins' review of flags, and the ``risk-flags`` queue (settled
services → flags). The limits themselves have no route: they are enforced inside the
settlement (``RequestService.settle`` → ``RiskService.settlement_writes``)."""
from __future__ import annotations

from typing import Any

from chalice import Blueprint

from functions import bootstrap
from functions.core.errors import InsufficientCredits, InvalidState, NotFound
from functions.core.events import parse_event
from functions.core.messaging import QueueSpec, register_queue
from functions.core.validation import Schema, Str
from functions.core.web import Auth, RequestContext, page_body, route
from functions.requests.model import SETTLED_EVENT
from functions.risk.model import FLAG_STATUSES, OPEN, OUTCOMES
from functions.risk.views import flag_view

RISK_FLAGS = register_queue(QueueSpec("risk-flags", purpose="settled services → repeated-pair and rapid-cycle flags",
                                      events=(SETTLED_EVENT,)))

risk_bp = Blueprint(__name__)

FLAGS_QUERY = Schema({"status": Str(choices=FLAG_STATUSES, required=False, label="状态")})
RESOLUTION = Schema({"outcome": Str(choices=OUTCOMES, label="处理结果"), "reason": Str(max_len=500, label="原因")},
                    name="FlagResolution", example={"outcome": "ok", "reason": "邻里互助，核实无异常"})


@route(risk_bp, "/v1/admin/risk/flags", auth=Auth.ADMIN, query=FLAGS_QUERY, paged=True, response="RiskFlag",
       admin_action="risk.flags.list")
def list_flags(ctx: RequestContext) -> dict:
    """Risk flags (default: open ones), newest first."""
    items, last_key = bootstrap.risk().list_flags(ctx.params.get("status", OPEN), ctx.limit, ctx.cursor)
    return page_body([flag_view(f) for f in items], last_key)


@route(risk_bp, "/v1/admin/risk/flags/{flag_id}/resolve", methods=["POST"], auth=Auth.ADMIN, body=RESOLUTION,
       response="RiskFlag", errors=(NotFound, InvalidState, InsufficientCredits), admin_action="risk.flag.resolve")
def resolve_flag(ctx: RequestContext, flag_id: str) -> dict:
    """Resolve a flag: ok, or reverse the flagged settlements (linked reversals, with the reason)."""
    return flag_view(bootstrap.risk().resolve(flag_id, ctx.data["outcome"], ctx.data["reason"], ctx.caller.actor))


@risk_bp.on_sqs_message(queue=RISK_FLAGS.name, batch_size=RISK_FLAGS.batch_size, name="risk-flags")
def risk_flags(event: Any) -> dict[str, Any]:
    """Settled services → the pair's flags, once per settlement; failures per message (DLQ after 5)."""
    from functions.core.queue_consumer import process_queue_batch

    service = bootstrap.risk()
    return process_queue_batch(event.to_dict(), event.context, RISK_FLAGS.logical_name,
                               lambda message: service.record_settlement(parse_event(message)))
