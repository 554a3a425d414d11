"""Entrypoints of volunteers and matching: HTTP (profiles, skills, suggestions) and the
``matching`` queue consumer.

Queue failure policy: a malformed message, an unknown request or a storage fault is reported in
``batchItemFailures`` (the rest of the batch succeeds); SQS retries it and after
``max_receive_count`` receives moves it to the dead-letter queue. A duplicate delivery is not a
failure (see ``Matcher.handle``). Logs carry message ids and error classes, never bodies.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint

from functions.core import clock
from functions.core.messaging import QueueSpec, register_queue
from functions.core.errors import ValidationError
from functions.core.validation import Bool, Str, validate
from functions.core.queue_consumer import process_queue_batch
from functions.core.web import Auth, RequestContext, json_response, page_body, route
from functions.requests.matching import Matcher
from functions.requests.routes import present
from functions.requests.service import MATCHING_QUEUE
from functions.requests.volunteer_store import (
    get_matcher, get_volunteer_service, get_volunteer_store, suggested_requests,
)
from functions.requests.volunteers import APPROVED, PENDING, REJECTED, SKILL_STATUSES

MATCHING = register_queue(QueueSpec(MATCHING_QUEUE, purpose="request.posted → rank volunteers, notify the best few",
                                    consumer_timeout_seconds=120))

matching_bp = Blueprint(__name__)


# --- volunteer profile ------------------------------------------------------------------------

@route(matching_bp, "/v1/volunteers/me", auth=Auth.VERIFIED)
def my_profile(ctx: RequestContext) -> dict:
    return get_volunteer_service().profile(ctx.caller).to_view(clock.now())


@route(matching_bp, "/v1/volunteers/me", methods=["PUT"], auth=Auth.VERIFIED)
def put_profile(ctx: RequestContext) -> dict:
    raw = ctx.json()
    if not isinstance(raw, dict):
        raise ValidationError("请求体必须是 JSON 对象", {"fields": {"body": "must be a JSON object"}})
    problems: dict[str, str] = {}
    try:
        accepting = validate(raw, {"accepting": Bool()})["accepting"]
    except ValidationError as error:
        problems.update(error.details["fields"])
    if raw.get("categories") is None:
        problems["categories"] = "is required"
    if problems:
        raise ValidationError(details={"fields": problems})
    # The category list and the availability windows are checked by the domain (catalogue, HH:MM).
    profile = get_volunteer_service().update_profile(ctx.caller, raw["categories"], raw.get("availability") or [],
                                                     accepting)
    return profile.to_view(clock.now())


# --- skills (志愿帮) ---------------------------------------------------------------------------

@route(matching_bp, "/v1/volunteers/me/skills", methods=["POST"], auth=Auth.VERIFIED, status=201)
def propose_skill(ctx: RequestContext):
    body = ctx.body({"name": Str(max_len=20), "description": Str(max_len=200, min_len=0)})
    skill, created = get_volunteer_service().propose_skill(ctx.caller, body["name"], body["description"])
    return json_response(skill.to_view(), 201 if created else 200)


@route(matching_bp, "/v1/volunteers/me/skills", auth=Auth.VERIFIED)
def my_skills(ctx: RequestContext) -> dict:
    return {"items": [s.to_view() for s in get_volunteer_service().skills_of(ctx.caller)]}


@route(matching_bp, "/v1/admin/skills", auth=Auth.ADMIN)
def list_skills(ctx: RequestContext) -> dict:
    query = ctx.query({"status": Str(choices=SKILL_STATUSES, required=False),
                       "limit": Str(max_len=3, required=False), "cursor": Str(max_len=2000, required=False)})
    limit, cursor = ctx.page()
    items, last_key = get_volunteer_service().list_skills(query.get("status", PENDING), limit, cursor)
    return page_body([s.to_view() for s in items], last_key)


@route(matching_bp, "/v1/admin/skills/{skill_id}/approve", methods=["POST"], auth=Auth.ADMIN)
def approve_skill(ctx: RequestContext, skill_id: str) -> dict:
    return get_volunteer_service().review_skill(ctx.caller.openid, skill_id, APPROVED).to_view()


@route(matching_bp, "/v1/admin/skills/{skill_id}/reject", methods=["POST"], auth=Auth.ADMIN)
def reject_skill(ctx: RequestContext, skill_id: str) -> dict:
    body = ctx.body({"reason": Str(max_len=200, required=False)})
    return get_volunteer_service().review_skill(ctx.caller.openid, skill_id, REJECTED, body.get("reason")).to_view()


# --- suggestions ------------------------------------------------------------------------------

@route(matching_bp, "/v1/requests/suggested", auth=Auth.VERIFIED)
def suggested(ctx: RequestContext) -> dict:
    """Open requests the matcher suggested to the caller, newest suggestion first."""
    ctx.query({"limit": Str(max_len=3, required=False), "cursor": Str(max_len=2000, required=False)})
    limit, cursor = ctx.page()
    items, last_key = suggested_requests(get_volunteer_store(), ctx.caller.resident_id, ctx.caller.household_id,
                                         limit, cursor)
    return page_body([present(r) for r in items], last_key)


# --- the matching queue -----------------------------------------------------------------------

def handle_matching_batch(event: dict[str, Any], context: Any = None, matcher: Matcher | None = None) -> dict[str, Any]:
    matcher = matcher or get_matcher()
    return process_queue_batch(event, context, "matching", matcher.handle)
