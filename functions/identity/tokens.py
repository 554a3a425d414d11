"""Bearer tokens: ``t1.<payload>.<signature>``, HMAC-SHA256 with a per-stack secret.

The payload is compact JSON ``{"sub": openid, "iat": issued, "exp": expiry, "ver": version}``
(base64url, unpadded), plus, for a registered resident, ``"c"``: the login as it was at issue
(resident, household, status, stored roles) and the community's revocation version then —
what lets ``identity.auth`` skip the login read (see there). ``ver`` is the login's token version at issue time: bumping the stored
version (logout everywhere) invalidates every older token at the next authenticated call.

The secret is ``settings.token_secret`` in the local/test stages; in a deployed stage it is
read from SSM (``token_secret_parameter``) through ``adapters.secrets`` — or, if no parameter is
configured, the ``TIMEBANK_TOKEN_SECRET`` environment value — and a secret shorter than
``MIN_DEPLOYED_SECRET_LENGTH`` characters (empty included) makes signing and verifying refuse.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Protocol

from functions.core import clock
from functions.core.errors import Unauthenticated
from functions.core.settings import Settings

PREFIX = "t1"
MAX_TOKEN_LENGTH = 1024
MIN_DEPLOYED_SECRET_LENGTH = 32


class TokenSecretMissing(RuntimeError):
    """No usable signing secret: a deployment fault, never the caller's."""


@dataclass(frozen=True)
class TokenClaims:
    openid: str
    issued_at: int
    expires_at: int
    version: int
    snapshot: dict | None = None   # {"r": resident, "h": household, "s": status, "ro": [roles], "rv": int}


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _invalid() -> Unauthenticated:
    return Unauthenticated("登录已失效，请重新登录", {"reason": "invalid_token"})


class TokenSigner:
    def __init__(self, secret: Callable[[], str], ttl_seconds: int,
                 now: Callable[[], datetime] = clock.now):
        self._secret = secret
        self._ttl = ttl_seconds
        self._now = now

    def _key(self) -> bytes:
        value = self._secret()
        if not value:
            raise TokenSecretMissing("token secret is empty")
        return value.encode()

    def _sign(self, signing_input: str) -> str:
        return _b64encode(hmac.new(self._key(), signing_input.encode(), hashlib.sha256).digest())

    def issue(self, openid: str, version: int = 0, snapshot: dict | None = None) -> tuple[str, int]:
        """A token for ``openid``; returns (token, expires_at as epoch seconds)."""
        issued = int(self._now().timestamp())
        expires = issued + self._ttl
        body = {"sub": openid, "iat": issued, "exp": expires, "ver": version}
        if snapshot is not None:
            body["c"] = snapshot
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        signing_input = f"{PREFIX}.{_b64encode(payload.encode())}"
        return f"{signing_input}.{self._sign(signing_input)}", expires

    def verify(self, token: str) -> TokenClaims:
        """The claims of a genuine, unexpired token; 401 UNAUTHENTICATED for anything else."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise _invalid()
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise _invalid()
        expected = self._sign(f"{parts[0]}.{parts[1]}")
        if not hmac.compare_digest(expected.encode(), parts[2].encode()):
            raise _invalid()
        try:
            payload = json.loads(_b64decode(parts[1]))
        except ValueError:
            raise _invalid() from None
        if not isinstance(payload, dict):
            raise _invalid()
        openid, issued, expires, version = (payload.get(k) for k in ("sub", "iat", "exp", "ver"))
        if not isinstance(openid, str) or not openid or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in (issued, expires, version)):
            raise _invalid()
        if int(self._now().timestamp()) >= expires:
            raise Unauthenticated("登录已过期，请重新登录", {"reason": "token_expired"})
        snapshot = payload.get("c")
        return TokenClaims(openid=openid, issued_at=issued, expires_at=expires, version=version,
                           snapshot=snapshot if _valid_snapshot(snapshot) else None)


def _valid_snapshot(value: object) -> bool:
    if not isinstance(value, dict):
        return False
    return (all(isinstance(value.get(k), str) and value.get(k) for k in ("r", "h", "s"))
            and isinstance(value.get("ro"), list) and all(isinstance(r, str) for r in value["ro"])
            and isinstance(value.get("rv"), int) and not isinstance(value.get("rv"), bool))


class Secrets(Protocol):
    def get(self, name: str) -> str: ...


def secret_source(settings: Settings, secrets: Secrets) -> Callable[[], str]:
    """Where this stage's signing secret comes from (resolved lazily, cached by ``adapters.secrets``)."""
    if settings.is_local:
        return lambda: settings.token_secret

    def deployed_secret() -> str:
        if settings.token_secret_parameter:
            value = secrets.get(settings.token_secret_parameter)
        else:
            value = settings.token_secret
        if len(value or "") < MIN_DEPLOYED_SECRET_LENGTH:
            raise TokenSecretMissing(
                f"stage {settings.stage} needs a token secret of at least {MIN_DEPLOYED_SECRET_LENGTH} characters")
        return value

    return deployed_secret

