"""The DynamoDB adapters of volunteers and matching on moto."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from functions.core.clock import CHINA_TZ
from functions.core.errors import ValidationError
from functions.volunteers.matching import Match
from functions.volunteers.dynamo import DynamoVolunteerStore
from functions.volunteers.model import SaveResult, Skill, VolunteerProfile, VolunteerStats, Window

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=CHINA_TZ)


@pytest.fixture
def store(aws):
    return DynamoVolunteerStore()


def profile(resident_id="res_a", version=1, **overrides) -> VolunteerProfile:
    values = dict(resident_id=resident_id, household_id="hh_a", building="3", openid=f"openid-{resident_id}",
                  verified=True, categories=("pet", "pickup"), availability=(Window(2, 480, 600),), accepting=True,
                  stats=VolunteerStats(accepted=2, completed=1, failed=1, rating_sum=4, rating_count=1,
                                       recent=(NOW - timedelta(days=1),)),
                  version=version, created_at=NOW, updated_at=NOW)
    values.update(overrides)
    return VolunteerProfile(**values)


def test_profile_round_trips_and_is_indexed_per_matchable_category(store):
    first = profile()
    assert store.save_profile(first, None) is SaveResult.SAVED
    assert store.get_profile("res_a") == first
    assert store.candidates("pickup") == [first] and store.candidates("pet") == [first]
    assert store.candidates("parcel") == []

    second = replace(first, categories=("parcel",), version=2)
    assert store.save_profile(second, first) is SaveResult.SAVED
    assert store.candidates("pickup") == [] and store.candidates("pet") == []
    assert store.candidates("parcel") == [second]

    paused = replace(second, accepting=False, version=3)
    assert store.save_profile(paused, second) is SaveResult.SAVED
    assert store.candidates("parcel") == []
    assert store.get_profile("res_a").accepting is False


def test_a_stale_version_is_a_conflict_and_changes_nothing(store):
    first = profile()
    store.save_profile(first, None)
    assert store.save_profile(profile(version=1, categories=("tutoring",)), None) is SaveResult.CONFLICT
    store.save_profile(replace(first, version=2, categories=("pickup",)), first)
    assert store.save_profile(replace(first, version=2, categories=("tutoring",)), first) is SaveResult.CONFLICT
    assert store.get_profile("res_a").categories == ("pickup",)
    assert store.candidates("tutoring") == [] and store.candidates("pet") == []


def test_a_marker_makes_a_statistic_count_once(store):
    first = profile()
    store.save_profile(first, None)
    counted = replace(first, version=2, stats=first.stats.with_outcome(True, 5))
    assert store.save_profile(counted, first, marker="outcome#req_1") is SaveResult.SAVED
    again = replace(counted, version=3, stats=counted.stats.with_outcome(True, 5))
    assert store.save_profile(again, counted, marker="outcome#req_1") is SaveResult.ALREADY_COUNTED
    assert store.get_profile("res_a").stats.completed == 2
    # Same version, other marker: an ordinary conflict, not "counted".
    assert store.save_profile(replace(first, version=2), first, marker="outcome#req_2") is SaveResult.CONFLICT


def test_matches_are_recorded_once_per_request_and_listed_newest_first_per_volunteer(store):
    def match(request_id, volunteer_id, at, rank=1):
        return Match(request_id=request_id, volunteer_id=volunteer_id, openid=f"openid-{volunteer_id}", rank=rank,
                     score=500, same_building=True, category="pickup", matched_at=at,
                     expires_at=at + timedelta(days=8))

    assert store.record_matches([match("req_1", "v1", NOW), match("req_1", "v2", NOW, 2)])
    assert not store.record_matches([match("req_1", "v3", NOW)])          # another run of the same request
    assert sorted(m.volunteer_id for m in store.matches_for("req_1")) == ["v1", "v2"]
    assert store.matches_for("req_1")[0].expires_at == NOW + timedelta(days=8)
    store.record_matches([match("req_2", "v1", NOW + timedelta(minutes=5))])
    store.record_matches([match("req_3", "v1", NOW + timedelta(minutes=9))])
    ids, cursor = store.suggested_ids("v1", 2, None)
    assert ids == ["req_3", "req_2"] and cursor
    ids, cursor = store.suggested_ids("v1", 2, cursor)
    assert ids == ["req_1"]


def test_foreign_cursors_are_a_validation_error(store):
    for cursor in ({"x": {"S": "1"}}, {"request_id": "a", "volunteer_id": "b", "suggested_key": "c"},
                   {"request_id": {"N": "1"}, "volunteer_id": {"S": "b"}, "suggested_key": {"S": "c"}}):
        with pytest.raises(ValidationError):
            store.suggested_ids("v1", 2, cursor)
        with pytest.raises(ValidationError):
            store.skills_by_status("pending", 2, cursor)


def test_skills_by_status_and_owner_with_conditional_review(store):
    for n in range(3):
        assert store.create_skill(Skill(id=f"skl_{n}", resident_id="res_a", household_id="hh_a", name=f"技能{n}",
                                        description="", status="pending", created_at=NOW + timedelta(minutes=n),
                                        content_hash="h"))
    assert not store.create_skill(Skill(id="skl_0", resident_id="res_b", household_id="hh_b", name="x",
                                        description="", status="pending", created_at=NOW, content_hash="h"))
    page, cursor = store.skills_by_status("pending", 2, None)
    assert [s.id for s in page] == ["skl_0", "skl_1"]
    page, _ = store.skills_by_status("pending", 2, cursor)
    assert [s.id for s in page] == ["skl_2"]
    skill = store.get_skill("skl_1")
    approved = replace(skill, status="approved", reviewed_at=NOW, reviewed_by="admin")
    assert store.update_skill(approved, expected_status="pending")
    assert not store.update_skill(replace(skill, status="rejected"), expected_status="pending")
    assert store.get_skill("skl_1") == approved
    assert [s.id for s in store.skills_of("res_a")] == ["skl_0", "skl_1", "skl_2"]


def test_the_lifecycle_events_count_each_request_once_in_profile_and_index(aws):
    from functions import bootstrap
    from functions.core.caller import Caller
    from functions.requests import model as lc
    from functions.requests.model import ServiceRequest, accepted_event, settled_event

    def record_accepted(request):
        return bootstrap.volunteers().record(accepted_event(request))

    def record_outcome(request):
        return bootstrap.volunteers().record(settled_event(request, NOW))

    volunteer = Caller(openid="openid-v", resident_id="res_v", household_id="hh_v", status="verified")
    bootstrap.volunteers().update_profile(volunteer, ["pickup"], [], accepting=True)
    request = ServiceRequest(
        id="req_1", status=lc.ACCEPTED, category="pickup", title="接孩子", description="", start_at=NOW,
        duration_minutes=60, requester_id="res_r", household_id="hh_r", payer_account="household:hh_r",
        hold_transfer_id="tr_1", credits_held=60, created_at=NOW - timedelta(days=1), content_hash="x",
        volunteer_id="res_v", volunteer_household_id="hh_v", accepted_at=NOW - timedelta(hours=2))
    assert record_accepted(request) and not record_accepted(request)
    settled = replace(request, status=lc.SETTLED, rating=4, closed_by="res_r")
    assert record_outcome(settled) and not record_outcome(settled)
    store = DynamoVolunteerStore()
    stats = store.get_profile("res_v").stats
    assert (stats.accepted, stats.completed, stats.rating_sum, stats.rating_count) == (1, 1, 4, 1)
    assert [c.stats for c in store.candidates("pickup")] == [stats]


def test_candidates_are_bounded_whatever_the_category_holds_neighbours_first_and_rotating(store):
    from functions.volunteers.dynamo import NEIGHBOURS, ROTATING

    for n in range(40):  # 4 in building 7, 36 elsewhere
        store.save_profile(profile(f"res_{n:02d}", building="7" if n < 4 else f"b{n}"), None)
    seen: set[str] = set()
    for turn in (f"req_{k}" for k in range(12)):
        chosen = store.candidates("pickup", building="7", turn=turn)
        ids = [c.resident_id for c in chosen]
        assert len(ids) == len(set(ids)) <= NEIGHBOURS + ROTATING
        assert sum(c.building == "7" for c in chosen[:NEIGHBOURS]) == NEIGHBOURS
        seen.update(ids)
    # The rotating start moves with the request: over a dozen posts most volunteers get a turn.
    assert len(seen) >= 25


def test_statistics_alone_write_no_category_item(store):
    from functions.volunteers.dynamo import VolunteerCategoryItem

    first = profile(categories=("pet", "pickup", "parcel"))
    store.save_profile(first, None)
    before = {(i.category, i.version) for i in VolunteerCategoryItem.scan()}
    later = replace(first, version=2, stats=replace(first.stats, accepted=3))
    assert store.save_profile(later, first) is SaveResult.SAVED
    assert {(i.category, i.version) for i in VolunteerCategoryItem.scan()} == before
    assert [c.stats.accepted for c in store.candidates("parcel", building="3", turn="x")] == [3]
