"""Identity HTTP entrypoints: login, registration, households, relatives, verification.

Thin: validate the body, call ``IdentityService``, shape the answer with ``views`` (which
masks phones). Error codes beyond API.md's: 403 ``NOT_REGISTERED`` (logged in, no resident
record), 401 ``INVALID_LOGIN_CODE``, 429 ``RATE_LIMITED`` and 403 ``LOGIN_BLOCKED`` (WeChat
refused the login), 422 ``OWN_HOUSEHOLD`` (declaring one's own household as relatives).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from chalice import Blueprint, Response

from functions.core import clock
from functions.core.errors import NotFound, ValidationError
from functions.core.observability import logger
from functions.core.validation import Int, Str
from functions.core.web import Auth, RequestContext, json_response, page_body, route
from functions.identity.caller import Caller
from functions.identity.domain import MIN_BIRTH_YEAR, PENDING, PHONE_PATTERN, RELATIONS, ROLES, STATUSES, Resident
from functions.identity.service import IdentityService, declaration_view
from functions.identity.tokens import token_signer
from functions.identity.views import dependant_view, resident_view
from functions.identity.wechat import wechat_client
from functions.identity.wiring import get_identity_service

identity_bp = Blueprint(__name__)

MAX_ID_LENGTH = 100


def _birth_year() -> Int:
    return Int(min=MIN_BIRTH_YEAR, max=clock.now().year)


def _service() -> IdentityService:
    return get_identity_service()


def _resident_body(service: IdentityService, resident: Resident) -> dict[str, Any]:
    return resident_view(resident, service.roles_of(resident.openid, resident.roles))


def _path_id(value: str, what: str) -> str:
    # Anything longer than an id we issue cannot exist; answer 404 without touching storage.
    if not value or len(value) > MAX_ID_LENGTH:
        raise NotFound(details={what: value[:MAX_ID_LENGTH]})
    return value


def _actor(caller: Caller) -> str:
    return caller.resident_id or caller.openid


def _audit(event: str, caller: Caller, resident_ids: list[str]) -> None:
    """PIPL: record who viewed or changed whose personal data — ids only, never the data."""
    logger.info(event, extra={"audit": True, "actor": caller.openid, "resident_ids": resident_ids})


# --- login ---------------------------------------------------------------------------------


@route(identity_bp, "/v1/auth/wechat", methods=["POST"], auth=Auth.PUBLIC)
def login(ctx: RequestContext) -> dict[str, Any]:
    body = ctx.body({"code": Str(max_len=128)})
    session = wechat_client().code_to_session(body["code"])
    service = _service()
    state = service.login_state(session.openid)
    token, expires_at = token_signer().issue(session.openid, state.token_version)
    caller = service.caller_from(state)
    resident = service.resident_of(caller)
    return {
        "token": token,
        "expires_at": clock.isoformat(datetime.fromtimestamp(expires_at, clock.CHINA_TZ)),
        "openid": session.openid,
        "roles": sorted(caller.roles),
        "resident": _resident_body(service, resident) if resident else None,
    }


@route(identity_bp, "/v1/auth/logout", methods=["POST"], auth=Auth.LOGIN)
def logout(ctx: RequestContext) -> dict[str, Any]:
    """Sign out everywhere: every token issued so far stops working."""
    _service().store.bump_token_version(ctx.caller.openid)
    return {"status": "logged_out"}


# --- residents -----------------------------------------------------------------------------

REGISTRATION = {
    "name": Str(max_len=40),
    "phone": Str(max_len=11, pattern=PHONE_PATTERN),
    "building": Str(max_len=20),
    "unit": Str(max_len=20),
    "room": Str(max_len=20),
}


@route(identity_bp, "/v1/residents", methods=["POST"], auth=Auth.LOGIN, status=201)
def register(ctx: RequestContext) -> dict[str, Any]:
    body = ctx.body({**REGISTRATION, "birth_year": _birth_year()})
    service = _service()
    return _resident_body(service, service.register(ctx.caller, **body))


@route(identity_bp, "/v1/residents/me", auth=Auth.REGISTERED)
def me(ctx: RequestContext) -> dict[str, Any]:
    service = _service()
    return _resident_body(service, service.me(ctx.caller))


# --- households ----------------------------------------------------------------------------


@route(identity_bp, "/v1/households/mine", auth=Auth.REGISTERED)
def my_household(ctx: RequestContext) -> dict[str, Any]:
    return _service().household(ctx.caller)


@route(identity_bp, "/v1/households/mine/members", methods=["POST"], auth=Auth.VERIFIED, status=201)
def add_member(ctx: RequestContext) -> dict[str, Any]:
    body = ctx.body({"name": Str(max_len=40), "birth_year": _birth_year(), "relation": Str(choices=RELATIONS)})
    key = ctx.idempotency_key(required=False)
    return dependant_view(_service().add_dependant(ctx.caller, idempotency_key=key, **body))


@route(identity_bp, "/v1/households/mine/relatives", methods=["POST"], auth=Auth.VERIFIED, status=201)
def declare_relative(ctx: RequestContext) -> Any:
    body = ctx.body({"household_id": Str(max_len=MAX_ID_LENGTH), "relation": Str(choices=RELATIONS)})
    declaration, created, mutual = _service().declare_relative(ctx.caller, body["household_id"], body["relation"])
    view = declaration_view(declaration, mutual)
    # A repeated declaration changes nothing: 200 with the existing one.
    return view if created else json_response(view, 200)


@route(identity_bp, "/v1/households/mine/relatives/{household_id}", methods=["DELETE"], auth=Auth.VERIFIED)
def withdraw_relative(ctx: RequestContext, household_id: str) -> Response:
    _service().withdraw_relative(ctx.caller, _path_id(household_id, "household_id"))
    return Response(body="", status_code=204)


# --- administration ------------------------------------------------------------------------


@route(identity_bp, "/v1/admin/residents", auth=Auth.ADMIN)
def list_residents(ctx: RequestContext) -> dict[str, Any]:
    status = ctx.query({"status": Str(choices=STATUSES, required=False)}).get("status", PENDING)
    limit, cursor = ctx.page()
    service = _service()
    residents, next_cursor = service.list_residents(status, limit, cursor)
    _audit("residents listed", ctx.caller, [r.id for r in residents])
    return page_body([_resident_body(service, r) for r in residents], next_cursor)


@route(identity_bp, "/v1/admin/residents/{resident_id}", auth=Auth.ADMIN)
def get_resident(ctx: RequestContext, resident_id: str) -> dict[str, Any]:
    service = _service()
    resident = service.resident(_path_id(resident_id, "resident_id"))
    _audit("resident viewed", ctx.caller, [resident.id])
    return _resident_body(service, resident)


@route(identity_bp, "/v1/admin/residents/{resident_id}/roles", methods=["PUT"], auth=Auth.ADMIN)
def set_roles(ctx: RequestContext, resident_id: str) -> dict[str, Any]:
    """Body ``{"roles": ["merchant", ...]}`` replaces the stored roles (``resident`` is implied)."""
    data = ctx.json()
    roles = data.get("roles") if isinstance(data, dict) else None
    if not isinstance(roles, list) or len(roles) > len(ROLES) or not all(r in ROLES for r in roles):
        raise ValidationError(details={"fields": {"roles": f"must be a list of {', '.join(ROLES)}"}})
    service = _service()
    resident = service.set_roles(_path_id(resident_id, "resident_id"), roles)
    _audit("resident roles changed", ctx.caller, [resident.id])
    return _resident_body(service, resident)


@route(identity_bp, "/v1/admin/residents/{resident_id}/verify", methods=["POST"], auth=Auth.ADMIN)
def verify_resident(ctx: RequestContext, resident_id: str) -> dict[str, Any]:
    service = _service()
    resident = service.verify(_actor(ctx.caller), _path_id(resident_id, "resident_id"))
    _audit("resident verified", ctx.caller, [resident.id])
    return _resident_body(service, resident)


@route(identity_bp, "/v1/admin/residents/{resident_id}/reject", methods=["POST"], auth=Auth.ADMIN)
def reject_resident(ctx: RequestContext, resident_id: str) -> dict[str, Any]:
    body = ctx.body({"reason": Str(max_len=200)})
    service = _service()
    resident = service.reject(_actor(ctx.caller), _path_id(resident_id, "resident_id"), body["reason"])
    _audit("resident rejected", ctx.caller, [resident.id])
    return _resident_body(service, resident)
