"""Time in one place, so tests and schedules can control it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

CHINA_TZ = timezone(timedelta(hours=8))

_now: Callable[[], datetime] = lambda: datetime.now(CHINA_TZ)


def now() -> datetime:
    return _now()


def set_clock(fn: Callable[[], datetime] | None) -> None:
    """Tests pin the clock; ``None`` restores wall time."""
    global _now
    _now = fn or (lambda: datetime.now(CHINA_TZ))


def isoformat(value: datetime) -> str:
    return value.astimezone(CHINA_TZ).isoformat(timespec="seconds")


def parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp needs an offset")
    return parsed
