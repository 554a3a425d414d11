"""Statistics as plain rules: what one domain event adds to the aggregates, and how the
aggregates of a range become the figures admins and the public see.

Every figure is a sum (or a union of sets) of per-event contributions, so the order in which
events arrive does not matter; each event is applied once by its id (the one aggregate item an
event adds to keeps the ids it took, and refuses an id it holds in the same conditional write),
so duplicates do not matter either.

Days are the community's calendar days (Asia/Shanghai). Per (day, category): posted, accepted,
completed (settled), cancelled (cancelled or expired), minutes credited, and the exact minutes
from posting to acceptance of each acceptance (p50/p90 are nearest-rank over a range's values:
exact, never re-reading an order), and the people of the category's events that day: residents
(with their building) and households active (posted, accepted or settled a service; activity
sign-ups have an item of their own, category ``-``) and each settlement (the volunteer's building,
the volunteer, minutes credited). A day's people are the union over its items; a month's
buildings (open data, k ≥ 5) the union and sums over the month's items.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from functions.core import clock
from functions.core.errors import InvalidState
from functions.core.events import DomainEvent
from functions.core.validation import Day, Month, field_error

from functions.activities.model import SIGNED_UP_EVENT as SIGNED_UP
from functions.requests.model import ACCEPTED_EVENT as ACCEPTED
from functions.requests.model import CANCELLED_EVENT as CANCELLED
from functions.requests.model import POSTED_EVENT as POSTED
from functions.requests.model import RELEASED_EVENT as RELEASED
from functions.requests.model import SETTLED_EVENT as SETTLED

EVENT_TYPES = (POSTED, ACCEPTED, SETTLED, CANCELLED, RELEASED, SIGNED_UP)
COUNTERS = ("posted", "accepted", "completed", "cancelled", "minutes_credited")

MAX_RANGE_DAYS = 92          # a quarter: the longest range one read covers
VELOCITY_DAYS = 30
DORMANT_AFTER_DAYS = 30      # active in the 90 days before, not in the last 30
DORMANT_LOOKBACK_DAYS = 90
TOP_VOLUNTEERS = 10
K_ANONYMITY = 5
OTHER_GROUP = "其他"
UNKNOWN_BUILDING = "未知"
NO_CATEGORY = "-"            # the (day, category) item of a day's activity sign-ups


def community_day(at: datetime) -> str:
    return at.astimezone(clock.CHINA_TZ).date().isoformat()


def week_of(day: str) -> str:
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


# --- what one event adds ---------------------------------------------------------------------

@dataclass(frozen=True)
class Contribution:
    """The additions of one event; the store applies them together with the event's marker."""
    event_id: str
    day: str
    category: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    accept_minutes: int | None = None
    residents: frozenset[str] = frozenset()
    households: frozenset[str] = frozenset()
    credit: tuple[str, int] | None = None            # (volunteer, minutes credited)
    building_residents: Mapping[str, frozenset[str]] = field(default_factory=dict)
    building_services: tuple[str, int] | None = None  # (building, minutes credited)
    need_text: str | None = None                      # not a credit item: for suggestions

    @property
    def month(self) -> str:
        return self.day[:7]

    @property
    def week(self) -> str:
        return week_of(self.day)

    @property
    def item_category(self) -> str:
        """The category of the (day, category) item this event adds to; activity sign-ups have none."""
        return self.category or NO_CATEGORY

    @property
    def active(self) -> frozenset[tuple[str, str]]:
        """(building, resident) of every resident active by this event."""
        return frozenset((b, r) for b, residents in self.building_residents.items() for r in residents)

    @property
    def settlement(self) -> tuple[str, str, int] | None:
        """(volunteer's building, volunteer or "", minutes credited) of a settlement."""
        if self.building_services is None:
            return None
        building, minutes = self.building_services
        return building, self.credit[0] if self.credit else "", minutes


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _minutes_between(start: str | None, end: datetime) -> int | None:
    if not start:
        return None
    try:
        began = clock.parse_iso(start)
    except ValueError:
        return None
    return max(0, int((end - began).total_seconds() // 60))


def contribution(event: DomainEvent, building_of: Mapping[str, str]) -> Contribution:
    """What ``event`` adds; ``building_of`` maps the event's households to their buildings."""
    data, day = event.data, community_day(event.occurred_at)
    category = _str(data, "category") or "unknown"

    def people(*pairs: tuple[str | None, str | None]) -> dict[str, Any]:
        residents = {r for r, _ in pairs if r}
        households = {h for _, h in pairs if h}
        by_building: dict[str, set[str]] = {}
        for resident, household in pairs:
            if resident:
                by_building.setdefault(building_of.get(household or "", UNKNOWN_BUILDING), set()).add(resident)
        return {"residents": frozenset(residents), "households": frozenset(households),
                "building_residents": {b: frozenset(r) for b, r in by_building.items()}}

    if event.type == POSTED:
        text = _str(data, "text")
        return Contribution(event.id, day, category, {"posted": 1},
                            need_text=normalise(text) and text,
                            **people((_str(data, "requester_id"), _str(data, "household_id"))))
    if event.type == ACCEPTED:
        return Contribution(event.id, day, category, {"accepted": 1},
                            accept_minutes=_minutes_between(_str(data, "posted_at"), event.occurred_at),
                            **people((_str(data, "volunteer_id"), _str(data, "volunteer_household_id"))))
    if event.type == SETTLED:
        volunteer, paid = _str(data, "volunteer_id"), _int(data, "credits_paid")
        counts = {"completed": 1, **({"minutes_credited": paid} if paid else {})}
        building = building_of.get(_str(data, "volunteer_household_id") or "", UNKNOWN_BUILDING)
        return Contribution(event.id, day, category, counts,
                            credit=(volunteer, paid) if volunteer and paid else None,
                            building_services=(building, paid),
                            **people((volunteer, _str(data, "volunteer_household_id")),
                                     (_str(data, "requester_id"), _str(data, "household_id"))))
    if event.type == CANCELLED:
        return Contribution(event.id, day, category, {"cancelled": 1})
    if event.type == SIGNED_UP:   # a community activity: its participant is active that day
        return Contribution(event.id, day, **people((_str(data, "resident_id"), _str(data, "household_id"))))
    return Contribution(event.id, day)  # released: the acceptance already counted; nothing more


def households_of(event: DomainEvent) -> list[str]:
    """The households whose building ``contribution`` needs."""
    if event.type not in (POSTED, ACCEPTED, SETTLED, SIGNED_UP):
        return []
    keys = ("household_id", "volunteer_household_id")
    return sorted({v for k in keys if (v := _str(event.data, k))})


# --- the aggregates as read back -------------------------------------------------------------

@dataclass(frozen=True)
class DayCategory:
    day: str
    category: str
    posted: int = 0
    accepted: int = 0
    completed: int = 0
    cancelled: int = 0
    minutes_credited: int = 0
    accept_minutes: tuple[int, ...] = ()


@dataclass(frozen=True)
class DayPeople:
    day: str
    residents: frozenset[str] = frozenset()
    households: frozenset[str] = frozenset()
    credits: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class BuildingMonth:
    month: str
    building: str
    residents: frozenset[str] = frozenset()
    services: int = 0
    minutes_credited: int = 0


@dataclass(frozen=True)
class DayItem:
    """One (day, category) aggregate as stored: the category's counters that day (None when no
    event of it counted anything: a day's activity sign-ups, a released need) and the people
    and settlements of its events, from which the day's people and the month's buildings are
    the unions and sums."""
    day: str
    category: str
    counts: DayCategory | None = None
    active: frozenset[tuple[str, str]] = frozenset()     # (building, resident)
    households: frozenset[str] = frozenset()
    settlements: tuple[tuple[str, str, int], ...] = ()  # (building, volunteer or "", minutes)

    @property
    def people(self) -> DayPeople:
        return DayPeople(self.day, frozenset(r for _, r in self.active), self.households,
                         tuple((v, m) for _, v, m in self.settlements if v and m))


def buildings_of(month: str, items: Iterable[DayItem], earlier: Iterable[BuildingMonth] = ()) -> list[BuildingMonth]:
    """Per building of ``month``: its residents active, services and minutes credited to them
    (``earlier``: what the former per-month items hold, merged in)."""
    merged: dict[str, list[Any]] = {}
    for b in earlier:
        entry = merged.setdefault(b.building, [set(), 0, 0])
        entry[0] |= b.residents
        entry[1] += b.services
        entry[2] += b.minutes_credited
    for item in items:
        if not item.day.startswith(month):
            continue
        for building, resident in item.active:
            merged.setdefault(building, [set(), 0, 0])[0].add(resident)
        for building, _, minutes in item.settlements:
            entry = merged.setdefault(building, [set(), 0, 0])
            entry[1] += 1
            entry[2] += minutes
    return [BuildingMonth(month, b, frozenset(r), s, m) for b, (r, s, m) in sorted(merged.items())]


def percentile(values: Sequence[int], q: int) -> int | None:
    """Nearest-rank percentile (the smallest value with at least q % of the values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered) / 100))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Range:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def covers(self, day: str) -> bool:
        return self.start.isoformat() <= day <= self.end.isoformat()


FIRST_YEAR, LAST_YEAR = 2000, 2099   # the years a community's figures can be about


def checked_year(year: int, field: str) -> None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise field_error(field, f"年份须在 {FIRST_YEAR} 到 {LAST_YEAR} 之间")


@dataclass
class StatsDay(Day):
    """A day of the years statistics can be about (the document says so: fuzzers stay in range)."""

    def clean(self, value: Any) -> date:
        day = super().clean(value)
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise self.reason(f"年份须在 {FIRST_YEAR} 到 {LAST_YEAR} 之间")
        return day

    def openapi(self) -> dict[str, Any]:
        return {"type": "string", "format": "date", "pattern": r"^20\d{2}-\d{2}-\d{2}$"}


@dataclass
class StatsMonth(Month):
    def clean(self, value: Any) -> tuple[int, int]:
        year, month = super().clean(value)
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise self.reason(f"年份须在 {FIRST_YEAR} 到 {LAST_YEAR} 之间")
        return year, month

    def openapi(self) -> dict[str, Any]:
        return {"type": "string", "pattern": r"^20\d{2}-(0[1-9]|1[0-2])$"}


def checked_range(start: date, end: date, max_days: int = MAX_RANGE_DAYS) -> Range:
    checked_year(start.year, "from")
    checked_year(end.year, "to")
    if start > end:
        raise field_error("from", "开始日期不能晚于结束日期")
    if (end - start).days + 1 > max_days:
        raise field_error("to", f"一次最多查询 {max_days} 天")
    return Range(start, end)


def read_window(wanted: Range) -> Range:
    """The days a read needs: the range itself, the 30 days of the velocity and the 90 of the
    dormant count, all ending at the range's end."""
    back = max(VELOCITY_DAYS, DORMANT_LOOKBACK_DAYS) - 1
    return Range(min(wanted.start, wanted.end - timedelta(days=back)), wanted.end)


def top10_share(minutes_by_holder: Mapping[str, int]) -> float:
    """Share of the minutes held by the top 10 % of holders (at least one holder)."""
    values = sorted((v for v in minutes_by_holder.values() if v > 0), reverse=True)
    total = sum(values)
    if not total:
        return 0.0
    top = values[:max(1, math.ceil(len(values) / 10))]
    return round(sum(top) / total, 4)


def summarise(wanted: Range, days: Iterable[DayCategory], people: Iterable[DayPeople],
              outstanding: Mapping[str, int]) -> dict[str, Any]:
    """The figures of ``GET /v1/admin/stats`` (names of top volunteers are added by the service)."""
    days, people = list(days), list(people)
    end = wanted.end
    velocity_from = (end - timedelta(days=VELOCITY_DAYS - 1)).isoformat()
    recent_from = (end - timedelta(days=DORMANT_AFTER_DAYS - 1)).isoformat()
    lookback_from = (end - timedelta(days=DORMANT_LOOKBACK_DAYS - 1)).isoformat()
    in_range = sorted((d for d in days if wanted.covers(d.day)), key=lambda d: (d.day, d.category))
    accepts = [m for d in in_range for m in d.accept_minutes]
    residents: set[str] = set()
    households: set[str] = set()
    volunteer_minutes: Counter[str] = Counter()
    window_minutes: Counter[str] = Counter()
    recent: set[str] = set()
    earlier: set[str] = set()
    for p in people:
        if wanted.covers(p.day):
            residents |= p.residents
            households |= p.households
            for volunteer, minutes in p.credits:
                volunteer_minutes[volunteer] += minutes
        if p.day >= velocity_from:
            for volunteer, minutes in p.credits:
                window_minutes[volunteer] += minutes
        if p.day >= recent_from:
            recent |= p.residents
        elif p.day >= lookback_from:
            earlier |= p.residents
    credited_30d = sum(d.minutes_credited for d in days if velocity_from <= d.day <= end.isoformat())
    service_outstanding = outstanding.get("service", 0)
    top = sorted(volunteer_minutes.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VOLUNTEERS]
    return {
        "by_day": [{"date": d.day, "category": d.category, "posted": d.posted, "accepted": d.accepted,
                    "completed": d.completed, "cancelled": d.cancelled, "minutes_credited": d.minutes_credited}
                   for d in in_range],
        "accept_minutes": {"p50": percentile(accepts, 50), "p90": percentile(accepts, 90)},
        "active_residents": len(residents),
        "active_households": len(households),
        "top_volunteers": [{"resident_id": r, "minutes": m} for r, m in top],
        "ledger": {
            "outstanding": dict(sorted(outstanding.items())),
            "velocity_30d": round(credited_30d / service_outstanding, 4) if service_outstanding > 0 else 0.0,
            "top10_share": top10_share(window_minutes),
            "dormant_accounts": len(earlier - recent),
        },
    }


# --- open data ---------------------------------------------------------------------------------

def month_range(year: int, month: int) -> Range:
    checked_year(year, "month")
    start = date(year, month, 1)
    following = date(year + (month == 12), month % 12 + 1, 1)
    return Range(start, following - timedelta(days=1))


def k_anonymous_groups(buildings: Iterable[BuildingMonth], k: int = K_ANONYMITY) -> list[dict[str, Any]]:
    """Groups by building; every building with fewer than ``k`` active residents goes into
    "其他", and while "其他" itself is smaller than ``k`` the smallest named group joins it."""
    groups = {b.building: [set(b.residents), b.services, b.minutes_credited] for b in buildings
              if b.building != UNKNOWN_BUILDING}
    other = [set(), 0, 0]
    for b in buildings:
        if b.building == UNKNOWN_BUILDING:
            other = [other[0] | b.residents, other[1] + b.services, other[2] + b.minutes_credited]

    def merge(name: str) -> None:
        residents, services, minutes = groups.pop(name)
        other[0] |= residents
        other[1] += services
        other[2] += minutes

    for name in [n for n, g in groups.items() if len(g[0]) < k]:
        merge(name)
    while other[0] and len(other[0]) < k and groups:
        merge(min(groups, key=lambda n: (len(groups[n][0]), n)))
    out = [{"group": name, "active_residents": len(g[0]), "services": g[1], "minutes_credited": g[2]}
           for name, g in sorted(groups.items())]
    if other[0] or other[1]:
        if len(other[0]) < k:  # the whole community is smaller than k: no figure can be shown
            return []
        out.append({"group": OTHER_GROUP, "active_residents": len(other[0]), "services": other[1],
                    "minutes_credited": other[2]})
    return out


def open_data(month: str, days: Iterable[DayCategory], buildings: Iterable[BuildingMonth]) -> dict[str, Any]:
    by_category: dict[str, Counter[str]] = {}
    for d in days:
        counter = by_category.setdefault(d.category, Counter())
        for name in COUNTERS:
            counter[name] += getattr(d, name)
    buildings = list(buildings)
    residents = set().union(*(b.residents for b in buildings)) if buildings else set()
    active = len(residents)
    return {
        "month": month,
        "k": K_ANONYMITY,
        "by_category": [{"category": c, **{n: counts[n] for n in COUNTERS}} for c, counts in sorted(by_category.items())],
        "totals": {n: sum(c[n] for c in by_category.values()) for n in COUNTERS},
        "active_residents": active if active >= K_ANONYMITY else 0,
        "groups": k_anonymous_groups(buildings),
    }


# --- high-frequency needs ----------------------------------------------------------------------

SUGGESTION_WINDOW_DAYS = 28
SUGGESTION_MIN_COUNT = 3
SIMILARITY = 0.5
OPEN, ACCEPTED_STATUS = "open", "accepted"
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str | None) -> str:
    """Full-width → half-width, lower case, punctuation and whitespace removed."""
    if not text:
        return ""
    folded = unicodedata.normalize("NFKC", text).lower()
    return _PUNCT.sub("", folded)[:100]


def ngrams(text: str, n: int = 2) -> frozenset[str]:
    if len(text) < n:
        return frozenset({text}) if text else frozenset()
    return frozenset(text[i:i + n] for i in range(len(text) - n + 1))


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the character bigrams of two normalised texts."""
    x, y = ngrams(a), ngrams(b)
    if not x or not y:
        return 0.0
    return len(x & y) / len(x | y)


@dataclass(frozen=True)
class NeedText:
    category: str
    key: str        # normalised
    text: str       # as first written
    count: int


@dataclass(frozen=True)
class Cluster:
    category: str
    key: str
    text: str
    count: int
    members: tuple[str, ...]


def cluster(texts: Iterable[NeedText], threshold: float = SIMILARITY) -> list[Cluster]:
    """Greedy clustering per category: the most frequent text starts a cluster and takes every
    later text at least ``threshold`` similar to it. Deterministic (ties by key)."""
    merged: dict[tuple[str, str], list[Any]] = {}
    for t in texts:
        entry = merged.setdefault((t.category, t.key), [t.text, 0])
        entry[1] += t.count
    pending = sorted(merged.items(), key=lambda kv: (kv[0][0], -kv[1][1], kv[0][1]))
    out: list[Cluster] = []
    taken: set[tuple[str, str]] = set()
    for (category, key), (text, count) in pending:
        if (category, key) in taken:
            continue
        taken.add((category, key))
        members, total = [key], count
        for (other_category, other_key), (_, other_count) in pending:
            if other_category != category or (other_category, other_key) in taken:
                continue
            if similarity(key, other_key) >= threshold:
                taken.add((other_category, other_key))
                members.append(other_key)
                total += other_count
        out.append(Cluster(category, key, text, total, tuple(members)))
    return sorted(out, key=lambda c: (-c.count, c.category, c.key))


def frequent(clusters: Iterable[Cluster], min_count: int = SUGGESTION_MIN_COUNT) -> list[Cluster]:
    return [c for c in clusters if c.count >= min_count]


@dataclass(frozen=True)
class Suggestion:
    id: str
    text: str
    category: str
    count: int
    window_days: int
    status: str
    key: str
    accepted_as: str | None = None


class AlreadyAccepted(InvalidState):
    code = "ALREADY_ACCEPTED"
    default_message = "该建议已被采纳"


def weeks_back(today: date, days: int) -> list[str]:
    """The ISO weeks touched by the ``days`` ending ``today``."""
    return sorted({week_of((today - timedelta(days=n)).isoformat()) for n in range(days)})
