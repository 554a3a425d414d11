"""Volunteer use cases: profiles, 志愿帮 skills, statistics from the request lifecycle's
events, and the "suggested for you" list."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Callable, Iterable

from functions.core import clock
from functions.core.caller import Caller
from functions.core.errors import AlreadyExists, Conflict, InvalidState, LimitExceeded, NotFound, ValidationError
from functions.core.events import DomainEvent
from functions.core.ids import content_hash, derived_id
from functions.core.validation import field_error, invalid
from functions.core.messaging import PoisonMessage
from functions.requests.model import (ACCEPTED_EVENT, CANCELLED_EVENT, OPEN, RELEASED_EVENT, SETTLED_EVENT,
                                      ServiceRequest)
from functions.volunteers.model import (
    APPROVED, MAX_SKILLS_PER_VOLUNTEER, PENDING, REJECTED, SaveResult, Skill, VolunteerProfile, approved_names,
    parse_availability, review, skill_key,
)
from functions.volunteers.ports import OpenRequests, Places, VolunteerStore

_SAVE_RETRIES = 4


def _time(value: Any) -> datetime | None:
    try:
        return clock.parse_iso(value) if isinstance(value, str) else None
    except ValueError:
        return None


class VolunteerService:
    def __init__(self, store: VolunteerStore, places: Places, category_ids: Callable[[], Iterable[str]],
                 requests: OpenRequests, now: Callable[[], datetime] = clock.now):
        self.store, self.places, self.category_ids, self.now = store, places, category_ids, now
        self.requests = requests

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
            raise field_error("categories", "服务类别须为类别编号的列表")
        problems = {f"categories[{i}]": "不是本社区的服务类别"
                    for i, c in enumerate(categories) if not isinstance(c, str) or c not in known}
        if problems:
            raise invalid(problems)
        return tuple(sorted(set(categories)))

    def _save(self, resident_id: str, change: Callable[[VolunteerProfile], VolunteerProfile],
              marker: str | None = None, marker_at: datetime | None = None,
              first: VolunteerProfile | None = None) -> VolunteerProfile | None:
        """Read, change, write under the version condition; retried when someone else wrote in
        between. With ``marker`` (a statistic of one event) the profile itself records it, so
        a second application of the event is refused by what the same item says: returns None
        then. The first read may be eventually consistent (or ``first``, read by the caller):
        a stale one fails the version condition, and every retry reads consistently."""
        previous, consistent = first, False
        for attempt in range(_SAVE_RETRIES):
            if attempt or previous is None:
                previous = self.store.get_profile(resident_id, consistent=consistent)
            consistent = True
            if marker is not None and self._applied(previous, marker, marker_at):
                return None
            now = self.now()
            base = previous or VolunteerProfile(resident_id=resident_id, created_at=now)
            # From its first save by this code a profile keeps the events it counts: only events
            # from before ``applied_since`` can have a marker item of the old kind.
            updated = replace(change(base), version=base.version + 1, updated_at=now,
                              created_at=base.created_at or now, applied_since=base.applied_since or now)
            if marker is not None:
                updated = updated.with_applied(marker, now)
            result = self.store.save_profile(updated, previous)
            if result is SaveResult.SAVED:
                return updated
            if result is SaveResult.ALREADY_COUNTED:
                return None
        raise Conflict("志愿者信息正在被修改，请重试")

    def _applied(self, profile: VolunteerProfile | None, marker: str, at: datetime | None) -> bool:
        if profile is None:
            return False
        if profile.has_applied(marker):
            return True
        # An event from before the profile kept its own (the upgrade): its marker item, if any.
        if profile.applied_since is None or at is None or at < profile.applied_since:
            return self.store.has_marker(marker)
        return False

    # --- statistics, from the request lifecycle's events ---------------------------------------
    def record_accepted(self, request_id: str, volunteer_id: str, accepted_at: datetime,
                        first: VolunteerProfile | None = None) -> bool:
        """Count an acceptance (and the volunteer's recent load). Idempotent per request."""
        # Per volunteer: a need released after a no-show is accepted again by someone else.
        saved = self._save(volunteer_id, lambda p: replace(p, stats=p.stats.with_accepted(accepted_at, self.now())),
                           marker=f"accepted#{request_id}#{volunteer_id}", marker_at=accepted_at, first=first)
        return saved is not None

    def record_outcome(self, request_id: str, volunteer_id: str, accepted_at: datetime,
                       completed: bool | None, rating: int | None, at: datetime | None = None) -> bool:
        """Count how an accepted request ended: completed, failed, or ``None`` when the requester
        withdrew of their own accord (which says nothing about the volunteer). Idempotent per
        request; counts the acceptance too if its event has not arrived (events may come out of
        order). ``at``: when the outcome happened (the event's time)."""
        profile = self.store.get_profile(volunteer_id, consistent=False)
        if not self._applied(profile, f"accepted#{request_id}#{volunteer_id}", accepted_at):
            self.record_accepted(request_id, volunteer_id, accepted_at, first=profile)
            profile = None
        if completed is None:
            return False
        saved = self._save(volunteer_id,
                           lambda p: replace(p, stats=p.stats.with_outcome(completed, rating if completed else None)),
                           marker=f"outcome#{request_id}#{volunteer_id}", marker_at=at or accepted_at, first=profile)
        return saved is not None

    def record(self, event: DomainEvent) -> bool:
        """Apply one lifecycle event of an accepted request (the ``volunteer-stats`` consumer)."""
        data = event.data
        volunteer_id = data.get("volunteer_id")
        if not isinstance(volunteer_id, str) or not volunteer_id:
            return False  # never accepted: nothing about a volunteer to count
        if event.type == ACCEPTED_EVENT:
            return self.record_accepted(event.subject, volunteer_id, event.occurred_at)
        accepted_at = _time(data.get("accepted_at")) or event.occurred_at
        if event.type == SETTLED_EVENT:
            rating = data.get("rating")
            return self.record_outcome(event.subject, volunteer_id, accepted_at, True,
                                       rating if isinstance(rating, int) else None, at=event.occurred_at)
        if event.type == CANCELLED_EVENT:
            completed = None if data.get("by_requester") else False
            return self.record_outcome(event.subject, volunteer_id, accepted_at, completed, None, at=event.occurred_at)
        if event.type == RELEASED_EVENT:  # accepted, never came
            return self.record_outcome(event.subject, volunteer_id, accepted_at, False, None, at=event.occurred_at)
        raise PoisonMessage(f"volunteer statistics do not handle {event.type}")

    # --- suggestions -----------------------------------------------------------------------------
    def suggested(self, volunteer_id: str, household_id: str | None, limit: int,
                  cursor: dict[str, Any] | None) -> tuple[list[ServiceRequest], dict[str, Any] | None]:
        """Requests suggested to the volunteer that are still open, newest suggestion first. A
        page may take more than one Query when suggestions were taken meanwhile (filtered out)."""
        items: list[ServiceRequest] = []
        last_key = cursor
        while len(items) < limit:
            ids, last_key = self.store.suggested_ids(volunteer_id, limit - len(items), last_key)
            if ids:
                found = self.requests.get_many(ids)
                for request_id in ids:
                    request = found.get(request_id)
                    if request is not None and request.status == OPEN and request.household_id != household_id:
                        items.append(request)
            if not last_key:
                break
        return items, last_key

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
