"""DynamoDB adapter of volunteers and matching.

Tables (all Query/Get, no Scan):
- ``volunteers``            resident_id → the profile (JSON body) and its ``version``.
- ``volunteer-categories``  category + resident_id → one small item per category the volunteer is
                            matchable for (building and a stable spot, no statistics), written in
                            the profile's transaction only when membership or building changes:
                            statistics live in the profile alone, so an accepted or settled
                            service writes one volunteer item whatever the number of categories.
                            Two keys-only GSIs bound the matcher's read whatever the number of
                            volunteers (``candidates``): ``by-place`` (category, building#spot)
                            for neighbours, ``by-spot`` (category, spot) for a rotating sample;
                            the chosen profiles are read back with one BatchGetItem.
- ``volunteer-markers``     "this was done once" markers, each written in the transaction of what
                            it guards: statistics of ``record_accepted`` / ``record_outcome``
                            (``accepted#<request>``, ``outcome#<request>``) and the match run of
                            a request (``matched#<request>``); expire after a year.
- ``volunteer-skills``      skill id → skill; GSIs by status (admin review) and by owner.
- ``volunteer-matches``     request_id + volunteer_id → a suggestion; GSI by volunteer, newest
                            first (``GET /v1/requests/suggested``); expires a week after the start.
"""
from __future__ import annotations

import json
from typing import Any
from datetime import datetime, timedelta

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from functions.adapters.dynamo import (cancelled_by_condition as _cancelled_by_condition, checked_cursor,
                                       condition_failed as _condition_failed, dt as _dt, index_meta, iso as _iso,
                                       make_meta, new_transaction, table)
from functions.core import clock
from functions.volunteers.model import Match, SaveResult, Skill, VolunteerProfile, VolunteerStats, Window

MARKER_RETENTION = timedelta(days=365)


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
        **({"applied": [list(a) for a in profile.applied], "applied_since": _iso(profile.applied_since)}
           if profile.applied_since is not None else {}),
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
        version=version, created_at=_dt(data.get("created_at")), updated_at=_dt(data.get("updated_at")),
        applied=tuple((str(d), int(day)) for d, day in data.get("applied", ())),
        applied_since=_dt(data.get("applied_since")))


# --- models ------------------------------------------------------------------------------------

@table
class VolunteerItem(Model):
    Meta = make_meta("volunteers")
    resident_id = UnicodeAttribute(hash_key=True)
    version = NumberAttribute()
    body = UnicodeAttribute()


class CandidateByPlace(GlobalSecondaryIndex):
    Meta = index_meta("by-place", "keys")
    category = UnicodeAttribute(hash_key=True)
    place = UnicodeAttribute(range_key=True)


class CandidateBySpot(GlobalSecondaryIndex):
    Meta = index_meta("by-spot", "keys")
    category = UnicodeAttribute(hash_key=True)
    spot = UnicodeAttribute(range_key=True)


@table
class VolunteerCategoryItem(Model):
    Meta = make_meta("volunteer-categories")
    category = UnicodeAttribute(hash_key=True)
    resident_id = UnicodeAttribute(range_key=True)
    version = NumberAttribute()
    body = UnicodeAttribute(null=True)   # items written before issue 14 carry a profile copy (unread)
    spot = UnicodeAttribute(null=True)
    place = UnicodeAttribute(null=True)

    by_place = CandidateByPlace()
    by_spot = CandidateBySpot()


NEIGHBOURS = 3      # same-building candidates read per match
ROTATING = 5        # others, from a start that moves with each request (fair load)


def spot_of(text: str) -> str:
    """A stable, uniform position (crc32, the same in every process)."""
    import zlib

    return f"{zlib.crc32(text.encode()):08x}"


def place_of(building: str | None, resident_id: str) -> str:
    return f"{building or '-'}#{spot_of(resident_id)}"


@table
class VolunteerMarkerItem(Model):
    Meta = make_meta("volunteer-markers", ttl_attribute="expires_at")
    marker = UnicodeAttribute(hash_key=True)
    resident_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    expires_at = NumberAttribute()


class SkillByStatus(GlobalSecondaryIndex):
    Meta = index_meta("by-status")
    status = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class SkillByOwner(GlobalSecondaryIndex):
    Meta = index_meta("by-owner")
    resident_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


@table
class SkillItem(Model):
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

    by_status = SkillByStatus()
    by_owner = SkillByOwner()


class MatchByVolunteer(GlobalSecondaryIndex):
    Meta = index_meta("by-volunteer")
    volunteer_id = UnicodeAttribute(hash_key=True)
    suggested_key = UnicodeAttribute(range_key=True)


@table
class MatchItem(Model):
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

    by_volunteer = MatchByVolunteer()


def _suggested_key(match: Match) -> str:
    at = match.matched_at.astimezone(clock.CHINA_TZ).isoformat(timespec="microseconds")
    return f"{at}#{match.request_id}"


def _skill(record: SkillItem) -> Skill:
    return Skill(id=record.skill_id, resident_id=record.resident_id, household_id=record.household_id,
                 name=record.name, description=record.description, status=record.status,
                 created_at=clock.parse_iso(record.created_at), content_hash=record.content_hash,
                 reviewed_at=_dt(record.reviewed_at), reviewed_by=record.reviewed_by, reason=record.reason)


def _match(record: MatchItem) -> Match:
    return Match(request_id=record.request_id, volunteer_id=record.volunteer_id, openid=record.openid,
                 rank=int(record.rank), score=int(record.score), same_building=bool(record.same_building),
                 category=record.category, matched_at=clock.parse_iso(record.matched_at),
                 expires_at=datetime.fromtimestamp(int(record.expires_at), clock.CHINA_TZ))


# --- the store ---------------------------------------------------------------------------------

class DynamoVolunteerStore:
    def _tx(self) -> TransactWrite:
        return new_transaction()

    # profiles
    def get_profile(self, resident_id: str, consistent: bool = True) -> VolunteerProfile | None:
        try:
            record = VolunteerItem.get(resident_id, consistent_read=consistent)
        except VolunteerItem.DoesNotExist:
            return None
        return profile_from(record.resident_id, record.body, int(record.version))

    def save_profile(self, profile: VolunteerProfile, previous: VolunteerProfile | None,
                     marker: str | None = None) -> SaveResult:
        body = profile_body(profile)
        before = previous.matchable_categories() if previous else frozenset()
        after = profile.matchable_categories()
        condition = (VolunteerItem.resident_id.does_not_exist() if previous is None
                     else VolunteerItem.version == previous.version)
        moved = previous is None or previous.building != profile.building
        added = sorted(after if moved else after - before)
        if not added and not (before - after) and marker is None:
            # The profile alone (statistics, most edits): one conditional put, not a transaction.
            try:
                VolunteerItem(profile.resident_id, version=profile.version, body=body).save(condition=condition)
            except PutError as error:
                if _condition_failed(error):
                    return SaveResult.CONFLICT
                raise
            return SaveResult.SAVED
        try:
            with self._tx() as tx:
                tx.save(VolunteerItem(profile.resident_id, version=profile.version, body=body), condition=condition)
                for category in added:
                    tx.save(VolunteerCategoryItem(category, profile.resident_id, version=profile.version,
                                                  spot=spot_of(profile.resident_id),
                                                  place=place_of(profile.building, profile.resident_id)))
                for category in sorted(before - after):
                    tx.delete(VolunteerCategoryItem(category, profile.resident_id))
                if marker is not None:
                    now = profile.updated_at or clock.now()
                    tx.save(VolunteerMarkerItem(marker, resident_id=profile.resident_id, created_at=clock.isoformat(now),
                                                expires_at=int((now + MARKER_RETENTION).timestamp())),
                            condition=VolunteerMarkerItem.marker.does_not_exist())
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
            VolunteerMarkerItem.get(marker, consistent_read=True)
        except VolunteerMarkerItem.DoesNotExist:
            return False
        return True

    def candidates(self, category: str, building: str | None = None, turn: str = "") -> list[VolunteerProfile]:
        """At most NEIGHBOURS + ROTATING candidates, however many volunteers the category has:
        the building's (from a start that rotates with ``turn``, e.g. the request id), then a
        sample of the category from the same rotating start, wrapping round; their profiles
        (with statistics) in one BatchGetItem."""
        start = spot_of(turn or clock.isoformat(clock.now()))
        ids: list[str] = []

        def take(query: Any, limit: int) -> None:
            for record in query:
                if record.resident_id not in ids:
                    ids.append(record.resident_id)
                if len(ids) >= limit:
                    return

        if building:
            prefix = f"{building}#"
            take(VolunteerCategoryItem.by_place.query(
                category, VolunteerCategoryItem.place.between(f"{prefix}{start}", f"{prefix}~"), limit=NEIGHBOURS),
                NEIGHBOURS)
            if len(ids) < NEIGHBOURS:
                take(VolunteerCategoryItem.by_place.query(
                    category, VolunteerCategoryItem.place.startswith(prefix), limit=NEIGHBOURS), NEIGHBOURS)
        wanted = len(ids) + ROTATING
        take(VolunteerCategoryItem.by_spot.query(category, VolunteerCategoryItem.spot >= start, limit=ROTATING),
             wanted)
        if len(ids) < wanted:
            take(VolunteerCategoryItem.by_spot.query(category, VolunteerCategoryItem.spot < start, limit=ROTATING),
                 wanted)
        if not ids:
            return []
        found = {r.resident_id: r for r in VolunteerItem.batch_get(ids)}
        return [profile_from(i, found[i].body, int(found[i].version)) for i in ids if i in found]

    # skills
    def create_skill(self, skill: Skill) -> bool:
        record = SkillItem(skill.id, resident_id=skill.resident_id, household_id=skill.household_id,
                             name=skill.name, description=skill.description, status=skill.status,
                             created_at=clock.isoformat(skill.created_at), content_hash=skill.content_hash)
        try:
            record.save(condition=SkillItem.skill_id.does_not_exist())
        except PutError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def get_skill(self, skill_id: str) -> Skill | None:
        if not skill_id or len(skill_id) > 128:  # not an id we issue; DynamoDB would refuse the key (a 500)
            return None
        try:
            return _skill(SkillItem.get(skill_id, consistent_read=True))
        except SkillItem.DoesNotExist:
            return None

    def skills_of(self, resident_id: str) -> list[Skill]:
        return [_skill(r) for r in SkillItem.by_owner.query(resident_id)]

    def skills_by_status(self, status: str, limit: int,
                         cursor: dict[str, Any] | None) -> tuple[list[Skill], dict[str, Any] | None]:
        start = checked_cursor(cursor, ("skill_id", "status", "created_at"))
        query = SkillItem.by_status.query(status, limit=limit, last_evaluated_key=start)
        return [_skill(r) for r in query], query.last_evaluated_key

    def update_skill(self, skill: Skill, expected_status: str) -> bool:
        actions = [SkillItem.status.set(skill.status),
                   SkillItem.reviewed_at.set(_iso(skill.reviewed_at)),
                   SkillItem.reviewed_by.set(skill.reviewed_by),
                   SkillItem.reason.set(skill.reason) if skill.reason else SkillItem.reason.remove()]
        try:
            SkillItem(skill.id).update(actions=actions, condition=SkillItem.status == expected_status)
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
                tx.save(VolunteerMarkerItem(f"matched#{first.request_id}", resident_id="-",
                                     created_at=clock.isoformat(first.matched_at),
                                     expires_at=int((first.matched_at + MARKER_RETENTION).timestamp())),
                        condition=VolunteerMarkerItem.marker.does_not_exist())
                for m in matches:
                    tx.save(MatchItem(m.request_id, m.volunteer_id, openid=m.openid, rank=m.rank, score=m.score,
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
        return [_match(r) for r in MatchItem.query(request_id, consistent_read=True)]

    def suggested_ids(self, volunteer_id: str, limit: int,
                      cursor: dict[str, Any] | None) -> tuple[list[str], dict[str, Any] | None]:
        start = checked_cursor(cursor, ("request_id", "volunteer_id", "suggested_key"))
        query = MatchItem.by_volunteer.query(volunteer_id, scan_index_forward=False, limit=limit,
                                               last_evaluated_key=start)
        return [r.request_id for r in query], query.last_evaluated_key
