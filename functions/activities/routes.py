"""Activities entrypoints (API.md "Community activities"): publishing and closing (admins),
the list, sign-up and on-site check-in/out (residents), and the reminder schedule."""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate, Response

from functions import bootstrap
from functions.activities import model as am
from functions.activities.model import (AWARD_MODES, MAX_CAPACITY, ActivityFull, AlreadySignedUp, Award,
                                        Backdated, InvalidCode, NewActivity)
from functions.activities.views import (activity_summary, activity_view, check_view, close_view, code_view,
                                        signup_view)
from functions.core import clock
from functions.core.errors import Forbidden, IdempotencyMismatch, InvalidState, NotFound
from functions.core.validation import Bool, Int, Schema, Str, Timestamp
from functions.core.web import Auth, RequestContext, page_body, route
from functions.ledger.model import ASSET_CODES, POINT_KINDS

activities_bp = Blueprint(__name__)

ACTIVITY_ASSETS = tuple(code for code in ASSET_CODES if POINT_KINDS[code].transferable)
AWARD = Schema({"mode": Str(choices=AWARD_MODES, label="奖励方式"),
                "minutes": Int(min=1, max=600, label="奖励分钟",
                               description="per_hour: credited per hour attended; fixed: for attending")},
               name="ActivityAward", label="奖励")
NEW_ACTIVITY = Schema({
    "title": Str(max_len=60, label="标题"),
    "description": Str(max_len=2000, min_len=0, label="描述"),
    "place": Str(max_len=100, label="地点"),
    "start_at": Timestamp(label="开始时间"),
    "end_at": Timestamp(label="结束时间"),
    "capacity": Int(min=1, max=MAX_CAPACITY, label="名额"),
    "asset": Str(choices=ACTIVITY_ASSETS, required=False, label="积分种类", description="default volunteer (志愿时)"),
    "award": AWARD,
    "requires_insurance": Bool(required=False, label="是否需要保险"),
}, name="NewActivity", example={"title": "社区环境清洁日", "description": "清理楼道与绿地", "place": "社区广场",
                                "start_at": "2026-12-06T09:00:00+08:00", "end_at": "2026-12-06T11:00:00+08:00",
                                "capacity": 30, "asset": "volunteer", "award": {"mode": "per_hour", "minutes": 60},
                                "requires_insurance": True})
LIST_QUERY = Schema({"status": Str(choices=am.PHASES, required=False, label="状态",
                                   description="upcoming (default), ongoing, ended or closed")})
CODE = Schema({"code": Str(max_len=16, label="签到码")}, name="OnSiteCode", example={"code": "123456"})


@route(activities_bp, "/v1/admin/activities", methods=["POST"], auth=Auth.ADMIN, status=201, body=NEW_ACTIVITY,
       idempotency="optional", response="Activity", errors=(IdempotencyMismatch, Backdated),
       admin_action="activity.publish")
def publish(ctx: RequestContext) -> dict:
    """Publish a community activity (with an Idempotency-Key a retry returns the same activity)."""
    body = ctx.data
    new = NewActivity(title=body["title"], description=body["description"], place=body["place"],
                      start_at=body["start_at"], end_at=body["end_at"], capacity=body["capacity"],
                      asset=body.get("asset", am.DEFAULT_ASSET),
                      award=Award(body["award"]["mode"], body["award"]["minutes"]),
                      requires_insurance=body.get("requires_insurance", False))
    activity, _ = bootstrap.activities().publish(ctx.caller, new, ctx.key)
    return activity_view(activity, clock.now())


@route(activities_bp, "/v1/activities", auth=Auth.VERIFIED_OR_ADMIN, query=LIST_QUERY, paged=True,
       response="ActivitySummary")
def list_activities(ctx: RequestContext) -> dict:
    """Activities by phase: upcoming (soonest first), ongoing, ended, closed (latest first)."""
    items, last_key = bootstrap.activities().page(ctx.params.get("status", am.UPCOMING), ctx.limit, ctx.cursor)
    now = clock.now()
    return page_body([activity_summary(a, now) for a in items], last_key)


@route(activities_bp, "/v1/activities/{activity_id}", auth=Auth.VERIFIED_OR_ADMIN, response="Activity")
def get_activity(ctx: RequestContext, activity_id: str) -> dict:
    """One activity, with the caller's own status in it."""
    activity, mine = bootstrap.activities().mine(ctx.caller, activity_id)
    return activity_view(activity, clock.now(), mine, with_mine=True)


@route(activities_bp, "/v1/activities/{activity_id}/signup", methods=["POST"], auth=Auth.VERIFIED, status=201,
       response="ActivitySignup", errors=(ActivityFull, AlreadySignedUp, InvalidState))
def sign_up(ctx: RequestContext, activity_id: str) -> dict:
    """Take a place (a conditional write: never more sign-ups than places)."""
    return signup_view(bootstrap.activities().sign_up(ctx.caller, activity_id))


@route(activities_bp, "/v1/activities/{activity_id}/signup", methods=["DELETE"], auth=Auth.VERIFIED, status=204,
       errors=(InvalidState,))
def cancel_signup(ctx: RequestContext, activity_id: str) -> Response:
    """Give the place back (before the activity starts)."""
    bootstrap.activities().cancel_signup(ctx.caller, activity_id)
    return Response(body="", status_code=204)


@route(activities_bp, "/v1/admin/activities/{activity_id}/code", auth=Auth.ADMIN, response="ActivityCode",
       errors=(InvalidState,), admin_action="activity.code")
def on_site_code(ctx: RequestContext, activity_id: str) -> dict:
    """The on-site check-in/out code to show: 6 digits, a new one every 10 minutes."""
    return code_view(bootstrap.activities().code(activity_id))


@route(activities_bp, "/v1/activities/{activity_id}/check-in", methods=["POST"], auth=Auth.VERIFIED, body=CODE,
       response="ActivityCheck", errors=(Forbidden, InvalidState, InvalidCode))
def check_in(ctx: RequestContext, activity_id: str) -> dict:
    """Check in on site with the code shown there."""
    return check_view(bootstrap.activities().check_in(ctx.caller, activity_id, ctx.data["code"]))


@route(activities_bp, "/v1/activities/{activity_id}/check-out", methods=["POST"], auth=Auth.VERIFIED, body=CODE,
       response="ActivityCheck", errors=(Forbidden, InvalidState, InvalidCode))
def check_out(ctx: RequestContext, activity_id: str) -> dict:
    """Check out on site with the code shown there."""
    return check_view(bootstrap.activities().check_out(ctx.caller, activity_id, ctx.data["code"]))


@route(activities_bp, "/v1/admin/activities/{activity_id}/close", methods=["POST"], auth=Auth.ADMIN,
       response="ActivityClose", errors=(InvalidState,), admin_action="activity.close")
def close(ctx: RequestContext, activity_id: str) -> dict:
    """Pay everyone checked in and out, from issuance, once; closing again pays nothing more."""
    return close_view(bootstrap.activities().close(ctx.caller, activity_id))


@activities_bp.schedule(Rate(5, unit=Rate.MINUTES), name="activity-reminders")
def activity_reminders(event: Any) -> dict:
    """One reminder per consenting participant of each activity starting within the lead time."""
    return bootstrap.activity_reminders().run()
