"""Volunteers: profiles (categories, weekly availability, accepting), 志愿帮 skills and the
service statistics the matcher ranks by.

Plain Python over a ``VolunteerStore`` port (DynamoDB in ``volunteer_store.py``, in memory for
tests). A profile is saved together with its copies in the category index (one item per
(category, volunteer) the volunteer can be matched for) under a version condition, so the
matcher reads candidates with one Query per category and never sees a stale mix.

Statistics are updated by two hooks the request lifecycle calls (each idempotent per request,
through a marker written in the same transaction as the counters):

- ``record_accepted(request)`` when a volunteer accepts: accepted count and recent load;
- ``record_outcome(request)`` when a request reaches a final state (settled / cancelled): a
  completion, or a failure unless the requester cancelled of their own accord; the rating.
  It also counts the acceptance if ``record_accepted`` was never called for that request.
"""
from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Protocol

from functions.core import clock
from functions.core.errors import AlreadyExists, Conflict, InvalidState, LimitExceeded, NotFound, ValidationError
from functions.core.ids import content_hash, derived_id
from functions.identity.caller import Caller
from functions.requests import lifecycle as lc
from functions.requests.lifecycle import ServiceRequest

VOLUNTEER_CATEGORY = "volunteer"   # 志愿帮 (X): matched by approved skills, not by declaration
WEEKDAYS = range(1, 8)             # ISO: Monday = 1 … Sunday = 7, in Asia/Shanghai
MAX_WINDOWS = 7 * 3
MAX_SKILLS_PER_VOLUNTEER = 10
LOAD_WINDOW = timedelta(days=7)
MAX_RECENT = 50                    # recent acceptances kept per volunteer (the load window is a week)
_SAVE_RETRIES = 4

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
        raise ValidationError(details={"fields": {"availability": "must be a list"}})
    if len(raw) > MAX_WINDOWS:
        raise ValidationError(details={"fields": {"availability": f"at most {MAX_WINDOWS} windows"}})
    problems: dict[str, str] = {}
    windows: set[Window] = set()
    for index, entry in enumerate(raw):
        where = f"availability[{index}]"
        if not isinstance(entry, dict):
            problems[where] = "must be an object"
            continue
        weekday, start, end = entry.get("weekday"), entry.get("start"), entry.get("end")
        if isinstance(weekday, bool) or not isinstance(weekday, int) or weekday not in WEEKDAYS:
            problems[f"{where}.weekday"] = "must be an integer from 1 (Monday) to 7 (Sunday)"
        for name, value in (("start", start), ("end", end)):
            if not isinstance(value, str) or not _HHMM.fullmatch(value):
                problems[f"{where}.{name}"] = "must be HH:MM"
        if f"{where}.start" in problems or f"{where}.end" in problems or f"{where}.weekday" in problems:
            continue
        if start == "24:00":
            problems[f"{where}.start"] = "must be before 24:00"
            continue
        if _minutes(start) >= _minutes(end):
            problems[f"{where}.end"] = "must be after start"
            continue
        windows.add(Window(weekday, _minutes(start), _minutes(end)))
    if problems:
        raise ValidationError(details={"fields": problems})
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

    def to_view(self, now: datetime) -> dict[str, Any]:
        return {"accepted": self.accepted, "completed": self.completed, "failed": self.failed,
                "rating": round(self.rating_sum / self.rating_count, 2) if self.rating_count else None,
                "rating_count": self.rating_count, "recent_services": self.load(now)}


# --- profiles -----------------------------------------------------------------------------

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

    def to_view(self, now: datetime) -> dict[str, Any]:
        return {
            "resident_id": self.resident_id,
            "categories": list(self.categories),
            "availability": [w.to_dict() for w in self.availability],
            "accepting": self.accepting,
            "skills": list(self.skills),
            "matched_categories": sorted(self.matchable_categories()),
            "stats": self.stats.to_view(now),
            "updated_at": clock.isoformat(self.updated_at) if self.updated_at else None,
        }


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

    def to_view(self) -> dict[str, Any]:
        return {"id": self.id, "resident_id": self.resident_id, "name": self.name,
                "description": self.description, "status": self.status,
                "created_at": clock.isoformat(self.created_at),
                "reviewed_at": clock.isoformat(self.reviewed_at) if self.reviewed_at else None,
                "reason": self.reason}


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


# --- ports --------------------------------------------------------------------------------

class SaveResult(enum.Enum):
    SAVED = "saved"
    CONFLICT = "conflict"                # the stored version moved on: read again and retry
    ALREADY_COUNTED = "already_counted"  # the marker existed: this statistic was recorded before


class VolunteerStore(Protocol):
    def get_profile(self, resident_id: str) -> VolunteerProfile | None: ...

    def save_profile(self, profile: VolunteerProfile, previous: VolunteerProfile | None,
                     marker: str | None = None) -> SaveResult:
        """Write ``profile`` (version = previous.version + 1) and its category-index items
        (adding and removing per ``matchable_categories``), only if the stored version is still
        ``previous``'s, and, when given, only if ``marker`` was never written — all at once."""

    def has_marker(self, marker: str) -> bool:
        """Whether a ``save_profile(..., marker=...)`` with this marker was applied."""

    def candidates(self, category: str) -> list[VolunteerProfile]:
        """The category index: every volunteer matchable for ``category`` (Query, not Scan)."""

    def create_skill(self, skill: Skill) -> bool: ...

    def get_skill(self, skill_id: str) -> Skill | None: ...

    def skills_of(self, resident_id: str) -> list[Skill]: ...

    def skills_by_status(self, status: str, limit: int,
                         cursor: dict[str, Any] | None) -> tuple[list[Skill], dict[str, Any] | None]: ...

    def update_skill(self, skill: Skill, expected_status: str) -> bool: ...


class Places(Protocol):
    def building_of(self, household_id: str) -> str | None:
        """The household's normalised building (same building = same value)."""


# --- use cases ----------------------------------------------------------------------------

class VolunteerService:
    def __init__(self, store: VolunteerStore, places: Places, category_ids: Callable[[], Iterable[str]],
                 now: Callable[[], datetime] = clock.now):
        self.store, self.places, self.category_ids, self.now = store, places, category_ids, now

    # --- profile ----------------------------------------------------------------------------
    def profile(self, caller: Caller) -> VolunteerProfile:
        profile = self.store.get_profile(caller.resident_id)
        if profile is None or not profile.declared:
            raise NotFound("尚未登记志愿者信息", {"resident_id": caller.resident_id})
        return profile

    def update_profile(self, caller: Caller, categories: Any, availability: Any, accepting: bool) -> VolunteerProfile:
        declared = self._check_categories(categories)
        windows = parse_availability(availability)
        building = self.places.building_of(caller.household_id)

        def change(current: VolunteerProfile) -> VolunteerProfile:
            skills = current.skills
            if not current.declared:
                # Skills approved before the first profile: pick them up now.
                skills = approved_names(self.store.skills_of(caller.resident_id))
            return replace(current, household_id=caller.household_id, building=building, openid=caller.openid,
                           verified=caller.is_verified, categories=declared, availability=windows,
                           accepting=accepting, skills=skills)

        return self._save(caller.resident_id, change)

    def _check_categories(self, categories: Any) -> tuple[str, ...]:
        known = set(self.category_ids())
        if not isinstance(categories, list):
            raise ValidationError(details={"fields": {"categories": "must be a list of category ids"}})
        problems = {f"categories[{i}]": "is not a category of this community"
                    for i, c in enumerate(categories) if not isinstance(c, str) or c not in known}
        if problems:
            raise ValidationError(details={"fields": problems})
        return tuple(sorted(set(categories)))

    def _save(self, resident_id: str, change: Callable[[VolunteerProfile], VolunteerProfile],
              marker: str | None = None) -> VolunteerProfile | None:
        """Read, change, write under the version condition; retried when someone else wrote in
        between. Returns None when ``marker`` shows the change was applied before."""
        for _ in range(_SAVE_RETRIES):
            previous = self.store.get_profile(resident_id)
            now = self.now()
            base = previous or VolunteerProfile(resident_id=resident_id, created_at=now)
            updated = replace(change(base), version=base.version + 1, updated_at=now,
                              created_at=base.created_at or now)
            result = self.store.save_profile(updated, previous, marker)
            if result is SaveResult.SAVED:
                return updated
            if result is SaveResult.ALREADY_COUNTED:
                return None
        raise Conflict("志愿者信息正在被修改，请重试")

    # --- statistics hooks (called by the request lifecycle) ----------------------------------
    def record_accepted(self, request: ServiceRequest) -> bool:
        """Count an acceptance (and the volunteer's recent load). Idempotent per request."""
        if request.volunteer_id is None:
            return False
        accepted_at = request.accepted_at or self.now()
        saved = self._save(request.volunteer_id,
                           lambda p: replace(p, stats=p.stats.with_accepted(accepted_at, self.now())),
                           marker=f"accepted#{request.id}")
        return saved is not None

    def record_outcome(self, request: ServiceRequest) -> bool:
        """Count how an accepted request ended. Idempotent per request; ignores requests that
        were never accepted or are not final yet."""
        if request.volunteer_id is None or request.status not in (lc.SETTLED, lc.CANCELLED, lc.EXPIRED):
            return False
        # Normally counted when it happened; a crash between the accept and its hook is caught
        # up here. Reading the marker first spares every settlement a failed transaction.
        if not self.store.has_marker(f"accepted#{request.id}"):
            self.record_accepted(request)
        if request.status == lc.SETTLED:
            completed = True
        elif request.closed_by == request.requester_id:
            return False  # the requester changed their mind: says nothing about the volunteer
        else:
            completed = False  # an admin cancelled or refunded after a dispute
        rating = request.rating if completed else None
        saved = self._save(request.volunteer_id,
                           lambda p: replace(p, stats=p.stats.with_outcome(completed, rating)),
                           marker=f"outcome#{request.id}")
        return saved is not None

    # --- skills -----------------------------------------------------------------------------
    def propose_skill(self, caller: Caller, name: str, description: str) -> tuple[Skill, bool]:
        """A new pending skill (True), or the same proposal again (False). The id comes from the
        resident and the normalised name, so a retried POST lands on the same item."""
        skill_id = derived_id("skl", caller.resident_id, skill_key(name))
        fingerprint = content_hash(skill_key(name), description)
        existing = self.store.get_skill(skill_id)
        if existing is not None:
            return self._same_skill(existing, fingerprint), False
        mine = self.store.skills_of(caller.resident_id)
        if len([s for s in mine if s.status != REJECTED]) >= MAX_SKILLS_PER_VOLUNTEER:
            raise LimitExceeded("技能数量已达上限", {"max_skills": MAX_SKILLS_PER_VOLUNTEER})
        skill = Skill(id=skill_id, resident_id=caller.resident_id, household_id=caller.household_id, name=name,
                      description=description, status=PENDING, created_at=self.now(), content_hash=fingerprint)
        if self.store.create_skill(skill):
            return skill, True
        stored = self.store.get_skill(skill_id)
        if stored is None:  # pragma: no cover - the conditional write just said it exists
            raise Conflict()
        return self._same_skill(stored, fingerprint), False

    @staticmethod
    def _same_skill(existing: Skill, fingerprint: str) -> Skill:
        if existing.content_hash != fingerprint:
            raise AlreadyExists("已提交过同名技能", {"skill_id": existing.id, "status": existing.status})
        return existing

    def skills_of(self, caller: Caller) -> list[Skill]:
        return self.store.skills_of(caller.resident_id)

    def list_skills(self, status: str, limit: int, cursor: dict[str, Any] | None):
        return self.store.skills_by_status(status, limit, cursor)

    def review_skill(self, actor: str, skill_id: str, decision: str, reason: str | None = None) -> Skill:
        """Approve or reject; then make the volunteer's profile list exactly the approved skills
        (also when nothing changed, which repairs a review that crashed before that step)."""
        for _ in range(_SAVE_RETRIES):
            skill = self.store.get_skill(skill_id)
            if skill is None:
                raise NotFound("没有这个技能", {"skill_id": skill_id})
            reviewed = review(skill, decision, actor, self.now(), reason)
            if reviewed is None:
                break
            if self.store.update_skill(reviewed, expected_status=skill.status):
                skill = reviewed
                break
        else:
            raise InvalidState("技能状态已变化，请刷新后重试", {"skill_id": skill_id})
        self._sync_skills(skill.resident_id)
        return skill

    def _sync_skills(self, resident_id: str) -> None:
        names = approved_names(self.store.skills_of(resident_id))
        current = self.store.get_profile(resident_id)
        if current is None or current.skills == names:
            return
        # Only the profile's skills change; re-read inside _save so a racing edit is kept.
        self._save(resident_id, lambda p: replace(p, skills=approved_names(self.store.skills_of(resident_id))))


def approved_names(skills: Iterable[Skill]) -> tuple[str, ...]:
    return tuple(sorted({s.name for s in skills if s.status == APPROVED}))
