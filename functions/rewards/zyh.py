"""志愿汇 (the volunteer platform) behind an adapter: the real one over HMAC-signed HTTPS
(urllib, as ``identity/wechat.py``; no dependency) and the local stage's in-process fake.

The wire, both directions signed the same way — headers ``X-Zyh-Timestamp`` (Unix seconds) and
``X-Zyh-Signature`` = hex HMAC-SHA256(key, "<timestamp>\\n<METHOD>\\n<path>\\n<body>"), the key a
SecureString in SSM (``settings.zyh_key_parameter``):

- ``POST {api_base}/exchanges`` ``{"exchange_id", "user_id", "coins", "minutes", "requested_at"}``
  with ``Idempotency-Key: <exchange_id>`` → ``{"status": "accepted", "ref"}`` or
  ``{"status": "refused", "reason"}``. The same id again returns the first answer: a redelivered
  message never makes a second exchange.
- ``GET {api_base}/statements?date=YYYY-MM-DD`` → ``{"items": [{"exchange_id", "ref", "minutes",
  "coins"}]}``: what the partner credited for our requests of that day.
- The partner's own notifications of an answer reach ``POST /v1/partners/zyh/answers``, verified
  with ``verify``.

A read that times out is ``PartnerNoAnswer`` (the partner has the request and may still
answer); anything that means it was not asked or not understood is ``UpstreamError``.
Nothing personal is logged: exchange ids and status codes only.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Mapping

from functions.core import clock
from functions.core.errors import Unauthenticated, UpstreamError
from functions.core.ids import derived_id
from functions.core.observability import logger
from functions.rewards.model import ACCEPTED, REFUSED, Exchange, PartnerAnswer, PartnerNoAnswer, StatementLine

TIMESTAMP_HEADER = "X-Zyh-Timestamp"
SIGNATURE_HEADER = "X-Zyh-Signature"
MAX_SKEW_SECONDS = 300
TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 256 * 1024

Opener = Callable[..., Any]  # urllib.request.urlopen-compatible: opener(request, timeout=...) -> response


def signature(key: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    message = b"\n".join([timestamp.encode(), method.upper().encode(), path.encode(), body])
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(key: str, method: str, path: str, body: bytes, now: float) -> dict[str, str]:
    timestamp = str(int(now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(key, timestamp, method, path, body)}


def verify(key: str, headers: Mapping[str, str], method: str, path: str, body: bytes, now: float) -> None:
    """A partner notification is ours to apply only with a fresh, valid signature."""
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    timestamp, given = lowered.get(TIMESTAMP_HEADER.lower(), ""), lowered.get(SIGNATURE_HEADER.lower(), "")
    if not key or not timestamp.isdigit() or abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        raise Unauthenticated("签名无效或已过期", {"reason": "invalid_signature"})
    if not hmac.compare_digest(signature(key, timestamp, method, path, body), given):
        raise Unauthenticated("签名无效或已过期", {"reason": "invalid_signature"})


def _answer(exchange_id: str, payload: Mapping[str, Any]) -> PartnerAnswer:
    status = payload.get("status")
    ref = payload.get("ref")
    if status == ACCEPTED and isinstance(ref, str) and 0 < len(ref) <= 128:
        return PartnerAnswer(exchange_id, ACCEPTED, ref)
    if status == REFUSED:
        reason = payload.get("reason")
        return PartnerAnswer(exchange_id, REFUSED, None, reason[:200] if isinstance(reason, str) else None)
    logger.error("zyh answered something that is neither an acceptance nor a refusal", extra={"exchange_id": exchange_id})
    raise UpstreamError()


class HttpZyhPartner:
    """``ports.ZyhPartner`` over HTTPS."""

    def __init__(self, api_base: str, key: Callable[[], str], opener: Opener = urllib.request.urlopen,
                 timeout: float = TIMEOUT_SECONDS, now: Callable[[], float] = time.time):
        parsed = urllib.parse.urlsplit(api_base)
        self._origin = f"{parsed.scheme}://{parsed.netloc}"
        self._prefix = parsed.path.rstrip("/")
        self._key, self._opener, self._timeout, self._now = key, opener, timeout, now

    def submit(self, exchange: Exchange) -> PartnerAnswer:
        body = {"exchange_id": exchange.id, "user_id": exchange.zyh_user_id, "coins": exchange.coins,
                "minutes": exchange.amount, "requested_at": clock.isoformat(exchange.created_at)}
        payload = self._call("POST", "/exchanges", body, idempotency_key=exchange.id, what=exchange.id)
        return _answer(exchange.id, payload)

    def statement(self, day: str) -> list[StatementLine]:
        try:
            payload = self._call("GET", f"/statements?{urllib.parse.urlencode({'date': day})}", None, what=day)
        except PartnerNoAnswer:
            raise UpstreamError() from None
        items = payload.get("items")
        if not isinstance(items, list):
            raise UpstreamError()
        lines = []
        for item in items:
            try:
                lines.append(StatementLine(str(item["exchange_id"]), str(item["ref"]), int(item["minutes"]),
                                           int(item["coins"])))
            except (KeyError, TypeError, ValueError):
                logger.error("zyh statement line malformed", extra={"day": day})
                raise UpstreamError() from None
        return lines

    def _call(self, method: str, path: str, body: Any, what: str, idempotency_key: str | None = None) -> dict[str, Any]:
        full_path = self._prefix + path
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   **signed_headers(self._key(), method, full_path, raw, self._now())}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(self._origin + full_path, data=raw if body is not None else None,
                                         method=method, headers=headers)
        try:
            with self._opener(request, timeout=self._timeout) as response:
                status = getattr(response, "status", 200)
                data = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            logger.warning("zyh http error", extra={"status": error.code, "subject": what})
            raise UpstreamError() from None
        except (socket.timeout, TimeoutError):
            # Sent, no answer in time: the partner may have acted on it (it will say so later,
            # and the same id asked again returns its answer).
            raise PartnerNoAnswer(what) from None
        except (urllib.error.URLError, ConnectionError, OSError) as error:
            logger.warning("zyh unreachable", extra={"error": type(error).__name__, "subject": what})
            raise UpstreamError() from None
        if status >= 400 or len(data) > MAX_RESPONSE_BYTES:
            logger.warning("zyh answered with an error", extra={"status": status, "subject": what})
            raise UpstreamError()
        try:
            payload = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise UpstreamError() from None
        if not isinstance(payload, dict):
            raise UpstreamError()
        return payload


class LocalZyhPartner:
    """The local stage's 志愿汇 (API.md): a ``zyh_user_id`` starting with ``reject-`` is refused,
    one starting with ``timeout-`` never answers, any other is accepted. In-process; idempotent
    by exchange id like the real one; serves the statement of what it credited."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.credited: dict[str, tuple[str, StatementLine]] = {}   # exchange id → (day, line)
        self.calls: list[str] = []

    def submit(self, exchange: Exchange) -> PartnerAnswer:
        with self._lock:
            self.calls.append(exchange.id)
        if exchange.zyh_user_id.startswith("timeout-"):
            raise PartnerNoAnswer(exchange.id)
        if exchange.zyh_user_id.startswith("reject-"):
            return PartnerAnswer(exchange.id, REFUSED, None, "志愿汇账户不存在")
        return self.credit(exchange)

    def credit(self, exchange: Exchange) -> PartnerAnswer:
        """Credit the coins (once per exchange id) and answer with the reference."""
        with self._lock:
            day, line = self.credited.setdefault(exchange.id, (exchange.day, StatementLine(
                exchange.id, derived_id("zyh", exchange.id), exchange.amount, exchange.coins)))
        return PartnerAnswer(exchange.id, ACCEPTED, line.partner_ref)

    def statement(self, day: str) -> list[StatementLine]:
        with self._lock:
            return [line for line_day, line in self.credited.values() if line_day == day]
