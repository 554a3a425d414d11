"""Schedules: ``@app.schedule`` handlers fired locally the way EventBridge would, approximately.

``rate(N unit)`` fires every N units. ``cron(...)`` is reduced to its period — how often it
would fire — rather than evaluated against the wall clock:

- minutes ``*`` → every minute; ``*/N`` or ``A/N`` → every N minutes; a list of k → k per hour;
- otherwise, by the hours field: ``*`` → hourly; ``*/N`` → every N hours; a list or range of
  k hours → k per day; one hour → daily; and then a specific day of week → weekly, a specific
  day of month → monthly (30 days).

Periods count from the runtime's start; the first firing comes one period after it (as with
a rule created at that moment). ``schedule_max_interval`` caps every period so that daily
jobs can be watched in a local session.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

from local.lambda_events import lambda_context, scheduled_event

log = logging.getLogger("local.schedules")

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
_UNITS = {"minute": MINUTE, "minutes": MINUTE, "hour": HOUR, "hours": HOUR, "day": DAY, "days": DAY}
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minutes?|hours?|days?)\s*\)$", re.IGNORECASE)
_CRON = re.compile(r"^cron\(\s*(.+?)\s*\)$", re.IGNORECASE)
_STEP = re.compile(r"^(\*|\d+)/(\d+)$")
# AWS cron numbers the days of the week from Sunday = 1.
_DAY_NAMES = {name: str(n) for n, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}


def schedule_expression(raw: Any) -> str:
    """Chalice accepts a string or a ``Rate``/``Cron`` object."""
    return raw if isinstance(raw, str) else raw.to_string()


def interval_seconds(expression: str) -> float:
    rate = _RATE.match(expression.strip())
    if rate:
        value = int(rate.group(1))
        if value < 1:
            raise ValueError(f"{expression}: a rate must be at least 1")
        return value * _UNITS[rate.group(2).lower()]
    cron = _CRON.match(expression.strip())
    if cron:
        return _cron_period(expression, cron.group(1).split())
    raise ValueError(f"not a rate(...) or cron(...) schedule expression: {expression!r}")


def _count(field: str) -> int | None:
    """How many values a list/range field names (None for wildcards and steps)."""
    if field in ("*", "?") or "/" in field:
        return None
    total = 0
    for part in field.upper().split(","):
        bounds = part.split("-")
        if len(bounds) == 2:
            low, high = (_DAY_NAMES.get(b, b) for b in bounds)
            total += max(1, int(high) - int(low) + 1) if low.isdigit() and high.isdigit() else 1
        else:
            total += 1
    return total


def _cron_period(expression: str, fields: list[str]) -> float:
    if len(fields) != 6:
        raise ValueError(f"{expression}: AWS cron has 6 fields (minutes hours day-of-month "
                         "month day-of-week year)")
    minutes, hours, day_of_month, _month, day_of_week, _year = fields
    if minutes == "*":
        return MINUTE
    step = _STEP.match(minutes)
    if step:
        return int(step.group(2)) * MINUTE
    if hours == "*":
        return HOUR / (_count(minutes) or 1)
    step = _STEP.match(hours)
    if step:
        return int(step.group(2)) * HOUR
    per_day = _count(hours) or 1
    if per_day > 1:
        return DAY / per_day
    if day_of_week not in ("*", "?"):
        return 7 * DAY / (_count(day_of_week) or 1)
    if day_of_month not in ("*", "?"):
        return 30 * DAY / (_count(day_of_month) or 1)
    return DAY


@dataclass(frozen=True)
class ScheduleBinding:
    handler_name: str
    handler: Callable[[dict, Any], Any]
    expression: str
    interval_seconds: float
    timeout_seconds: float = 60.0


class ScheduleRunner:
    """Fires one schedule every ``interval`` seconds until stopped."""

    def __init__(self, binding: ScheduleBinding, region: str, rule_prefix: str,
                 stop: threading.Event, max_interval: float = 0.0):
        self.binding = binding
        self.interval = (min(binding.interval_seconds, max_interval) if max_interval > 0
                         else binding.interval_seconds)
        self._region = region
        self._rule_name = f"{rule_prefix}-{binding.handler_name}"
        self._stop = stop
        self.fired = 0
        self._thread = threading.Thread(target=self._run, name=f"schedule:{binding.handler_name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.fire()

    def fire(self) -> None:
        event = scheduled_event(self._rule_name, self._region)
        try:
            self.binding.handler(event, lambda_context(self.binding.handler_name,
                                                       self.binding.timeout_seconds))
            log.info("%s: fired", self.binding.handler_name)
        except Exception:  # noqa: BLE001 — EventBridge just fires again next period
            log.exception("schedule %s raised", self.binding.handler_name)
        finally:
            self.fired += 1
