"""Requests HTTP entrypoints: categories and the order lifecycle of API.md."""
from __future__ import annotations

from typing import Any

from chalice import Blueprint

from functions.core import clock
from functions.core.errors import ValidationError
from functions.core.validation import Int, Str, Timestamp
from functions.core.web import Auth, RequestContext, page_body, route
from functions.requests.catalog import get_catalog
from functions.requests.lifecycle import MAX_SERVICE_MINUTES, ServiceRequest
from functions.requests.service import NewRequest
from functions.requests.wiring import get_request_service

requests_bp = Blueprint(__name__)

REASON = Str(max_len=500)
EVIDENCE_KEY = Str(max_len=200, required=False)


def present(request: ServiceRequest) -> dict[str, Any]:
    """The request as residents see it; evidence keys stay private (links come from /evidence)."""
    def iso(value):
        return clock.isoformat(value) if value else None

    return {
        "id": request.id, "status": request.status, "category": request.category,
        "title": request.title, "description": request.description,
        "start_at": iso(request.start_at), "duration_minutes": request.duration_minutes,
        "requester_id": request.requester_id, "household_id": request.household_id,
        "beneficiary_member_id": request.beneficiary_member_id,
        "volunteer_id": request.volunteer_id, "credits_held": request.credits_held,
        "credits_paid": request.credits_paid, "created_at": iso(request.created_at),
        "accepted_at": iso(request.accepted_at), "checked_in_at": iso(request.checked_in_at),
        "completed_at": iso(request.completed_at), "completed_minutes": request.completed_minutes,
        "settled_at": iso(request.settled_at), "rating": request.rating,
        "evidence_count": len(request.evidence_keys), "reason": request.reason,
    }


# --- categories ---------------------------------------------------------------------------

@route(requests_bp, "/v1/categories", auth=Auth.LOGIN)
def list_categories(ctx: RequestContext) -> dict:
    return {"items": [c.to_dict() for c in get_catalog().all()]}


@route(requests_bp, "/v1/admin/categories/{category_id}", methods=["PUT"], auth=Auth.ADMIN)
def update_category(ctx: RequestContext, category_id: str) -> dict:
    changes = ctx.json()
    if not isinstance(changes, dict):
        raise ValidationError(details={"fields": {"body": "must be a JSON object"}})
    return get_catalog().update(category_id, changes, actor=ctx.caller.openid).to_dict()


# --- requests -----------------------------------------------------------------------------

@route(requests_bp, "/v1/requests", methods=["POST"], auth=Auth.VERIFIED, status=201)
def post_request(ctx: RequestContext) -> dict:
    key = ctx.idempotency_key()
    body = ctx.body({
        "category": Str(max_len=32),
        "title": Str(max_len=60),
        "description": Str(max_len=1000, min_len=0),
        "start_at": Timestamp(),
        "duration_minutes": Int(min=1, max=MAX_SERVICE_MINUTES),
        "beneficiary_member_id": Str(max_len=64, required=False),
        "from": Str(choices=("household", "resident"), required=False),
    })
    new = NewRequest(category=body["category"], title=body["title"], description=body["description"],
                     start_at=body["start_at"], duration_minutes=body["duration_minutes"],
                     beneficiary_member_id=body.get("beneficiary_member_id"),
                     pay_from_resident=body.get("from") == "resident")
    return present(get_request_service().post(ctx.caller, new, key))


@route(requests_bp, "/v1/requests", auth=Auth.VERIFIED)
def feed(ctx: RequestContext) -> dict:
    query = ctx.query({"status": Str(choices=("open",), required=False),
                       "category": Str(max_len=32, required=False),
                       "limit": Str(max_len=3, required=False), "cursor": Str(max_len=2000, required=False)})
    limit, cursor = ctx.page()
    items, last_key = get_request_service().feed(ctx.caller, query.get("category"), limit, cursor)
    return page_body([present(r) for r in items], last_key)


@route(requests_bp, "/v1/requests/mine", auth=Auth.VERIFIED)
def my_requests(ctx: RequestContext) -> dict:
    query = ctx.query({"role": Str(choices=("requester", "volunteer"), required=False),
                       "limit": Str(max_len=3, required=False), "cursor": Str(max_len=2000, required=False)})
    limit, cursor = ctx.page()
    store = get_request_service().store
    if query.get("role") == "volunteer":
        items, last_key = store.by_volunteer(ctx.caller.resident_id, limit, cursor)
    else:
        items, last_key = store.by_household(ctx.caller.household_id, limit, cursor)
    return page_body([present(r) for r in items], last_key)


@route(requests_bp, "/v1/requests/{request_id}", auth=Auth.VERIFIED_OR_ADMIN)
def get_request(ctx: RequestContext, request_id: str) -> dict:
    return present(get_request_service().get(request_id))


@route(requests_bp, "/v1/requests/{request_id}/accept", methods=["POST"], auth=Auth.VERIFIED)
def accept(ctx: RequestContext, request_id: str) -> dict:
    return present(get_request_service().accept(ctx.caller, request_id))


@route(requests_bp, "/v1/requests/{request_id}/check-in", methods=["POST"], auth=Auth.VERIFIED)
def check_in(ctx: RequestContext, request_id: str) -> dict:
    body = ctx.body({"evidence_key": EVIDENCE_KEY})
    return present(get_request_service().check_in(ctx.caller, request_id, body.get("evidence_key")))


@route(requests_bp, "/v1/requests/{request_id}/complete", methods=["POST"], auth=Auth.VERIFIED)
def complete(ctx: RequestContext, request_id: str) -> dict:
    body = ctx.body({"minutes": Int(min=1, max=MAX_SERVICE_MINUTES), "evidence_key": EVIDENCE_KEY})
    return present(get_request_service().complete(ctx.caller, request_id, body["minutes"],
                                                  body.get("evidence_key")))


@route(requests_bp, "/v1/requests/{request_id}/confirm", methods=["POST"], auth=Auth.VERIFIED_OR_ADMIN)
def confirm(ctx: RequestContext, request_id: str) -> dict:
    body = ctx.body({"rating": Int(min=1, max=5, required=False), "comment": Str(max_len=500, required=False)})
    return present(get_request_service().confirm(ctx.caller, request_id, body.get("rating"), body.get("comment")))


@route(requests_bp, "/v1/requests/{request_id}/cancel", methods=["POST"], auth=Auth.VERIFIED_OR_ADMIN)
def cancel(ctx: RequestContext, request_id: str) -> dict:
    body = ctx.body({"reason": REASON})
    return present(get_request_service().cancel(ctx.caller, request_id, body["reason"]))


@route(requests_bp, "/v1/requests/{request_id}/dispute", methods=["POST"], auth=Auth.VERIFIED)
def dispute(ctx: RequestContext, request_id: str) -> dict:
    body = ctx.body({"reason": REASON})
    return present(get_request_service().dispute(ctx.caller, request_id, body["reason"]))


@route(requests_bp, "/v1/admin/requests/{request_id}/resolve", methods=["POST"], auth=Auth.ADMIN)
def resolve(ctx: RequestContext, request_id: str) -> dict:
    body = ctx.body({"outcome": Str(choices=("pay", "refund")),
                     "minutes": Int(min=0, max=MAX_SERVICE_MINUTES, required=False), "reason": REASON})
    return present(get_request_service().resolve(ctx.caller, request_id, body["outcome"],
                                                 body.get("minutes"), body["reason"]))
