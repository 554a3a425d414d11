"""Requests entrypoints: categories and the order lifecycle of API.md, and the lifecycle's
schedules (expiry, auto-confirmation)."""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from functions import bootstrap
from functions.core.errors import Conflict, Forbidden, InsufficientCredits, InvalidState, LimitExceeded, NotFound
from functions.core.observability import logger, openid_hash
from functions.core.validation import Int, Schema, Str, Timestamp
from functions.core.web import Auth, RequestContext, page_body, route
from functions.requests.model import (CATEGORY_CHANGES, MAX_SERVICE_MINUTES, STATUSES, AlreadyAccepted, Backdated,
                                      EvidenceRequired, InsurancePending, OwnRequest, TooEarly)
from functions.requests.service import NewRequest
from functions.requests.views import category_view, request_view

requests_bp = Blueprint(__name__)

CATEGORY = Str(max_len=32, label="服务类别")
# Raised by safety's evidence check behind the EvidenceUploads port (documented here by code).
EVIDENCE_REFUSALS = ((422, "EVIDENCE_NOT_UPLOADED"), (422, "EVIDENCE_TOO_LARGE"), (422, "EVIDENCE_WRONG_TYPE"))
REASON = Schema({"reason": Str(max_len=500, label="原因")}, name="Reason")
EVIDENCE_KEY = Str(max_len=200, required=False, label="影像")

NEW_REQUEST = Schema({
    "category": CATEGORY,
    "title": Str(max_len=60, label="标题"),
    "description": Str(max_len=1000, min_len=0, label="描述"),
    "start_at": Timestamp(label="服务时间"),
    "duration_minutes": Int(min=1, max=MAX_SERVICE_MINUTES, label="服务时长"),
    "beneficiary_member_id": Str(max_len=64, required=False, label="受助人"),
    "from": Str(choices=("household", "resident"), required=False, label="付款账户"),
    "on_behalf_of": Str(max_len=64, required=False, label="代办对象",
                        description="亲情代理: the dependant or elderly member a proxy (or an admin) posts for"),
}, name="NewServiceRequest", example={"category": "tutoring", "title": "辅导三年级数学",
                                      "description": "周末两小时，在我家", "start_at": "2026-12-05T09:00:00+08:00",
                                      "duration_minutes": 120})
CHECK_IN = Schema({"evidence_key": EVIDENCE_KEY}, name="CheckIn")
COMPLETE = Schema({"minutes": Int(min=1, max=MAX_SERVICE_MINUTES, label="服务分钟"), "evidence_key": EVIDENCE_KEY},
                  name="Completion")
CONFIRM = Schema({"rating": Int(min=1, max=5, required=False, label="评分"),
                  "comment": Str(max_len=500, required=False, label="评价"),
                  "on_behalf_of": Str(max_len=64, required=False, label="代办对象",
                                      description="亲情代理: confirm for the request's beneficiary")},
                 name="Confirmation")
RESOLVE = Schema({"outcome": Str(choices=("pay", "refund"), label="处理结果"),
                  "minutes": Int(min=0, max=MAX_SERVICE_MINUTES, required=False, label="认定分钟"),
                  "reason": Str(max_len=500, label="原因")}, name="Resolution")
FEED_QUERY = Schema({"status": Str(choices=("open",), required=False, label="状态"),
                     "category": Str(max_len=32, required=False, label="服务类别")})
MINE_QUERY = Schema({"role": Str(choices=("requester", "volunteer"), required=False, label="身份")})
ADMIN_QUERY = Schema({"status": Str(choices=STATUSES, label="状态")})


# --- categories ---------------------------------------------------------------------------

@route(requests_bp, "/v1/categories", auth=Auth.LOGIN, response="CategoryList")
def list_categories(ctx: RequestContext) -> dict:
    """The 6+X categories with their tariffs."""
    return {"items": [category_view(c) for c in bootstrap.catalog().all()]}


@route(requests_bp, "/v1/admin/categories/{category_id}", methods=["PUT"], auth=Auth.ADMIN,
       path_params={"category_id": Str(max_len=32)}, body=CATEGORY_CHANGES, errors=(NotFound,),
       response="Category", admin_action="category.update")
def update_category(ctx: RequestContext, category_id: str) -> dict:
    """Change a category's tariff; only the fields given change."""
    return category_view(bootstrap.catalog().update(category_id, ctx.data, actor=ctx.caller.openid))


# --- requests -----------------------------------------------------------------------------

def _proxy_audit(action: str, ctx: RequestContext, request: Any) -> None:
    """A 亲情代理 act, as a structured id-only log line (the request itself keeps ``proxy_id``
    and ``closed_by``). Its audit entry (``core.web`` opens one for any ``on_behalf_of``) is
    about the member's household (``identity`` names it when it admits the proxy)."""
    logger.info("proxy action", extra={"audit": True, "action": action, "request_id": request.id,
                                       "member_id": ctx.data.get("on_behalf_of"), "proxy_id": request.proxy_id,
                                       "actor": ctx.caller.resident_id or openid_hash(ctx.caller.openid)})


@route(requests_bp, "/v1/requests", methods=["POST"], auth=Auth.VERIFIED_OR_ADMIN, status=201, body=NEW_REQUEST,
       idempotency="required", response="ServiceRequest",
       errors=(Forbidden, NotFound, Conflict, InsufficientCredits), admin_action="request.post")
def post_request(ctx: RequestContext) -> dict:
    """Post a need; the hold is taken from the household (or, with from = resident, the personal) account."""
    body = ctx.data
    new = NewRequest(category=body["category"], title=body["title"], description=body["description"],
                     start_at=body["start_at"], duration_minutes=body["duration_minutes"],
                     beneficiary_member_id=body.get("beneficiary_member_id"),
                     pay_from_resident=body.get("from") == "resident", on_behalf_of=body.get("on_behalf_of"))
    posted = bootstrap.requests().post(ctx.caller, new, ctx.key)
    if new.on_behalf_of:
        _proxy_audit("request.post", ctx, posted)
    return request_view(posted)


@route(requests_bp, "/v1/requests", auth=Auth.VERIFIED, query=FEED_QUERY, paged=True, errors=(NotFound,),
       response="ServiceRequest")
def feed(ctx: RequestContext) -> dict:
    """Open needs, newest first, without the caller's own household's."""
    items, last_key = bootstrap.requests().feed(ctx.caller, ctx.params.get("category"), ctx.limit, ctx.cursor)
    return page_body([request_view(r) for r in items], last_key)


@route(requests_bp, "/v1/requests/mine", auth=Auth.VERIFIED, query=MINE_QUERY, paged=True,
       response="ServiceRequest")
def my_requests(ctx: RequestContext) -> dict:
    """The household's requests (role=requester) or the caller's services (role=volunteer)."""
    store = bootstrap.request_store()
    if ctx.params.get("role") == "volunteer":
        items, last_key = store.by_volunteer(ctx.caller.resident_id, ctx.limit, ctx.cursor)
    else:
        items, last_key = store.by_household(ctx.caller.household_id, ctx.limit, ctx.cursor)
    return page_body([request_view(r) for r in items], last_key)


@route(requests_bp, "/v1/requests/{request_id}", auth=Auth.VERIFIED_OR_ADMIN, response="ServiceRequest")
def get_request(ctx: RequestContext, request_id: str) -> dict:
    """One request: an open one for any verified resident, a taken one for its parties and admins."""
    return request_view(bootstrap.requests().view(ctx.caller, request_id))


@route(requests_bp, "/v1/requests/{request_id}/accept", methods=["POST"], auth=Auth.VERIFIED,
       response="ServiceRequest", errors=(AlreadyAccepted, InvalidState, OwnRequest))
def accept(ctx: RequestContext, request_id: str) -> dict:
    """Accept (接单): the first volunteer wins."""
    return request_view(bootstrap.requests().accept(ctx.caller, request_id))


@route(requests_bp, "/v1/requests/{request_id}/check-in", methods=["POST"], auth=Auth.VERIFIED, body=CHECK_IN,
       response="ServiceRequest", errors=(Forbidden, InvalidState, InsurancePending, TooEarly, Backdated,
                                          *EVIDENCE_REFUSALS))
def check_in(ctx: RequestContext, request_id: str) -> dict:
    """The volunteer starts the service (with a photo where the category asks for one)."""
    return request_view(bootstrap.requests().check_in(ctx.caller, request_id, ctx.data.get("evidence_key")))


@route(requests_bp, "/v1/requests/{request_id}/complete", methods=["POST"], auth=Auth.VERIFIED, body=COMPLETE,
       response="ServiceRequest", errors=(Forbidden, InvalidState, EvidenceRequired, LimitExceeded,
                                          *EVIDENCE_REFUSALS))
def complete(ctx: RequestContext, request_id: str) -> dict:
    """The volunteer finishes the service and states the minutes served."""
    return request_view(bootstrap.requests().complete(ctx.caller, request_id, ctx.data["minutes"],
                                                      ctx.data.get("evidence_key")))


@route(requests_bp, "/v1/requests/{request_id}/confirm", methods=["POST"], auth=Auth.VERIFIED_OR_ADMIN,
       body=CONFIRM, response="ServiceRequest", errors=(Forbidden, InvalidState, LimitExceeded, OwnRequest),
       admin_action="request.confirm")
def confirm(ctx: RequestContext, request_id: str) -> dict:
    """The requester's household (or an admin) confirms: the hold settles to the volunteer."""
    settled = bootstrap.requests().confirm(ctx.caller, request_id, ctx.data.get("rating"), ctx.data.get("comment"),
                                           on_behalf_of=ctx.data.get("on_behalf_of"))
    if ctx.data.get("on_behalf_of"):
        _proxy_audit("request.confirm", ctx, settled)
    return request_view(settled)


@route(requests_bp, "/v1/requests/{request_id}/cancel", methods=["POST"], auth=Auth.VERIFIED_OR_ADMIN,
       body=REASON, response="ServiceRequest", errors=(Forbidden, InvalidState))
def cancel(ctx: RequestContext, request_id: str) -> dict:
    """The requester (before check-in) or an admin cancels: the hold is released."""
    return request_view(bootstrap.requests().cancel(ctx.caller, request_id, ctx.data["reason"]))


@route(requests_bp, "/v1/requests/{request_id}/dispute", methods=["POST"], auth=Auth.VERIFIED, body=REASON,
       response="ServiceRequest", errors=(Forbidden, InvalidState))
def dispute(ctx: RequestContext, request_id: str) -> dict:
    """Either party disputes a completed service; an admin resolves it."""
    return request_view(bootstrap.requests().dispute(ctx.caller, request_id, ctx.data["reason"]))


@route(requests_bp, "/v1/admin/requests", auth=Auth.ADMIN, query=ADMIN_QUERY, paged=True, response="ServiceRequest",
       admin_action="requests.list")
def admin_requests(ctx: RequestContext) -> dict:
    """Requests by status, newest first: disputes to resolve, services in progress (``overdue``
    ones flagged), and the rest."""
    items, last_key = bootstrap.request_store().by_status(ctx.params["status"], ctx.limit, ctx.cursor)
    return page_body([request_view(r) for r in items], last_key)


@route(requests_bp, "/v1/admin/requests/{request_id}/resolve", methods=["POST"], auth=Auth.ADMIN, body=RESOLVE,
       response="ServiceRequest", errors=(Forbidden, InvalidState, LimitExceeded, OwnRequest),
       admin_action="request.resolve")
def resolve(ctx: RequestContext, request_id: str) -> dict:
    """Resolve a dispute: pay (for the stated minutes) or refund."""
    body = ctx.data
    return request_view(bootstrap.requests().resolve(ctx.caller, request_id, body["outcome"], body.get("minutes"),
                                                     body["reason"]))


# --- schedules ----------------------------------------------------------------------------

@requests_bp.schedule(Rate(10, unit=Rate.MINUTES), name="expire-requests")
def expire_requests(event: Any) -> dict:
    """Unaccepted needs whose start has passed expire and release their hold."""
    return {"expired": bootstrap.requests().expire_due()}


@requests_bp.schedule(Rate(10, unit=Rate.MINUTES), name="watch-services")
def watch_services(event: Any) -> dict:
    """Accepted services nobody checked in to are released (or cancelled); services in progress
    long past their end are flagged for an admin (or completed as booked)."""
    return bootstrap.requests().watch_due()


@requests_bp.schedule(Rate(30, unit=Rate.MINUTES), name="auto-confirm")
def auto_confirm(event: Any) -> dict:
    """Completions unconfirmed for the configured period (default 48 h) settle."""
    return {"settled": bootstrap.requests().auto_confirm_due()}
