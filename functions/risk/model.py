"""Risk rules as plain values: the limits, the counters' keys, the refusals and the flags.

Limits (API.md "Risk controls", all per community, 0 switches one off) are checked where the
credit is made: ``RiskService.settlement_writes`` hands the settlement transaction conditional
``ADD``s on two counters — the volunteer's day (credited minutes, services) and the pair of
households' day (services) — so two settlements racing past a limit cannot both commit. Days
are the community's calendar days (Asia/Shanghai).

Flags are computed from ``request.settled`` events (the ``risk-flags`` queue): each settlement
between two households is recorded under their pair, and the pair's recent settlements decide

- ``repeated_pair``: at least ``repeated_pair_count`` services between the two households within
  ``flag_window_days``;
- ``rapid_cycle``: services both ways between the two households within ``rapid_cycle_hours``
  (A serves B, then B serves A: credits going round in circles).

One flag per (kind, pair) is open at a time; further settlements update its count. An admin
resolves it ``ok`` (settlements up to then are not flagged again) or ``reverse`` (the flagged
settlements are reversed in the ledger, with the admin as actor and the reason).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable

from functions.core import clock
from functions.core.errors import LimitExceeded

DAILY_MINUTES, DAILY_SERVICES, PAIR_DAILY = "daily_minutes", "daily_services", "pair_daily"
REPEATED_PAIR, RAPID_CYCLE, BACKDATED = "repeated_pair", "rapid_cycle", "backdated"
FLAG_KINDS = (REPEATED_PAIR, RAPID_CYCLE, BACKDATED)
OPEN, RESOLVED = "open", "resolved"
FLAG_STATUSES = (OPEN, RESOLVED)
OK, REVERSE = "ok", "reverse"
OUTCOMES = (OK, REVERSE)
COUNTER_RETENTION = timedelta(days=3)   # a day's counters are read only on that day


@dataclass(frozen=True)
class RiskLimits:
    daily_minutes: int = 480
    daily_services: int = 6
    pair_daily: int = 2
    repeated_pair_count: int = 5
    flag_window_days: int = 7
    rapid_cycle_hours: int = 24

    @property
    def lookback(self) -> timedelta:
        """How far back a new settlement is compared with its pair's others."""
        return max(timedelta(days=self.flag_window_days), timedelta(hours=self.rapid_cycle_hours))


def community_day(at: datetime) -> str:
    return at.astimezone(clock.CHINA_TZ).date().isoformat()


def pair_of(household_a: str, household_b: str) -> str:
    """The unordered pair of two households, as one key."""
    return "+".join(sorted((household_a, household_b)))


def volunteer_counter(resident_id: str, day: str) -> str:
    return f"vol#{resident_id}#{day}"


def pair_counter(pair: str, day: str) -> str:
    return f"pair#{pair}#{day}"


def limit_exceeded(limit: str, maximum: int, used: int | None = None) -> LimitExceeded:
    messages = {DAILY_MINUTES: f"该志愿者今日获得的时间积分已达上限（{maximum} 分钟）",
                DAILY_SERVICES: f"该志愿者今日的服务次数已达上限（{maximum} 次）",
                PAIR_DAILY: f"这两户之间今日的服务次数已达上限（{maximum} 次）"}
    details = {"limit": limit, "max": maximum}
    if used is not None:
        details["used"] = used
    return LimitExceeded(messages[limit], details)


@dataclass(frozen=True)
class Counter:
    key: str
    minutes: int = 0
    services: int = 0


# --- flags ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settlement:
    """One settled service between two households, as the flags see it."""
    pair: str
    request_id: str
    settled_at: datetime
    volunteer_household_id: str
    requester_household_id: str
    volunteer_id: str
    amount: int
    settlement_transfer_id: str | None

    @property
    def sort_key(self) -> str:
        return f"{self.settled_at.astimezone(timezone.utc):%Y%m%dT%H%M%S}#{self.request_id}"

    @property
    def direction(self) -> tuple[str, str]:
        """(who served, who was served)."""
        return self.volunteer_household_id, self.requester_household_id


@dataclass(frozen=True)
class Finding:
    kind: str
    pair: str
    count: int
    request_ids: tuple[str, ...]
    window_days: int
    window_hours: int
    through: str              # sort key of the newest settlement it covers


def assess(recent: Iterable[Settlement], new: Settlement, limits: RiskLimits,
           reviewed_through: dict[str, str] | None = None) -> list[Finding]:
    """What the pair's settlements (``recent``, ``new`` among them) show at ``new``'s time;
    settlements an admin already reviewed (``reviewed_through[kind]``) are not counted again."""
    reviewed_through = reviewed_through or {}
    ordered = sorted({s.request_id: s for s in [*recent, new]}.values(), key=lambda s: s.sort_key)
    findings: list[Finding] = []
    if limits.repeated_pair_count > 0:
        since = new.settled_at - timedelta(days=limits.flag_window_days)
        window = [s for s in ordered if s.settled_at > since and s.settled_at <= new.settled_at
                  and s.sort_key > reviewed_through.get(REPEATED_PAIR, "")]
        if len(window) >= limits.repeated_pair_count:
            findings.append(Finding(REPEATED_PAIR, new.pair, len(window), tuple(s.request_id for s in window),
                                    limits.flag_window_days, limits.flag_window_days * 24, window[-1].sort_key))
    if limits.rapid_cycle_hours > 0:
        since = new.settled_at - timedelta(hours=limits.rapid_cycle_hours)
        window = [s for s in ordered if s.settled_at >= since and s.settled_at <= new.settled_at
                  and s.sort_key > reviewed_through.get(RAPID_CYCLE, "")]
        if len({s.direction for s in window}) > 1:
            findings.append(Finding(RAPID_CYCLE, new.pair, len(window), tuple(s.request_id for s in window),
                                    -(-limits.rapid_cycle_hours // 24), limits.rapid_cycle_hours,
                                    window[-1].sort_key))
    return findings


@dataclass(frozen=True)
class Flag:
    id: str
    kind: str
    pair: str
    count: int
    request_ids: tuple[str, ...]
    window_days: int
    window_hours: int
    status: str
    created_at: datetime
    updated_at: datetime
    through: str
    outcome: str | None = None
    reason: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    reversal_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def subjects(self) -> list[str]:
        return self.pair.split("+")
