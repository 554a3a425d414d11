"""Volunteers entrypoints: profiles, skills and suggestions over HTTP; the ``matching`` queue
(request.posted → rank and notify) and the ``volunteer-stats`` queue (the lifecycle's events →
the statistics matching ranks by).

Queue failure policy: a malformed message, an unknown request or a storage fault is reported in
``batchItemFailures`` (the rest of the batch succeeds); SQS retries it and after
``max_receive_count`` receives moves it to the dead-letter queue. A duplicate delivery is not a
failure (see ``Matcher.handle`` and ``VolunteerService.record``). Logs carry message ids and
error classes, never bodies.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint

from functions import bootstrap
from functions.core import clock
from functions.core.errors import AlreadyExists, Conflict, InvalidState, LimitExceeded, NotFound
from functions.core.events import parse_event
from functions.core.messaging import QueueSpec, register_queue
from functions.core.validation import Bool, Int, ListOf, Schema, Str
from functions.core.web import Auth, RequestContext, json_response, page_body, route
from functions.requests.model import ACCEPTED_EVENT, CANCELLED_EVENT, POSTED_EVENT, RELEASED_EVENT, SETTLED_EVENT
from functions.requests.views import request_view
from functions.volunteers.model import APPROVED, MAX_WINDOWS, PENDING, REJECTED, SKILL_STATUSES
from functions.volunteers.views import profile_view, skill_view

MATCHING = register_queue(QueueSpec("matching", purpose="request.posted → rank volunteers, notify the best few",
                                    events=(POSTED_EVENT,), consumer_timeout_seconds=120))
STATS = register_queue(QueueSpec("volunteer-stats", purpose="accepted / settled / cancelled / released → volunteer statistics",
                                 events=(ACCEPTED_EVENT, SETTLED_EVENT, CANCELLED_EVENT, RELEASED_EVENT)))

volunteers_bp = Blueprint(__name__)


HHMM = r"([01]\d|2[0-3]):[0-5]\d|24:00"
WINDOW = Schema({"weekday": Int(min=1, max=7, label="星期"),
                 "start": Str(max_len=5, pattern=HHMM, label="开始时间"),
                 "end": Str(max_len=5, pattern=HHMM, label="结束时间")},
                name="AvailabilityWindow", description="weekday 1 (Monday) … 7 (Sunday), Asia/Shanghai; end after start")


PROFILE = Schema({
    "categories": ListOf(Str(max_len=32), max_items=20, label="服务类别"),
    "availability": ListOf(WINDOW, max_items=MAX_WINDOWS, required=False, label="可服务时间"),
    "accepting": Bool(label="是否接单"),
}, name="VolunteerProfileUpdate")
SKILL = Schema({"name": Str(max_len=20, label="技能名称"), "description": Str(max_len=200, min_len=0, label="说明")},
               name="NewSkill")
SKILL_REJECTION = Schema({"reason": Str(max_len=200, required=False, label="原因")}, name="SkillRejection")
SKILLS_QUERY = Schema({"status": Str(choices=SKILL_STATUSES, required=False, label="状态")})


# --- volunteer profile ------------------------------------------------------------------------

@route(volunteers_bp, "/v1/volunteers/me", auth=Auth.VERIFIED, errors=(NotFound,), response="VolunteerProfile")
def my_profile(ctx: RequestContext) -> dict:
    """The caller's volunteer profile and statistics."""
    return profile_view(bootstrap.volunteers().profile(ctx.caller), clock.now())


@route(volunteers_bp, "/v1/volunteers/me", methods=["PUT"], auth=Auth.VERIFIED, body=PROFILE, errors=(Conflict,),
       response="VolunteerProfile")
def put_profile(ctx: RequestContext) -> dict:
    """Declare categories, weekly availability and whether to accept matches."""
    body = ctx.data
    profile = bootstrap.volunteers().update_profile(ctx.caller, body["categories"], body.get("availability") or [],
                                                    body["accepting"])
    return profile_view(profile, clock.now())


# --- skills (志愿帮) ---------------------------------------------------------------------------

@route(volunteers_bp, "/v1/volunteers/me/skills", methods=["POST"], auth=Auth.VERIFIED, status=201, body=SKILL,
       response="Skill", responses={200: "Skill"}, errors=(AlreadyExists, LimitExceeded))
def propose_skill(ctx: RequestContext):
    """Propose a 志愿帮 skill for an admin to approve (the same proposal again: 200)."""
    skill, created = bootstrap.volunteers().propose_skill(ctx.caller, ctx.data["name"], ctx.data["description"])
    return json_response(skill_view(skill), 201 if created else 200)


@route(volunteers_bp, "/v1/volunteers/me/skills", auth=Auth.VERIFIED, response="SkillList")
def my_skills(ctx: RequestContext) -> dict:
    """The caller's skills with their review status."""
    return {"items": [skill_view(s) for s in bootstrap.volunteers().skills_of(ctx.caller)]}


@route(volunteers_bp, "/v1/admin/skills", auth=Auth.ADMIN, query=SKILLS_QUERY, paged=True, response="Skill",
       admin_action="skills.list")
def list_skills(ctx: RequestContext) -> dict:
    """Skills by review status (default pending)."""
    items, last_key = bootstrap.volunteers().list_skills(ctx.params.get("status", PENDING), ctx.limit, ctx.cursor)
    return page_body([skill_view(s) for s in items], last_key)


@route(volunteers_bp, "/v1/admin/skills/{skill_id}/approve", methods=["POST"], auth=Auth.ADMIN,
       errors=(InvalidState,), response="Skill", admin_action="skill.approve")
def approve_skill(ctx: RequestContext, skill_id: str) -> dict:
    """Approve a skill: its volunteer becomes matchable for 志愿帮."""
    return skill_view(bootstrap.volunteers().review_skill(ctx.caller.openid, skill_id, APPROVED))


@route(volunteers_bp, "/v1/admin/skills/{skill_id}/reject", methods=["POST"], auth=Auth.ADMIN,
       body=SKILL_REJECTION, errors=(InvalidState,), response="Skill", admin_action="skill.reject")
def reject_skill(ctx: RequestContext, skill_id: str) -> dict:
    """Reject (or withdraw) a skill."""
    return skill_view(bootstrap.volunteers().review_skill(ctx.caller.openid, skill_id, REJECTED,
                                                          ctx.data.get("reason")))


# --- suggestions ------------------------------------------------------------------------------

@route(volunteers_bp, "/v1/requests/suggested", auth=Auth.VERIFIED, paged=True, response="ServiceRequest")
def suggested(ctx: RequestContext) -> dict:
    """Open requests the matcher suggested to the caller, newest suggestion first."""
    items, last_key = bootstrap.volunteers().suggested(ctx.caller.resident_id, ctx.caller.household_id,
                                                       ctx.limit, ctx.cursor)
    return page_body([request_view(r) for r in items], last_key)


# --- the queues -------------------------------------------------------------------------------

@volunteers_bp.on_sqs_message(queue=MATCHING.name, batch_size=MATCHING.batch_size, name="match-requests")
def match_requests(event: Any) -> dict[str, Any]:
    """Posted needs → rank volunteers, notify the best few; failures per message (DLQ after 5)."""
    from functions.core.queue_consumer import process_queue_batch

    matcher = bootstrap.matcher()
    return process_queue_batch(event.to_dict(), event.context, MATCHING.logical_name,
                               lambda message: matcher.handle(parse_event(message)))


@volunteers_bp.on_sqs_message(queue=STATS.name, batch_size=STATS.batch_size, name="volunteer-stats")
def volunteer_stats(event: Any) -> dict[str, Any]:
    """Accepted, settled and cancelled services → the volunteer's statistics, once per request."""
    from functions.core.queue_consumer import process_queue_batch

    service = bootstrap.volunteers()
    return process_queue_batch(event.to_dict(), event.context, STATS.logical_name,
                               lambda message: service.record(parse_event(message)))
