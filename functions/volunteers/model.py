"""Volunteers as plain rules: profiles (categories, weekly availability, accepting), 志愿帮
skills and the service statistics the matcher ranks by.

A profile is saved together with its copies in the category index (one item per (category,
volunteer) the volunteer can be matched for) under a version condition, so the matcher reads
candidates with one Query per category and never sees a stale mix.

Statistics follow the request lifecycle through its events (``routes.py`` consumes them), each
applied once per request through a marker written in the same transaction as the counters:
``request.accepted`` counts an acceptance and the recent load; ``request.settled`` a completion
and its rating; ``request.cancelled`` of an accepted request a failure, unless the requester
cancelled of their own accord.
"""
from __future__ import annotations

import enum
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Iterable

from functions.core import clock
from functions.core.validation import field_error, invalid

VOLUNTEER_CATEGORY = "volunteer"   # 志愿帮 (X): matched by approved skills, not by declaration
WEEKDAYS = range(1, 8)             # ISO: Monday = 1 … Sunday = 7, in Asia/Shanghai
MAX_WINDOWS = 7 * 3
MAX_SKILLS_PER_VOLUNTEER = 10
LOAD_WINDOW = timedelta(days=7)
MAX_RECENT = 50                    # recent acceptances kept per volunteer (the load window is a week)
# How long a statistic's event id is kept in the profile to refuse it a second time: longer than
# any message can come back (SQS keeps a message 4 days, the dead-letter queue 14, then redrive).
APPLIED_RETENTION = timedelta(days=21)

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)|24:00")

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
SKILL_STATUSES = (PENDING, APPROVED, REJECTED)


# --- availability -------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Window:
    weekday: int
    start: int   # minutes after midnight
    end: int     # exclusive; 1440 = midnight at the end of the day

    def covers(self, at: datetime) -> bool:
        local = at.astimezone(clock.CHINA_TZ)
        minute = local.hour * 60 + local.minute
        return local.isoweekday() == self.weekday and self.start <= minute < self.end

    def covers_span(self, start: datetime, minutes: int) -> bool:
        local = start.astimezone(clock.CHINA_TZ)
        first = local.hour * 60 + local.minute
        return (local.isoweekday() == self.weekday and self.start <= first
                and first + minutes <= self.end)

    def to_dict(self) -> dict[str, Any]:
        return {"weekday": self.weekday, "start": _hhmm(self.start), "end": _hhmm(self.end)}


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(text: str) -> int:
    hours, mins = text.split(":")
    return int(hours) * 60 + int(mins)


def parse_availability(raw: Any) -> tuple[Window, ...]:
    """Weekly windows from ``[{"weekday": 1-7, "start": "HH:MM", "end": "HH:MM"}]``; 400 naming
    each bad entry. Identical windows collapse; the result is sorted."""
    if not isinstance(raw, list):
        raise field_error("availability", "可服务时间须为列表")
    if len(raw) > MAX_WINDOWS:
        raise field_error("availability", f"可服务时间最多 {MAX_WINDOWS} 段")
    problems: dict[str, str] = {}
    windows: set[Window] = set()
    for index, entry in enumerate(raw):
        where = f"availability[{index}]"
        if not isinstance(entry, dict):
            problems[where] = "须为对象"
            continue
        weekday, start, end = entry.get("weekday"), entry.get("start"), entry.get("end")
        if isinstance(weekday, bool) or not isinstance(weekday, int) or weekday not in WEEKDAYS:
            problems[f"{where}.weekday"] = "星期须为 1（周一）到 7（周日）"
        for name, value in (("start", start), ("end", end)):
            if not isinstance(value, str) or not _HHMM.fullmatch(value):
                problems[f"{where}.{name}"] = "时间格式须为 HH:MM"
        if f"{where}.start" in problems or f"{where}.end" in problems or f"{where}.weekday" in problems:
            continue
        if start == "24:00":
            problems[f"{where}.start"] = "开始时间须早于 24:00"
            continue
        if _minutes(start) >= _minutes(end):
            problems[f"{where}.end"] = "结束时间须晚于开始时间"
            continue
        windows.add(Window(weekday, _minutes(start), _minutes(end)))
    if problems:
        raise invalid(problems)
    return tuple(sorted(windows))


# --- statistics ---------------------------------------------------------------------------

@dataclass(frozen=True)
class VolunteerStats:
    accepted: int = 0
    completed: int = 0
    failed: int = 0              # accepted, then not completed, and not the requester's own cancellation
    rating_sum: int = 0
    rating_count: int = 0
    recent: tuple[datetime, ...] = ()   # acceptance times within the load window

    def load(self, now: datetime) -> int:
        """Services accepted in the last 7 days (fairness: fewer ranks higher)."""
        return sum(1 for at in self.recent if now - LOAD_WINDOW < at <= now)

    def with_accepted(self, at: datetime, now: datetime) -> "VolunteerStats":
        recent = sorted(t for t in (*self.recent, at) if t > now - LOAD_WINDOW)[-MAX_RECENT:]
        return replace(self, accepted=self.accepted + 1, recent=tuple(recent))

    def with_outcome(self, completed: bool, rating: int | None) -> "VolunteerStats":
        changed = replace(self, completed=self.completed + 1) if completed else replace(self, failed=self.failed + 1)
        if completed and rating is not None:
            changed = replace(changed, rating_sum=changed.rating_sum + rating, rating_count=changed.rating_count + 1)
        return changed



# --- profiles -----------------------------------------------------------------------------

def applied_digest(marker: str) -> str:
    """48 bits of the marker: a few hundred per volunteer at most, so a collision is ~1e-10."""
    return hashlib.sha256(marker.encode()).hexdigest()[:12]


def epoch_day(at: datetime) -> int:
    return int(at.timestamp() // 86400)


@dataclass(frozen=True)
class VolunteerProfile:
    resident_id: str
    household_id: str | None = None
    building: str | None = None          # normalised (see identity.domain.Address.normalised)
    openid: str | None = None
    verified: bool = False
    categories: tuple[str, ...] = ()     # as declared
    availability: tuple[Window, ...] = ()
    accepting: bool = False
    skills: tuple[str, ...] = ()         # names of approved 志愿帮 skills
    stats: VolunteerStats = field(default_factory=VolunteerStats)
    version: int = 0                     # 0: not stored yet
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Statistics applied to this profile, as (digest of the marker, epoch day applied) for
    # APPLIED_RETENTION: the write that counts an event and the proof it was counted are one
    # item under one version condition. ``applied_since``: when the first was kept (markers
    # of earlier events live in the old marker items).
    applied: tuple[tuple[str, int], ...] = ()
    applied_since: datetime | None = None

    def has_applied(self, marker: str) -> bool:
        digest = applied_digest(marker)
        return any(d == digest for d, _ in self.applied)

    def with_applied(self, marker: str, now: datetime) -> "VolunteerProfile":
        today = epoch_day(now)
        oldest = epoch_day(now - APPLIED_RETENTION)
        kept = tuple((d, day) for d, day in self.applied if day >= oldest)
        return replace(self, applied=(*kept, (applied_digest(marker), today)),
                       applied_since=self.applied_since or now)

    @property
    def declared(self) -> bool:
        """Whether the resident saved a profile (not just statistics from serving)."""
        return self.openid is not None

    def matchable_categories(self) -> frozenset[str]:
        """The categories this volunteer is a candidate for: the index holds one item per each."""
        if not (self.accepting and self.verified and self.declared):
            return frozenset()
        matched = set(self.categories) - {VOLUNTEER_CATEGORY}
        if self.skills:
            matched.add(VOLUNTEER_CATEGORY)
        return frozenset(matched)



# --- skills -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Skill:
    id: str
    resident_id: str
    household_id: str
    name: str
    description: str
    status: str
    created_at: datetime
    content_hash: str
    reviewed_at: datetime | None = None
    reviewed_by: str | None = None
    reason: str | None = None



def skill_key(name: str) -> str:
    """Two spellings of one skill name ("摄影 ", "摄影") are the same skill of a resident."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", name)).strip().casefold()


def review(skill: Skill, decision: str, actor: str, at: datetime, reason: str | None) -> Skill | None:
    """The reviewed skill, or None when the decision changes nothing (a repeated click).

    pending → approved | rejected; rejected → approved (an admin corrects a rejection);
    approved → rejected (an admin withdraws a skill: it stops counting in matching).
    """
    if skill.status == decision:
        return None
    return replace(skill, status=decision, reviewed_at=at, reviewed_by=actor,
                   reason=reason if decision == REJECTED else None)


class SaveResult(enum.Enum):
    SAVED = "saved"
    CONFLICT = "conflict"                # the stored version moved on: read again and retry
    ALREADY_COUNTED = "already_counted"  # the marker existed: this statistic was recorded before


def approved_names(skills: Iterable[Skill]) -> tuple[str, ...]:
    return tuple(sorted({s.name for s in skills if s.status == APPROVED}))


@dataclass(frozen=True)
class Match:
    request_id: str
    volunteer_id: str
    openid: str
    rank: int
    score: int
    same_building: bool
    category: str
    matched_at: datetime
    expires_at: datetime
