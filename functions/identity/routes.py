"""Identity entrypoints: login, registration, households, relatives, verification.

Thin: the route declarations validate, ``IdentityService`` decides, ``views`` shape the answer
(and mask phones). Error codes beyond API.md's: 403 ``NOT_REGISTERED`` (logged in, no resident
record), 401 ``INVALID_LOGIN_CODE``, 429 ``RATE_LIMITED`` and 403 ``LOGIN_BLOCKED`` (WeChat
refused the login), 422 ``OWN_HOUSEHOLD`` (declaring one's own household as relatives).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from chalice import Blueprint, Response

from functions import bootstrap
from functions.core import clock
from functions.core.caller import Caller
from functions.core.errors import (AlreadyExists, BusinessRuleViolation, Conflict, IdempotencyMismatch,
                                   InvalidState, LimitExceeded, NotFound, UpstreamError, ValidationError)
from functions.core.events import parse_event
from functions.core.messaging import QueueSpec, register_queue
from functions.core.observability import actor_ref, logger
from functions.core.validation import Bool, Id, Int, ListOf, Schema, Str
from functions.core.web import Auth, RequestContext, json_response, page_body, route
from functions.identity.model import (MIN_BIRTH_YEAR, PENDING, PHONE_PATTERN, PROXY, RELATIONS, REPUTATION_EVENTS,
                                     ROLES, STATUSES, CONTENT_TYPES, ImportedElsewhere, ImportEmpty, ImportInvalid,
                                     ImportTooLarge, InvalidProxy, Resident)
from functions.identity.views import declaration_view, dependant_view, member_summary, resident_view
from functions.identity.wechat import InvalidLoginCode, LoginBlocked, LoginRateLimited

REPUTATION = register_queue(QueueSpec("reputation",
                                      purpose="settled services and no-shows → the volunteer's reputation",
                                      events=REPUTATION_EVENTS))

identity_bp = Blueprint(__name__)


class _BirthYear(Int):
    """Up to the current year, whenever the request comes."""

    def clean(self, value: Any) -> int:
        year = super().clean(value)
        if year > clock.now().year:
            raise self.reason(f"不能大于 {clock.now().year}")
        return year


BIRTH_YEAR = _BirthYear(min=MIN_BIRTH_YEAR, max=2200, label="出生年份")
RELATION = Str(choices=RELATIONS, label="关系")

LOGIN = Schema({"code": Str(max_len=128, label="登录凭证")}, name="LoginRequest", example={"code": "dev-demo-resident-a"})
REGISTRATION = Schema({
    "name": Str(max_len=40, label="姓名"),
    "phone": Str(max_len=11, pattern=PHONE_PATTERN, label="手机号"),
    "building": Str(max_len=20, label="楼栋"),
    "unit": Str(max_len=20, label="单元"),
    "room": Str(max_len=20, label="房号"),
    "birth_year": BIRTH_YEAR,
}, name="Registration", example={"name": "王阿姨", "phone": "13812345678", "building": "3", "unit": "1",
                                 "room": "502", "birth_year": 1956})
DEPENDANT = Schema({"name": Str(max_len=40, label="姓名"), "birth_year": BIRTH_YEAR, "relation": RELATION},
                   name="NewDependant", example={"name": "外婆", "birth_year": 1940, "relation": "grandparent"})
def _relation_unless_remote(body: dict[str, Any]) -> None:
    if body.get("community") is None and body.get("relation") is None:
        raise ValidationError("关系必填", {"fields": {"relation": "关系必填"}})


RELATIVE = Schema({"household_id": Id(max_len=100, label="住户"),
                   "relation": Str(choices=RELATIONS, required=False, label="关系",
                                   description="required for a household of this community"),
                   # 通存通兑: a household of another community of the district (each side
                   # declares the other in its own community).
                   "community": Str(max_len=20, pattern=r"[a-z][a-z0-9]*(-[a-z0-9]+)*", required=False,
                                    label="社区")},
                  name="NewRelative", check=_relation_unless_remote)
ROLES_BODY = Schema({"roles": ListOf(Str(choices=ROLES), max_items=len(ROLES), unique=True, label="角色")},
                    name="RolesChange")
PROXY_BODY = Schema({"member_id": Id(max_len=100, label="成员")}, name="NewProxy",
                    description="a verified resident of the caller's household, named 亲情代理")
REJECTION = Schema({"reason": Str(max_len=200, label="驳回原因")}, name="Rejection")
RESIDENT_QUERY = Schema({"status": Str(choices=STATUSES, required=False, label="状态")})


def _resident_body(resident: Resident) -> dict[str, Any]:
    return resident_view(resident, bootstrap.identity().roles_of(resident.openid, resident.roles))


def _audit(event: str, caller: Caller, resident_ids: list[str]) -> None:
    """PIPL: record who viewed or changed whose personal data — ids only, never the data."""
    logger.info(event, extra={"audit": True, "actor": actor_ref(caller.resident_id, caller.openid),
                              "resident_ids": resident_ids})


# --- login ---------------------------------------------------------------------------------


@route(identity_bp, "/v1/auth/wechat", methods=["POST"], auth=Auth.PUBLIC, body=LOGIN, response="Login",
       errors=(InvalidLoginCode, LoginRateLimited, LoginBlocked, UpstreamError))
def login(ctx: RequestContext) -> dict[str, Any]:
    """Exchange a wx.login code for a bearer token (locally: dev-<openid>)."""
    session = bootstrap.wechat_login().code_to_session(ctx.data["code"])
    service = bootstrap.identity()
    # The revocation version before the login: a downgrade between the two reads makes the
    # token older than it is (checked again), never newer.
    revocation = service.store.revocation_version(max_age=0)
    state = service.login_state(session.openid)
    snapshot = ({"r": state.resident_id, "h": state.household_id, "s": state.status,
                 "ro": sorted(state.roles), "rv": revocation}
                if state.resident_id and state.household_id and state.status else None)
    token, expires_at = bootstrap.tokens().issue(session.openid, state.token_version, snapshot)
    caller = service.caller_from(state)
    resident = service.resident_of(caller)
    return {
        "token": token,
        "expires_at": clock.isoformat(datetime.fromtimestamp(expires_at, clock.CHINA_TZ)),
        "openid": session.openid,
        "roles": sorted(caller.roles),
        "resident": _resident_body(resident) if resident else None,
    }


@route(identity_bp, "/v1/auth/logout", methods=["POST"], auth=Auth.LOGIN, response="LogoutResult")
def logout(ctx: RequestContext) -> dict[str, Any]:
    """Sign out everywhere: every token issued so far stops working."""
    bootstrap.identity().store.bump_token_version(ctx.caller.openid)
    return {"status": "logged_out"}


# --- residents -----------------------------------------------------------------------------


@route(identity_bp, "/v1/residents", methods=["POST"], auth=Auth.LOGIN, status=201, body=REGISTRATION,
       response="Resident", errors=(AlreadyExists, Conflict, ImportedElsewhere))
def register(ctx: RequestContext) -> dict[str, Any]:
    """Register as a resident of an address (same address = same household); status pending.

    A phone and address the community imported from its roster: the login takes that record
    over (verified); the same phone at another address: 409 ``PHONE_ADDRESS_MISMATCH``."""
    return _resident_body(bootstrap.identity().register(ctx.caller, **ctx.data))


@route(identity_bp, "/v1/residents/me", auth=Auth.REGISTERED, response="Resident")
def me(ctx: RequestContext) -> dict[str, Any]:
    """The caller's resident record (phone masked), with every role of the login (merchant too)."""
    resident = bootstrap.identity().me(ctx.caller)
    return resident_view(resident, bootstrap.identity().roles_of(resident.openid, resident.roles | ctx.caller.roles))


# --- households ----------------------------------------------------------------------------


@route(identity_bp, "/v1/households/mine", auth=Auth.REGISTERED, response="Household", errors=(NotFound,))
def my_household(ctx: RequestContext) -> dict[str, Any]:
    """The caller's household: members, dependants and relatives (verified residents see all)."""
    return bootstrap.identity().household(ctx.caller)


@route(identity_bp, "/v1/households/mine/members", methods=["POST"], auth=Auth.VERIFIED, status=201,
       body=DEPENDANT, idempotency="optional", response="Dependant",
       errors=(Conflict, LimitExceeded))
def add_member(ctx: RequestContext) -> dict[str, Any]:
    """Add a dependant (no login: an elderly parent, a child) who can be a request's beneficiary."""
    return dependant_view(bootstrap.identity().add_dependant(ctx.caller, idempotency_key=ctx.key, **ctx.data))


@route(identity_bp, "/v1/households/mine/relatives", methods=["POST"], auth=Auth.VERIFIED, status=201,
       body=RELATIVE, response="RelativeDeclaration", responses={200: "RelativeDeclaration"},
       errors=(NotFound, AlreadyExists, LimitExceeded, BusinessRuleViolation))
def declare_relative(ctx: RequestContext) -> Any:
    """Declare another household as relatives; transfers need the declaration on both sides."""
    declaration, created, mutual = bootstrap.identity().declare_relative(
        ctx.caller, ctx.data["household_id"], ctx.data.get("relation", "other"), community=ctx.data.get("community"))
    view = declaration_view(declaration, mutual)
    # A repeated declaration changes nothing: 200 with the existing one.
    return view if created else json_response(view, 200)


@route(identity_bp, "/v1/households/mine/relatives/{household_id}", methods=["DELETE"], auth=Auth.VERIFIED,
       status=204, path_params={"household_id": Id(max_len=100)})
def withdraw_relative(ctx: RequestContext, household_id: str) -> Response:
    """Withdraw this household's declaration."""
    bootstrap.identity().withdraw_relative(ctx.caller, household_id)
    return Response(body="", status_code=204)


@route(identity_bp, "/v1/households/mine/proxies", methods=["POST"], auth=Auth.VERIFIED, status=201,
       body=PROXY_BODY, response="HouseholdResident", responses={200: "HouseholdResident"},
       errors=(NotFound, InvalidProxy))
def name_proxy(ctx: RequestContext) -> Any:
    """Name a verified member 亲情代理: they may post and confirm for the household's dependants and elderly."""
    resident, created = bootstrap.identity().name_proxy(ctx.caller, ctx.data["member_id"])
    view = member_summary(resident, PROXY, False)
    view.pop("head")  # the household view tells who the head is
    return view if created else json_response(view, 200)


@route(identity_bp, "/v1/households/mine/proxies/{member_id}", methods=["DELETE"], auth=Auth.VERIFIED,
       status=204, path_params={"member_id": Id(max_len=100)})
def withdraw_proxy(ctx: RequestContext, member_id: str) -> Response:
    """The member is no longer the household's proxy."""
    bootstrap.identity().withdraw_proxy(ctx.caller, member_id)
    return Response(body="", status_code=204)


# --- reputation ------------------------------------------------------------------------------


@identity_bp.on_sqs_message(queue=REPUTATION.name, batch_size=REPUTATION.batch_size, name="reputation-scores")
def reputation_scores(event: Any) -> dict[str, Any]:
    """Settled services (completion, rating) and no-shows → the volunteer's reputation, once per
    (request, outcome)."""
    from functions.core.queue_consumer import process_queue_batch

    service = bootstrap.identity()
    return process_queue_batch(event.to_dict(), event.context, REPUTATION.logical_name,
                               lambda message: service.record_reputation(parse_event(message)))


# --- administration ------------------------------------------------------------------------


@route(identity_bp, "/v1/admin/residents", auth=Auth.ADMIN, query=RESIDENT_QUERY, paged=True,
       response="Resident", admin_action="residents.list")
def list_residents(ctx: RequestContext) -> dict[str, Any]:
    """Residents by status (default pending: the verification queue), oldest first."""
    residents, next_cursor = bootstrap.identity().list_residents(ctx.params.get("status", PENDING),
                                                                  ctx.limit, ctx.cursor)
    _audit("residents listed", ctx.caller, [r.id for r in residents])
    return page_body([_resident_body(r) for r in residents], next_cursor)


@route(identity_bp, "/v1/admin/residents/{resident_id}", auth=Auth.ADMIN, path_params={"resident_id": Id(max_len=100)},
       response="Resident", admin_action="resident.view")
def get_resident(ctx: RequestContext, resident_id: str) -> dict[str, Any]:
    """One resident (phone masked)."""
    resident = bootstrap.identity().resident(resident_id)
    _audit("resident viewed", ctx.caller, [resident.id])
    return _resident_body(resident)


@route(identity_bp, "/v1/admin/residents/{resident_id}/roles", methods=["PUT"], auth=Auth.ADMIN,
       path_params={"resident_id": Id(max_len=100)}, body=ROLES_BODY, response="Resident",
       admin_action="resident.roles")
def set_roles(ctx: RequestContext, resident_id: str) -> dict[str, Any]:
    """Replace the resident's stored roles (``resident`` is implied)."""
    resident = bootstrap.identity().set_roles(resident_id, ctx.data["roles"])
    _audit("resident roles changed", ctx.caller, [resident.id])
    return _resident_body(resident)


@route(identity_bp, "/v1/admin/residents/{resident_id}/verify", methods=["POST"], auth=Auth.ADMIN,
       path_params={"resident_id": Id(max_len=100)}, response="Resident", errors=(InvalidState, Conflict,
                                                                                  IdempotencyMismatch),
       admin_action="resident.verify")
def verify_resident(ctx: RequestContext, resident_id: str) -> dict[str, Any]:
    """Verify a resident; the household's first verified member brings its starting credits."""
    resident = bootstrap.identity().verify(ctx.caller.actor, resident_id)
    _audit("resident verified", ctx.caller, [resident.id])
    return _resident_body(resident)


@route(identity_bp, "/v1/admin/residents/{resident_id}/reject", methods=["POST"], auth=Auth.ADMIN,
       path_params={"resident_id": Id(max_len=100)}, body=REJECTION, response="Resident",
       errors=(InvalidState, Conflict), admin_action="resident.reject")
def reject_resident(ctx: RequestContext, resident_id: str) -> dict[str, Any]:
    """Reject a pending registration with a reason."""
    resident = bootstrap.identity().reject(ctx.caller.actor, resident_id, ctx.data["reason"])
    _audit("resident rejected", ctx.caller, [resident.id])
    return _resident_body(resident)


IMPORT_QUERY = Schema({"dry_run": Bool(required=False, label="试运行",
                                       description="true: check and count, write nothing")})


@route(identity_bp, "/v1/admin/imports/residents", methods=["POST"], auth=Auth.ADMIN, query=IMPORT_QUERY,
       consumes=CONTENT_TYPES, response="RosterImport",
       errors=(ImportInvalid, ImportEmpty, ImportTooLarge, Conflict), admin_action="residents.import")
def import_residents(ctx: RequestContext) -> dict[str, Any]:
    """Import the community's roster (the xlsx or csv file itself): all rows or none, verified.

    Columns (Chinese or English headers): 姓名/name, 手机/phone, 楼栋/building, 单元/unit,
    房号/room, 出生年份/birth_year. Every row is checked before anything is written; a 422
    ``IMPORT_INVALID`` lists each bad row (``details.rows``, header = row 1). Files over the
    endpoint's limits (Lambda's 6 MB payload, API Gateway's 29 s) are 413 ``IMPORT_TOO_LARGE``:
    district IT imports those with ``make import-residents`` (same use case, no limits)."""
    from functions.identity.roster import kind_of, parse_roster  # lazily: not on the cold start
    from functions.identity.service import MAX_ENDPOINT_BYTES, MAX_ENDPOINT_ROWS

    kind = kind_of(ctx.headers.get("content-type"))
    raw = ctx.request.raw_body or b""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
    if len(data) > MAX_ENDPOINT_BYTES:
        raise ImportTooLarge(details={"bytes": len(data), "max_bytes": MAX_ENDPOINT_BYTES})
    rows = parse_roster(data, kind or "", clock.now().year, max_rows=MAX_ENDPOINT_ROWS)
    result = bootstrap.identity().import_residents(ctx.caller.actor, rows, dry_run=ctx.params.get("dry_run", False))
    _audit("residents imported", ctx.caller, [])
    return result.view()
