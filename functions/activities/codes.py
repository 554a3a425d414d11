"""The on-site check-in/out code of an activity: 6 digits that rotate every 10 minutes.

``code = HOTP-style truncation of HMAC-SHA256(key, "<activity id>:<window>")``, the window being
the 10-minute slot of the epoch. The key is derived from the stack's signing secret (never
stored, never sent), so the code is nowhere in clear: a participant cannot compute it ahead,
an admin's screen shows the current one (``GET /v1/admin/activities/{id}/code``), and a
check-in accepts the current window and the one before (a code read just before it rotated).
"""
from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from typing import Callable, NamedTuple

from functions.core import clock

WINDOW = timedelta(minutes=10)
DIGITS = 6
_PURPOSE = b"timebank activity on-site code v1"


class ShownCode(NamedTuple):
    code: str
    expires_at: datetime          # when the next code replaces it
    accepted_until: datetime      # when check-ins stop accepting it


def _window(at: datetime) -> int:
    return int(at.timestamp() // WINDOW.total_seconds())


class OnSiteCodes:
    def __init__(self, secret: Callable[[], str]):
        self._secret = secret

    def _key(self) -> bytes:
        return hmac.new(self._secret().encode(), _PURPOSE, hashlib.sha256).digest()

    def _code(self, activity_id: str, window: int) -> str:
        digest = hmac.new(self._key(), f"{activity_id}:{window}".encode(), hashlib.sha256).digest()
        offset = digest[-1] & 0x0F
        number = int.from_bytes(digest[offset:offset + 4], "big") & 0x7FFFFFFF
        return f"{number % 10 ** DIGITS:0{DIGITS}d}"

    def current(self, activity_id: str, at: datetime) -> ShownCode:
        window = _window(at)
        rotates = datetime.fromtimestamp((window + 1) * WINDOW.total_seconds(), timezone.utc).astimezone(clock.CHINA_TZ)
        return ShownCode(self._code(activity_id, window), rotates, rotates + WINDOW)

    def accepts(self, activity_id: str, code: str, at: datetime) -> bool:
        window = _window(at)
        given = code.encode()
        # Both compared, constant time: the answer must not tell which window was near.
        matches = [hmac.compare_digest(self._code(activity_id, w).encode(), given) for w in (window, window - 1)]
        return any(matches)
