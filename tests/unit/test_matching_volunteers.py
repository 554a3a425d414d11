"""Volunteer profiles, skills and statistics (domain rules over the in-memory store)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from functions.core.clock import CHINA_TZ
from functions.core.errors import AlreadyExists, Conflict, LimitExceeded, NotFound, ValidationError
from functions.core.caller import Caller
from functions.requests import model as lc
from functions.requests.model import ServiceRequest
from tests.fakes.volunteers import InMemoryVolunteerStore
from functions.requests.model import accepted_event, cancelled_event, settled_event
from functions.volunteers.model import (
    APPROVED, MAX_SKILLS_PER_VOLUNTEER, PENDING, REJECTED, SaveResult, VolunteerStats, Window, parse_availability,
)
from functions.volunteers.service import VolunteerService

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=CHINA_TZ)
CATEGORIES = ["pickup", "childcare", "tutoring", "parcel", "companion", "pet", "volunteer"]


class Places:
    def building_of(self, household_id: str) -> str | None:
        return {"hh_a": "3", "hh_b": "7"}.get(household_id)


def caller(resident_id: str = "res_a", household_id: str = "hh_a", status: str = "verified") -> Caller:
    return Caller(openid=f"openid-{resident_id}", resident_id=resident_id, household_id=household_id, status=status,
                  roles=frozenset({"resident"}))


@pytest.fixture
def store() -> InMemoryVolunteerStore:
    return InMemoryVolunteerStore()


@pytest.fixture
def service(store) -> VolunteerService:
    return VolunteerService(store, Places(), category_ids=lambda: CATEGORIES, requests=None, now=lambda: NOW)


def fields(error: pytest.ExceptionInfo) -> dict[str, str]:
    return error.value.details["fields"]


# --- availability ---------------------------------------------------------------------------

def test_availability_parses_sorts_and_collapses_duplicates():
    windows = parse_availability([
        {"weekday": 3, "start": "18:00", "end": "24:00"},
        {"weekday": 1, "start": "08:00", "end": "09:30"},
        {"weekday": 1, "start": "08:00", "end": "09:30"},
    ])
    assert windows == (Window(1, 480, 570), Window(3, 1080, 1440))
    assert [w.to_dict() for w in windows][1] == {"weekday": 3, "start": "18:00", "end": "24:00"}


@pytest.mark.parametrize("entry, field", [
    ({"weekday": 0, "start": "08:00", "end": "09:00"}, "availability[0].weekday"),
    ({"weekday": 8, "start": "08:00", "end": "09:00"}, "availability[0].weekday"),
    ({"weekday": True, "start": "08:00", "end": "09:00"}, "availability[0].weekday"),
    ({"weekday": "1", "start": "08:00", "end": "09:00"}, "availability[0].weekday"),
    ({"weekday": 1, "start": "8:00", "end": "09:00"}, "availability[0].start"),
    ({"weekday": 1, "start": "08:00", "end": "24:01"}, "availability[0].end"),
    ({"weekday": 1, "start": "08:60", "end": "09:00"}, "availability[0].start"),
    ({"weekday": 1, "start": "24:00", "end": "24:00"}, "availability[0].start"),
    ({"weekday": 1, "start": "09:00", "end": "09:00"}, "availability[0].end"),
    ({"weekday": 1, "start": "10:00", "end": "09:00"}, "availability[0].end"),
    ({"weekday": 1, "start": 800, "end": "09:00"}, "availability[0].start"),
    ({"weekday": 1}, "availability[0].start"),
    ("mornings", "availability[0]"),
])
def test_bad_windows_are_named(entry, field):
    with pytest.raises(ValidationError) as error:
        parse_availability([entry])
    assert field in fields(error)


def test_availability_must_be_a_short_list():
    with pytest.raises(ValidationError):
        parse_availability({"weekday": 1})
    too_many = [{"weekday": d, "start": f"{h:02d}:00", "end": f"{h:02d}:30"} for d in range(1, 8) for h in range(4)]
    with pytest.raises(ValidationError) as error:
        parse_availability(too_many)
    assert "最多 21 段" in fields(error)["availability"]


# --- profiles -------------------------------------------------------------------------------

def test_profile_saved_with_building_and_indexed_per_category(service, store):
    profile = service.update_profile(caller(), ["pickup", "pet", "pickup"], [
        {"weekday": 2, "start": "18:00", "end": "20:00"}], accepting=True)
    assert profile.categories == ("pet", "pickup") and profile.building == "3" and profile.version == 1
    assert [p.resident_id for p in store.candidates("pickup")] == ["res_a"]
    assert [p.resident_id for p in store.candidates("pet")] == ["res_a"]
    assert store.candidates("parcel") == []


def test_changing_categories_or_pausing_updates_the_index(service, store):
    service.update_profile(caller(), ["pickup", "pet"], [], accepting=True)
    service.update_profile(caller(), ["parcel"], [], accepting=True)
    assert store.candidates("pickup") == [] and store.candidates("pet") == []
    assert [p.version for p in store.candidates("parcel")] == [2]
    service.update_profile(caller(), ["parcel"], [], accepting=False)
    assert store.candidates("parcel") == []
    assert service.profile(caller()).accepting is False


def test_unknown_categories_are_refused_by_position(service):
    with pytest.raises(ValidationError) as error:
        service.update_profile(caller(), ["pickup", "cooking", 7], [], accepting=True)
    assert set(fields(error)) == {"categories[1]", "categories[2]"}
    with pytest.raises(ValidationError):
        service.update_profile(caller(), "pickup", [], accepting=True)


def test_declaring_volunteer_alone_does_not_make_a_candidate(service, store):
    profile = service.update_profile(caller(), ["volunteer"], [], accepting=True)
    assert profile.matchable_categories() == frozenset()
    assert store.candidates("volunteer") == []


def test_no_profile_yet_is_not_found(service):
    with pytest.raises(NotFound):
        service.profile(caller())


def test_a_concurrent_write_is_retried_on_top_of_the_latest_version(store):
    service = VolunteerService(store, Places(), category_ids=lambda: CATEGORIES, requests=None, now=lambda: NOW)
    service.update_profile(caller(), ["pickup"], [], accepting=True)
    real_get = store.get_profile
    raced = {"done": False}

    def stale_then_real(resident_id, consistent=True):
        seen = real_get(resident_id)
        if not raced["done"]:
            raced["done"] = True
            # Someone else's statistics update lands between our read and our write.
            current = real_get(resident_id)
            store.save_profile(replace(current, stats=replace(current.stats, completed=5),
                                       version=current.version + 1), current)
        return seen

    store.get_profile = stale_then_real
    service.update_profile(caller(), ["pet"], [], accepting=True)
    stored = real_get("res_a")
    assert stored.categories == ("pet",) and stored.stats.completed == 5 and stored.version == 3


def test_gives_up_after_repeated_conflicts(store):
    class AlwaysConflicting(InMemoryVolunteerStore):
        def save_profile(self, profile, previous, marker=None):
            return SaveResult.CONFLICT

    service = VolunteerService(AlwaysConflicting(), Places(), category_ids=lambda: CATEGORIES, requests=None, now=lambda: NOW)
    with pytest.raises(Conflict):
        service.update_profile(caller(), ["pet"], [], accepting=True)


# --- skills ---------------------------------------------------------------------------------

def test_a_skill_counts_in_matching_only_once_approved(service, store):
    service.update_profile(caller(), ["pickup"], [], accepting=True)
    skill, created = service.propose_skill(caller(), "摄影", "活动拍照")
    assert created and skill.status == PENDING
    assert store.candidates("volunteer") == []
    approved = service.review_skill("admin-test", skill.id, APPROVED)
    assert approved.status == APPROVED and approved.reviewed_by == "admin-test"
    assert [p.skills for p in store.candidates("volunteer")] == [("摄影",)]
    withdrawn = service.review_skill("admin-test", skill.id, REJECTED, "重复")
    assert withdrawn.status == REJECTED and withdrawn.reason == "重复"
    assert store.candidates("volunteer") == []
    assert [p.resident_id for p in store.candidates("pickup")] == ["res_a"]


def test_skills_approved_before_the_profile_are_picked_up(service, store):
    skill, _ = service.propose_skill(caller(), "园艺", "")
    service.review_skill("admin-test", skill.id, APPROVED)
    service.update_profile(caller(), [], [], accepting=True)
    assert [p.resident_id for p in store.candidates("volunteer")] == ["res_a"]


def test_proposing_the_same_skill_again_is_idempotent_but_not_with_other_content(service):
    first, created = service.propose_skill(caller(), "摄影", "活动拍照")
    again, created_again = service.propose_skill(caller(), " 摄影 ", "活动拍照")
    assert created and not created_again and again.id == first.id
    with pytest.raises(AlreadyExists):
        service.propose_skill(caller(), "摄影", "婚礼跟拍")
    other_person, created_other = service.propose_skill(caller("res_b", "hh_b"), "摄影", "活动拍照")
    assert created_other and other_person.id != first.id


def test_skill_limit(service):
    for n in range(MAX_SKILLS_PER_VOLUNTEER):
        service.propose_skill(caller(), f"技能{n}", "")
    with pytest.raises(LimitExceeded):
        service.propose_skill(caller(), "再一个", "")


def test_reviewing_twice_changes_nothing_and_unknown_skills_are_not_found(service):
    skill, _ = service.propose_skill(caller(), "摄影", "")
    first = service.review_skill("admin-1", skill.id, APPROVED)
    second = service.review_skill("admin-2", skill.id, APPROVED)
    assert second.reviewed_by == first.reviewed_by == "admin-1"
    with pytest.raises(NotFound):
        service.review_skill("admin-1", "skl_missing", APPROVED)


# --- statistics -----------------------------------------------------------------------------

def served(status: str, closed_by: str = "system", rating: int | None = None, **overrides) -> ServiceRequest:
    values = dict(id="req_1", status=status, category="pickup", title="接孩子", description="", start_at=NOW,
                  duration_minutes=60, requester_id="res_req", household_id="hh_req", payer_account="household:hh_req",
                  hold_transfer_id="tr_1", credits_held=60, created_at=NOW - timedelta(days=1), content_hash="x",
                  volunteer_id="res_a", volunteer_household_id="hh_a", accepted_at=NOW - timedelta(hours=20),
                  closed_by=closed_by, rating=rating)
    values.update(overrides)
    return ServiceRequest(**values)


def lifecycle_event(request: ServiceRequest):
    """The event the request lifecycle writes when ``request`` reached its status."""
    if request.status == lc.ACCEPTED:
        return accepted_event(request)
    if request.status == lc.SETTLED:
        return settled_event(request, NOW)
    before = replace(request, status=lc.ACCEPTED if request.volunteer_id else lc.OPEN)
    return cancelled_event(before, request, NOW)


def test_outcomes_are_counted_once_per_request(service, store):
    service.update_profile(caller(), ["pickup"], [], accepting=True)
    assert service.record(lifecycle_event(served(lc.ACCEPTED)))
    assert not service.record(lifecycle_event(served(lc.ACCEPTED)))
    assert service.record(lifecycle_event(served(lc.SETTLED, rating=5)))
    assert not service.record(lifecycle_event(served(lc.SETTLED, rating=5)))
    stats = store.get_profile("res_a").stats
    assert (stats.accepted, stats.completed, stats.failed, stats.rating_sum, stats.rating_count) == (1, 1, 0, 5, 1)
    assert stats.load(NOW) == 1
    # The index copy carries the same statistics: the matcher reads nothing else.
    assert store.candidates("pickup")[0].stats == stats


def test_outcome_counts_the_acceptance_when_it_was_never_reported(service, store):
    service.record(lifecycle_event(served(lc.SETTLED, id="req_2")))
    stats = store.get_profile("res_a").stats
    assert (stats.accepted, stats.completed) == (1, 1)


def test_requester_cancellation_is_not_the_volunteers_failure_but_an_admin_refund_is(service, store):
    assert not service.record(lifecycle_event(served(lc.CANCELLED, id="req_3", closed_by="res_req")))
    assert service.record(lifecycle_event(served(lc.CANCELLED, id="req_4", closed_by="admin-test", rating=1)))
    stats = store.get_profile("res_a").stats
    assert (stats.accepted, stats.completed, stats.failed, stats.rating_count) == (2, 0, 1, 0)


def test_unfinished_or_unaccepted_requests_are_ignored(service, store):
    assert not service.record(lifecycle_event(served(lc.EXPIRED, volunteer_id=None, accepted_at=None)))
    assert store.get_profile("res_a") is None


def test_statistics_of_someone_without_a_profile_do_not_make_them_a_candidate(service, store):
    service.record(lifecycle_event(served(lc.SETTLED)))
    assert store.get_profile("res_a").matchable_categories() == frozenset()
    assert store.candidates("pickup") == []
    with pytest.raises(NotFound):
        service.profile(caller())
    profile = service.update_profile(caller(), ["pickup"], [], accepting=True)
    assert profile.stats.completed == 1


def test_recent_load_forgets_services_older_than_a_week():
    stats = VolunteerStats()
    for days in (10, 6, 1):
        stats = stats.with_accepted(NOW - timedelta(days=days), NOW)
    assert stats.accepted == 3 and stats.load(NOW) == 2 and len(stats.recent) == 2
    assert stats.load(NOW + timedelta(days=5)) == 1   # the 6-day-old one has aged out


def test_a_statistic_is_refused_a_second_time_by_the_profile_itself_and_old_ids_age_out(service, store):
    from functions.volunteers.model import APPLIED_RETENTION

    assert service.record_accepted("req_1", "res_v", NOW)
    assert not service.record_accepted("req_1", "res_v", NOW)          # the same event again
    profile = store.get_profile("res_v")
    assert profile.stats.accepted == 1 and profile.has_applied("accepted#req_1#res_v")
    assert store.markers == set()                                      # no marker item written
    later = VolunteerService(store, Places(), category_ids=lambda: CATEGORIES, requests=None,
                             now=lambda: NOW + APPLIED_RETENTION + timedelta(days=1))
    assert later.record_accepted("req_2", "res_v", NOW + APPLIED_RETENTION + timedelta(days=1))
    from functions.volunteers.model import applied_digest

    # req_1's id aged out (no message can come back after that long); only req_2's is kept.
    assert [d for d, _ in store.get_profile("res_v").applied] == [applied_digest("accepted#req_2#res_v")]


def test_an_event_counted_before_the_profile_kept_its_own_is_refused_by_its_old_marker(service, store):
    from functions.volunteers.model import VolunteerProfile

    # Written before the upgrade: statistics with a marker item, no applied list in the profile.
    old = VolunteerProfile(resident_id="res_v", stats=VolunteerStats(accepted=1), version=1, created_at=NOW)
    store.save_profile(old, None, marker="accepted#req_old#res_v")
    assert not service.record_accepted("req_old", "res_v", NOW - timedelta(days=1))
    assert service.record_accepted("req_new", "res_v", NOW)
    # Once the profile keeps its own, an old event (before ``applied_since``) still asks the marker.
    assert not service.record_accepted("req_old", "res_v", NOW - timedelta(days=1))
    assert store.get_profile("res_v").stats.accepted == 2
