"""The one auth helper: ``authenticate(headers, level) -> Caller``.

``core.web.route`` calls it for every non-public route. Levels (``core.web.Auth``):

- LOGIN       a valid bearer token; registered or not.
- REGISTERED  a resident record exists (any status), else 403 ``NOT_REGISTERED``.
- VERIFIED    a verified resident: 403 ``NOT_REGISTERED`` without a record,
              403 ``NOT_VERIFIED`` while pending or rejected.
- VERIFIED_OR_ADMIN  an admin (no resident record needed), else as VERIFIED: for the acts
              of a party that admins may also take (confirm, cancel a request).
- ADMIN       the ``admin`` role (stored, or the openid is in ``settings.admin_openids``), else
              403 ``FORBIDDEN``. An admin needs no resident record.

A missing, malformed, tampered, expired or revoked token is 401 ``UNAUTHENTICATED``.

Cost: verifying the token is local (HMAC). A registered resident's token carries the login as
it was at issue and the community's revocation version then (``tokens``); while no logout or
downgrade happened since (the version is unchanged: a counter item, read at most every
``REVOCATION_CACHE_SECONDS`` by a warm function, at once after this function wrote one) and
the carried login is enough for the route, the call reads no table. Otherwise — an older
token, an upgrade the token does not know yet (registered, verified, a role granted), an
unregistered caller — it is ONE GetItem (strongly consistent, the ``logins`` item of the openid:
resident link, status, stored roles, token version), as before, so a verification takes effect
on the very next call. A logout or downgrade written by another function takes effect on the
others within ``REVOCATION_CACHE_SECONDS`` (issue 14: a login read on every call was 6 RRU of an
order).
"""
from __future__ import annotations

from typing import Mapping

from functions.core.caller import Auth, Caller
from functions.core.errors import Forbidden, NotVerified, Unauthenticated
from functions.identity.model import ROLE_ADMIN, ROLE_MERCHANT, VERIFIED, NotRegistered
from functions.identity.service import IdentityService
from functions.identity.tokens import TokenSigner


def bearer_token(headers: Mapping[str, str]) -> str:
    value = None
    for name, header in (headers or {}).items():
        if name.lower() == "authorization":
            value = header
            break
    if not value:
        raise Unauthenticated(details={"reason": "missing_token"})
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(details={"reason": "invalid_token"})
    return token.strip()


def authenticate(headers: Mapping[str, str], level: Auth, *, identity: IdentityService,
                 tokens: TokenSigner) -> Caller:
    claims = tokens.verify(bearer_token(headers))
    service = identity
    snapshot = claims.snapshot
    if snapshot is not None and snapshot["rv"] >= service.store.revocation_version():
        carried = Caller(openid=claims.openid, resident_id=snapshot["r"], household_id=snapshot["h"],
                         status=snapshot["s"], roles=service.roles_of(claims.openid, snapshot["ro"]))
        try:
            require(carried, level)
            return carried
        except (Forbidden, NotVerified, NotRegistered):
            pass  # an upgrade the token may not know yet: the login item decides
    login = service.login_state(claims.openid)
    if claims.version < login.token_version:
        raise Unauthenticated("登录已失效，请重新登录", {"reason": "token_revoked"})
    caller = service.caller_from(login)
    require(caller, level)
    return caller


def require(caller: Caller, level: Auth) -> None:
    """403 unless ``caller`` meets ``level``."""
    if level in (Auth.PUBLIC, Auth.LOGIN):
        return
    if level is Auth.VERIFIED_OR_ADMIN:
        if ROLE_ADMIN in caller.roles:
            return
        level = Auth.VERIFIED
    if level is Auth.ADMIN:
        if ROLE_ADMIN not in caller.roles:
            raise Forbidden("仅社区管理员可执行此操作")
        return
    if level is Auth.MERCHANT:
        if ROLE_MERCHANT not in caller.roles:
            raise Forbidden("仅商户可执行此操作")
        return
    if caller.resident_id is None:
        raise NotRegistered()
    if level is Auth.VERIFIED and caller.status != VERIFIED:
        raise NotVerified(details={"status": caller.status})
