"""Signed HTTP between the stacks of a district: the client that signs, the verifier that checks,
and the nonce table that makes every signed request good once.

The rules are ``functions.core.signing``; this module adds the I/O: keys come from Secrets
Manager (``adapters.secrets.SecretsManagerKeys``, several versions during a rotation), nonces
are conditional puts on the ``signature-nonces`` table (TTL: they are kept twice the accepted
clock window, after which the timestamp alone refuses a replay), and requests go out through a
``Transport`` (urllib here; the tests and the bench hand requests to an in-process stack).

What an answer means to the caller: a 2xx is the other side's answer (its decision, its
state); anything else — no connection, a timeout, a 5xx, or even a 4xx — is "no answer" and
raises ``PeerUnavailable``: the caller leaves its state as it is and asks again later (the
queue's retry, the sweeps), never guessing what the other side did.
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any, Callable, Mapping, Protocol

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError
from pynamodb.models import Model

from functions.adapters.dynamo import condition_failed, make_meta, table
from functions.core import clock
from functions.core.errors import UpstreamError
from functions.core.observability import logger
from functions.core.signing import Replayed, UnknownSender, check, parse, sign

CALL_TIMEOUT_SECONDS = 10


class PeerUnavailable(UpstreamError):
    """The other stack gave no usable answer: nothing may be concluded from it."""
    code = "PEER_UNAVAILABLE"
    default_message = "区域通存通兑服务暂时不可用，请稍后再试"


@table
class SignatureNonceItem(Model):
    Meta = make_meta("signature-nonces", ttl_attribute="expires_at")
    nonce = UnicodeAttribute(hash_key=True)      # "<sender>#<nonce>"
    expires_at = NumberAttribute()


class DynamoNonces:
    def first_use(self, key: str, expires_at: int) -> bool:
        """True the first time ``key`` is seen (one conditional PutItem)."""
        try:
            SignatureNonceItem(key, expires_at=expires_at).save(condition=SignatureNonceItem.nonce.does_not_exist())
        except PutError as error:
            if condition_failed(error):
                return False
            raise
        return True


class Nonces(Protocol):
    def first_use(self, key: str, expires_at: int) -> bool: ...


class Verifier:
    """Checks an incoming signed request; returns who signed it. ``keys_of(sender)`` gives the
    accepted key versions of a known sender, or None for a sender this stack does not know."""

    def __init__(self, me: str, keys_of: Callable[[str], list[bytes] | None], nonces: Nonces,
                 window_seconds: int, now: Callable[[], Any] = clock.now):
        self.me = me
        self._keys_of = keys_of
        self._nonces = nonces
        self._window = window_seconds
        self._now = now

    def verify(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> str:
        request = parse(headers)
        keys = self._keys_of(request.sender)
        if not keys:
            raise UnknownSender(details={"sender": request.sender[:40]})
        now = int(self._now().timestamp())
        check(request, keys, method=method, path=path, body=body, recipient=self.me, now=now,
              window=self._window)
        if not self._nonces.first_use(f"{request.sender}#{request.nonce}", request.timestamp + 2 * self._window):
            raise Replayed()
        return request.sender


class Transport(Protocol):
    def send(self, url: str, method: str, headers: Mapping[str, str], body: bytes) -> tuple[int, Any]:
        """(status, parsed JSON body or None); raises ``PeerUnavailable`` when nothing came back."""


class HttpTransport:
    def __init__(self, timeout_seconds: float = CALL_TIMEOUT_SECONDS):
        self._timeout = timeout_seconds

    def send(self, url: str, method: str, headers: Mapping[str, str], body: bytes) -> tuple[int, Any]:
        request = urllib.request.Request(url, data=body if method != "GET" else None, method=method,
                                         headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as error:
            raise PeerUnavailable(details={"reason": type(error).__name__}) from None
        try:
            return status, (json.loads(raw) if raw else None)
        except ValueError:
            return status, None


class SignedClient:
    """Calls one other stack, signing each request with the current key shared with it."""

    def __init__(self, me: str, recipient: str, base_url: str, key: Callable[[], bytes],
                 transport: Transport, now: Callable[[], Any] = clock.now):
        self.me = me
        self.recipient = recipient
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._transport = transport
        self._now = now

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = sign(self._key(), method=method, path=path, body=raw, sender=self.me,
                       recipient=self.recipient, now=int(self._now().timestamp()))
        headers["Content-Type"] = "application/json"
        status, answer = self._transport.send(self.base_url + path, method, headers, raw)
        if 200 <= status < 300 and isinstance(answer, dict):
            return answer
        code = answer.get("code") if isinstance(answer, dict) else None
        # Logged: a 401 here means the two sides disagree on the key or the clock (rotation, skew).
        logger.warning("signed call not answered", extra={"recipient": self.recipient, "path": path,
                                                          "status": status, "code": code})
        raise PeerUnavailable(details={"status": status, "code": code})
