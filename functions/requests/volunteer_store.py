"""DynamoDB adapters of volunteers and matching, their in-memory twins, and the composition.

Tables (all Query/Get, no Scan):
- ``volunteers``            resident_id → the profile (JSON body) and its ``version``.
- ``volunteer-categories``  category + resident_id → a copy of the profile: the candidate index.
                            One item per category the volunteer is matchable for; written in the
                            same transaction as the profile, so the matcher does ONE Query per
                            match and needs no further read per candidate.
- ``volunteer-markers``     "this was done once" markers, each written in the transaction of what
                            it guards: statistics of ``record_accepted`` / ``record_outcome``
                            (``accepted#<request>``, ``outcome#<request>``) and the match run of
                            a request (``matched#<request>``); expire after a year.
- ``volunteer-skills``      skill id → skill; GSIs by status (admin review) and by owner.
- ``volunteer-matches``     request_id + volunteer_id → a suggestion; GSI by volunteer, newest
                            first (``GET /v1/requests/suggested``); expires a week after the start.

The hooks the request lifecycle calls are at the bottom: ``record_accepted(request)`` and
``record_outcome(request)``.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Iterable

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from functions.core import clock
from functions.core.errors import ValidationError
from functions.core.settings import get_settings
from functions.core.storage import make_meta, new_transaction, table
from functions.requests import lifecycle as lc
from functions.requests.lifecycle import ServiceRequest
from functions.requests.matching import Match, Matcher
from functions.requests.volunteers import (
    SaveResult, Skill, VolunteerProfile, VolunteerService, VolunteerStats, Window,
)

MARKER_RETENTION = timedelta(days=365)
_BAD_CURSOR = ValidationError(details={"fields": {"cursor": "is not a cursor this API returned"}})


def _condition_failed(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def _cancelled_by_condition(error: TransactWriteError) -> bool:
    return any(reason is not None and reason.code == "ConditionalCheckFailed"
               for reason in error.cancellation_reasons)


def _iso(value: datetime | None) -> str | None:
    return clock.isoformat(value) if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return clock.parse_iso(value) if value else None


def checked_cursor(cursor: dict[str, Any] | None, key_names: Iterable[str]) -> dict[str, Any] | None:
    """Only a last-evaluated key of the expected shape reaches DynamoDB (else it would be a 500)."""
    if cursor is None:
        return None
    if set(cursor) != set(key_names) or not all(
            isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in cursor.values()):
        raise _BAD_CURSOR
    return cursor


# --- profile (de)serialisation -----------------------------------------------------------------

def profile_body(profile: VolunteerProfile) -> str:
    stats = profile.stats
    return json.dumps({
        "household_id": profile.household_id, "building": profile.building, "openid": profile.openid,
        "verified": profile.verified, "categories": list(profile.categories),
        "availability": [[w.weekday, w.start, w.end] for w in profile.availability],
        "accepting": profile.accepting, "skills": list(profile.skills),
        "stats": {"accepted": stats.accepted, "completed": stats.completed, "failed": stats.failed,
                  "rating_sum": stats.rating_sum, "rating_count": stats.rating_count,
                  "recent": [clock.isoformat(t) for t in stats.recent]},
        "created_at": _iso(profile.created_at), "updated_at": _iso(profile.updated_at),
    }, ensure_ascii=False, separators=(",", ":"))


def profile_from(resident_id: str, body: str, version: int) -> VolunteerProfile:
    data = json.loads(body)
    stats = data.get("stats", {})
    return VolunteerProfile(
        resident_id=resident_id, household_id=data.get("household_id"), building=data.get("building"),
        openid=data.get("openid"), verified=bool(data.get("verified")),
        categories=tuple(data.get("categories", ())),
        availability=tuple(Window(*w) for w in data.get("availability", ())),
        accepting=bool(data.get("accepting")), skills=tuple(data.get("skills", ())),
        stats=VolunteerStats(accepted=stats.get("accepted", 0), completed=stats.get("completed", 0),
                             failed=stats.get("failed", 0), rating_sum=stats.get("rating_sum", 0),
                             rating_count=stats.get("rating_count", 0),
                             recent=tuple(clock.parse_iso(t) for t in stats.get("recent", ()))),
        version=version, created_at=_dt(data.get("created_at")), updated_at=_dt(data.get("updated_at")))


# --- models ------------------------------------------------------------------------------------

@table
class VolunteerRecord(Model):
    Meta = make_meta("volunteers")
    resident_id = UnicodeAttribute(hash_key=True)
    version = NumberAttribute()
    body = UnicodeAttribute()


@table
class VolunteerCategoryRecord(Model):
    Meta = make_meta("volunteer-categories")
    category = UnicodeAttribute(hash_key=True)
    resident_id = UnicodeAttribute(range_key=True)
    version = NumberAttribute()
    body = UnicodeAttribute()


@table
class MarkerRecord(Model):
    Meta = make_meta("volunteer-markers", ttl_attribute="expires_at")
    marker = UnicodeAttribute(hash_key=True)
    resident_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    expires_at = NumberAttribute()


class _SkillsByStatus(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_status"
        projection = AllProjection()
    status = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class _SkillsByOwner(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_owner"
        projection = AllProjection()
    resident_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


@table
class SkillRecord(Model):
    Meta = make_meta("volunteer-skills")
    skill_id = UnicodeAttribute(hash_key=True)
    resident_id = UnicodeAttribute()
    household_id = UnicodeAttribute()
    name = UnicodeAttribute()
    description = UnicodeAttribute()
    status = UnicodeAttribute()
    created_at = UnicodeAttribute()
    content_hash = UnicodeAttribute()
    reviewed_at = UnicodeAttribute(null=True)
    reviewed_by = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)

    by_status = _SkillsByStatus()
    by_owner = _SkillsByOwner()


class _MatchesByVolunteer(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_volunteer"
        projection = AllProjection()
    volunteer_id = UnicodeAttribute(hash_key=True)
    suggested_key = UnicodeAttribute(range_key=True)


@table
class MatchRecord(Model):
    Meta = make_meta("volunteer-matches", ttl_attribute="expires_at")
    request_id = UnicodeAttribute(hash_key=True)
    volunteer_id = UnicodeAttribute(range_key=True)
    openid = UnicodeAttribute()
    rank = NumberAttribute()
    score = NumberAttribute()
    same_building = BooleanAttribute()
    category = UnicodeAttribute()
    matched_at = UnicodeAttribute()
    suggested_key = UnicodeAttribute()  # matched_at to the microsecond + request id: a total order
    expires_at = NumberAttribute()

    by_volunteer = _MatchesByVolunteer()


def _suggested_key(match: Match) -> str:
    at = match.matched_at.astimezone(clock.CHINA_TZ).isoformat(timespec="microseconds")
    return f"{at}#{match.request_id}"


def _skill(record: SkillRecord) -> Skill:
    return Skill(id=record.skill_id, resident_id=record.resident_id, household_id=record.household_id,
                 name=record.name, description=record.description, status=record.status,
                 created_at=clock.parse_iso(record.created_at), content_hash=record.content_hash,
                 reviewed_at=_dt(record.reviewed_at), reviewed_by=record.reviewed_by, reason=record.reason)


def _match(record: MatchRecord) -> Match:
    return Match(request_id=record.request_id, volunteer_id=record.volunteer_id, openid=record.openid,
                 rank=int(record.rank), score=int(record.score), same_building=bool(record.same_building),
                 category=record.category, matched_at=clock.parse_iso(record.matched_at),
                 expires_at=datetime.fromtimestamp(int(record.expires_at), clock.CHINA_TZ))


# --- the store ---------------------------------------------------------------------------------

class DynamoVolunteerStore:
    def _tx(self) -> TransactWrite:
        return new_transaction()

    # profiles
    def get_profile(self, resident_id: str) -> VolunteerProfile | None:
        try:
            record = VolunteerRecord.get(resident_id, consistent_read=True)
        except VolunteerRecord.DoesNotExist:
            return None
        return profile_from(record.resident_id, record.body, int(record.version))

    def save_profile(self, profile: VolunteerProfile, previous: VolunteerProfile | None,
                     marker: str | None = None) -> SaveResult:
        body = profile_body(profile)
        before = previous.matchable_categories() if previous else frozenset()
        after = profile.matchable_categories()
        condition = (VolunteerRecord.resident_id.does_not_exist() if previous is None
                     else VolunteerRecord.version == previous.version)
        try:
            with self._tx() as tx:
                tx.save(VolunteerRecord(profile.resident_id, version=profile.version, body=body), condition=condition)
                for category in sorted(after):
                    tx.save(VolunteerCategoryRecord(category, profile.resident_id, version=profile.version, body=body))
                for category in sorted(before - after):
                    tx.delete(VolunteerCategoryRecord(category, profile.resident_id))
                if marker is not None:
                    now = profile.updated_at or clock.now()
                    tx.save(MarkerRecord(marker, resident_id=profile.resident_id, created_at=clock.isoformat(now),
                                                expires_at=int((now + MARKER_RETENTION).timestamp())),
                            condition=MarkerRecord.marker.does_not_exist())
        except TransactWriteError as error:
            if not _cancelled_by_condition(error):
                raise
            # Which condition failed? (Cancellation reasons come in PynamoDB's order, not ours.)
            if marker is not None and self._marker_exists(marker):
                return SaveResult.ALREADY_COUNTED
            return SaveResult.CONFLICT
        return SaveResult.SAVED

    def has_marker(self, marker: str) -> bool:
        return self._marker_exists(marker)

    @staticmethod
    def _marker_exists(marker: str) -> bool:
        try:
            MarkerRecord.get(marker, consistent_read=True)
        except MarkerRecord.DoesNotExist:
            return False
        return True

    def candidates(self, category: str) -> list[VolunteerProfile]:
        return [profile_from(r.resident_id, r.body, int(r.version)) for r in VolunteerCategoryRecord.query(category)]

    # skills
    def create_skill(self, skill: Skill) -> bool:
        record = SkillRecord(skill.id, resident_id=skill.resident_id, household_id=skill.household_id,
                             name=skill.name, description=skill.description, status=skill.status,
                             created_at=clock.isoformat(skill.created_at), content_hash=skill.content_hash)
        try:
            record.save(condition=SkillRecord.skill_id.does_not_exist())
        except PutError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def get_skill(self, skill_id: str) -> Skill | None:
        if not skill_id or len(skill_id) > 128:  # not an id we issue; DynamoDB would refuse the key (a 500)
            return None
        try:
            return _skill(SkillRecord.get(skill_id, consistent_read=True))
        except SkillRecord.DoesNotExist:
            return None

    def skills_of(self, resident_id: str) -> list[Skill]:
        return [_skill(r) for r in SkillRecord.by_owner.query(resident_id)]

    def skills_by_status(self, status: str, limit: int,
                         cursor: dict[str, Any] | None) -> tuple[list[Skill], dict[str, Any] | None]:
        start = checked_cursor(cursor, ("skill_id", "status", "created_at"))
        query = SkillRecord.by_status.query(status, limit=limit, last_evaluated_key=start)
        return [_skill(r) for r in query], query.last_evaluated_key

    def update_skill(self, skill: Skill, expected_status: str) -> bool:
        actions = [SkillRecord.status.set(skill.status),
                   SkillRecord.reviewed_at.set(_iso(skill.reviewed_at)),
                   SkillRecord.reviewed_by.set(skill.reviewed_by),
                   SkillRecord.reason.set(skill.reason) if skill.reason else SkillRecord.reason.remove()]
        try:
            SkillRecord(skill.id).update(actions=actions, condition=SkillRecord.status == expected_status)
        except UpdateError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    # matches
    def record_matches(self, matches: list[Match]) -> bool:
        if not matches:
            return True
        first = matches[0]
        try:
            with self._tx() as tx:
                # One marker per request, not a condition per match: a retry that ranks other
                # volunteers (profiles changed meanwhile) must not add them to the first run's.
                tx.save(MarkerRecord(f"matched#{first.request_id}", resident_id="-",
                                     created_at=clock.isoformat(first.matched_at),
                                     expires_at=int((first.matched_at + MARKER_RETENTION).timestamp())),
                        condition=MarkerRecord.marker.does_not_exist())
                for m in matches:
                    tx.save(MatchRecord(m.request_id, m.volunteer_id, openid=m.openid, rank=m.rank, score=m.score,
                                        same_building=m.same_building, category=m.category,
                                        matched_at=clock.isoformat(m.matched_at),
                                        suggested_key=_suggested_key(m),
                                        expires_at=int(m.expires_at.timestamp())))
        except TransactWriteError as error:
            if _cancelled_by_condition(error):
                return False
            raise
        return True

    def matches_for(self, request_id: str) -> list[Match]:
        return [_match(r) for r in MatchRecord.query(request_id, consistent_read=True)]

    def suggested_ids(self, volunteer_id: str, limit: int,
                      cursor: dict[str, Any] | None) -> tuple[list[str], dict[str, Any] | None]:
        start = checked_cursor(cursor, ("request_id", "volunteer_id", "suggested_key"))
        query = MatchRecord.by_volunteer.query(volunteer_id, scan_index_forward=False, limit=limit,
                                               last_evaluated_key=start)
        return [r.request_id for r in query], query.last_evaluated_key


class InMemoryVolunteerStore:
    """The same conditional semantics in one process (domain tests)."""

    def __init__(self) -> None:
        self.profiles: dict[str, VolunteerProfile] = {}
        self.index: dict[tuple[str, str], VolunteerProfile] = {}
        self.markers: set[str] = set()
        self.skills: dict[str, Skill] = {}
        self.matches: dict[tuple[str, str], Match] = {}

    def get_profile(self, resident_id: str) -> VolunteerProfile | None:
        return self.profiles.get(resident_id)

    def has_marker(self, marker: str) -> bool:
        return marker in self.markers

    def save_profile(self, profile: VolunteerProfile, previous: VolunteerProfile | None,
                     marker: str | None = None) -> SaveResult:
        stored = self.profiles.get(profile.resident_id)
        if (stored.version if stored else None) != (previous.version if previous else None):
            return SaveResult.CONFLICT
        if marker is not None and marker in self.markers:
            return SaveResult.ALREADY_COUNTED
        for category in (previous.matchable_categories() if previous else ()):
            self.index.pop((category, profile.resident_id), None)
        for category in profile.matchable_categories():
            self.index[(category, profile.resident_id)] = profile
        self.profiles[profile.resident_id] = profile
        if marker is not None:
            self.markers.add(marker)
        return SaveResult.SAVED

    def candidates(self, category: str) -> list[VolunteerProfile]:
        return [p for (c, _), p in sorted(self.index.items()) if c == category]

    def create_skill(self, skill: Skill) -> bool:
        if skill.id in self.skills:
            return False
        self.skills[skill.id] = skill
        return True

    def get_skill(self, skill_id: str) -> Skill | None:
        return self.skills.get(skill_id)

    def skills_of(self, resident_id: str) -> list[Skill]:
        return sorted((s for s in self.skills.values() if s.resident_id == resident_id), key=lambda s: s.created_at)

    def skills_by_status(self, status: str, limit: int, cursor: dict[str, Any] | None):
        matching = sorted((s for s in self.skills.values() if s.status == status), key=lambda s: (s.created_at, s.id))
        return matching[:limit], None

    def update_skill(self, skill: Skill, expected_status: str) -> bool:
        if self.skills[skill.id].status != expected_status:
            return False
        self.skills[skill.id] = skill
        return True

    def record_matches(self, matches: list[Match]) -> bool:
        if not matches:
            return True
        if f"matched#{matches[0].request_id}" in self.markers:
            return False
        self.markers.add(f"matched#{matches[0].request_id}")
        for m in matches:
            self.matches[(m.request_id, m.volunteer_id)] = m
        return True

    def matches_for(self, request_id: str) -> list[Match]:
        return [m for (r, _), m in sorted(self.matches.items()) if r == request_id]


# --- reading the "suggested for you" feed ------------------------------------------------------

def suggested_requests(store: DynamoVolunteerStore, volunteer_id: str, household_id: str | None, limit: int,
                       cursor: dict[str, Any] | None) -> tuple[list[ServiceRequest], dict[str, Any] | None]:
    """Requests suggested to the volunteer that are still open, newest suggestion first. A page
    may take more than one Query when suggestions were taken meanwhile (filtered out)."""
    from functions.requests.wiring import get_request_store

    items: list[ServiceRequest] = []
    last_key = cursor
    while len(items) < limit:
        ids, last_key = store.suggested_ids(volunteer_id, limit - len(items), last_key)
        if ids:
            found = get_request_store().get_many(ids)
            for request_id in ids:
                request = found.get(request_id)
                if request is not None and request.status == lc.OPEN and request.household_id != household_id:
                    items.append(request)
        if not last_key:
            break
    return items, last_key


# --- composition -------------------------------------------------------------------------------

class IdentityPlaces:
    """Buildings from identity's households, normalised so "3幢" and "3栋" are one building."""

    def building_of(self, household_id: str) -> str | None:
        from functions.identity.wiring import get_identity_service

        household = get_identity_service().store.get_household(household_id)
        return household.address.normalised()[0] if household is not None else None


@lru_cache(maxsize=1)
def get_volunteer_store() -> DynamoVolunteerStore:
    return DynamoVolunteerStore()


@lru_cache(maxsize=1)
def get_volunteer_service() -> VolunteerService:
    from functions.requests.catalog import get_catalog

    return VolunteerService(get_volunteer_store(), IdentityPlaces(),
                            category_ids=lambda: [c.id for c in get_catalog().all()])


@lru_cache(maxsize=1)
def get_matcher() -> Matcher:
    from functions.notifications.wiring import get_notification_service
    from functions.requests.catalog import get_catalog
    from functions.requests.wiring import get_request_store

    return Matcher(get_request_store(), IdentityPlaces(), get_volunteer_store(), get_volunteer_store(),
                   get_notification_service(), category_name=lambda c: get_catalog().get(c).name,
                   notify_count=get_settings().match_notify_count)


def record_accepted(request: ServiceRequest) -> bool:
    """Hook for the lifecycle: call after a volunteer accepted ``request``. Idempotent."""
    return get_volunteer_service().record_accepted(request)


def record_outcome(request: ServiceRequest) -> bool:
    """Hook for the lifecycle: call with the request once final (settled, cancelled). Idempotent."""
    return get_volunteer_service().record_outcome(request)

