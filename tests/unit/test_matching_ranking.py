"""The ranking of volunteers for a posted request (pure function)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from functions.core.clock import CHINA_TZ
from functions.volunteers.matching import (
    AVAILABLE_AT_START, AVAILABLE_THROUGHOUT, LOAD_PENALTY, MatchRequest, eligible, rank, score,
)
from functions.volunteers.model import VolunteerProfile, VolunteerStats, Window

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=CHINA_TZ)           # a Tuesday
START = datetime(2026, 12, 2, 8, 30, tzinfo=CHINA_TZ)         # Wednesday (isoweekday 3) 08:30


def request(**overrides) -> MatchRequest:
    values = dict(id="req_1", category="pickup", household_id="hh_requester", building="3",
                  start_at=START, duration_minutes=60, text="放学接孩子")
    values.update(overrides)
    return MatchRequest(**values)


def volunteer(resident_id: str, **overrides) -> VolunteerProfile:
    values = dict(resident_id=resident_id, household_id=f"hh_{resident_id}", building="7",
                  openid=f"openid-{resident_id}", verified=True, categories=("pickup",), accepting=True)
    values.update(overrides)
    return VolunteerProfile(**values)


def ids(scored) -> list[str]:
    return [s.volunteer.resident_id for s in scored]


# --- who is a candidate -----------------------------------------------------------------------

def test_never_the_requesters_household_even_when_it_would_rank_first():
    neighbour = volunteer("a")
    own_family = volunteer("b", household_id="hh_requester", building="3",
                           availability=(Window(3, 8 * 60, 10 * 60),),
                           stats=VolunteerStats(accepted=50, completed=50, rating_sum=250, rating_count=50))
    assert ids(rank(request(), [own_family, neighbour], NOW)) == ["a"]
    assert rank(request(), [own_family], NOW) == []


def test_only_accepting_verified_declared_volunteers_of_the_category():
    candidates = [
        volunteer("ok"),
        volunteer("paused", accepting=False),
        volunteer("unverified", verified=False),
        volunteer("stats_only", openid=None),         # served once, never saved a profile
        volunteer("other_category", categories=("pet",)),
        volunteer("no_household", household_id=None),
    ]
    assert ids(rank(request(), candidates, NOW)) == ["ok"]


def test_volunteer_category_needs_an_approved_skill_not_a_declaration():
    declared_only = volunteer("declared", categories=("volunteer",))
    skilled = volunteer("skilled", categories=(), skills=("摄影",))
    got = rank(request(category="volunteer", text="社区活动拍照"), [declared_only, skilled], NOW)
    assert ids(got) == ["skilled"]


# --- order --------------------------------------------------------------------------------------

def test_same_building_comes_first_whatever_the_rest():
    same_building_weak = volunteer("near", building="3",
                                   stats=VolunteerStats(accepted=10, completed=2, failed=8, rating_sum=10,
                                                        rating_count=5,
                                                        recent=tuple(NOW - timedelta(hours=h) for h in range(1, 9))))
    far_perfect = volunteer("far", building="9", availability=(Window(3, 8 * 60, 12 * 60),),
                            stats=VolunteerStats(accepted=40, completed=40, rating_sum=200, rating_count=40))
    assert ids(rank(request(), [far_perfect, same_building_weak], NOW)) == ["near", "far"]


def test_availability_covering_the_start_ranks_higher_and_covering_the_whole_service_higher_still():
    no_window = volunteer("none")
    covers_start = volunteer("start", availability=(Window(3, 8 * 60, 9 * 60),))      # ends 09:00 < 09:30
    covers_all = volunteer("all", availability=(Window(3, 8 * 60, 10 * 60),))
    wrong_day = volunteer("tuesday", availability=(Window(2, 0, 24 * 60),))
    got = rank(request(), [no_window, covers_start, covers_all, wrong_day], NOW)
    assert ids(got)[:2] == ["all", "start"]
    by_id = {s.volunteer.resident_id: s.score for s in got}
    assert by_id["all"] - by_id["start"] == AVAILABLE_THROUGHOUT
    assert by_id["start"] - by_id["none"] == AVAILABLE_AT_START
    assert by_id["tuesday"] == by_id["none"]


def test_availability_is_judged_in_shanghai_time():
    # 2026-12-06T17:30Z is Monday 01:30 in Shanghai (Sunday in UTC).
    utc_start = datetime(2026, 12, 6, 17, 30, tzinfo=CHINA_TZ.utc)
    monday_night = volunteer("monday", availability=(Window(1, 60, 120),))
    sunday_evening = volunteer("sunday", availability=(Window(7, 17 * 60, 18 * 60),))
    got = {s.volunteer.resident_id: s.score for s in rank(request(start_at=utc_start, duration_minutes=30),
                                                          [monday_night, sunday_evening], NOW)}
    assert got["monday"] - got["sunday"] == AVAILABLE_AT_START + AVAILABLE_THROUGHOUT


def test_window_edges_start_inclusive_end_exclusive():
    window = Window(3, 8 * 60 + 30, 9 * 60)
    assert window.covers(START)
    assert not Window(3, 7 * 60, 8 * 60 + 30).covers(START)
    assert window.covers_span(START, 30) and not window.covers_span(START, 31)


def test_reliability_completion_rate_and_ratings():
    reliable = volunteer("reliable", stats=VolunteerStats(accepted=10, completed=10, rating_sum=50, rating_count=10))
    newcomer = volunteer("new")
    flaky = volunteer("flaky", stats=VolunteerStats(accepted=10, completed=3, failed=7))
    poorly_rated = volunteer("rated_low", stats=VolunteerStats(accepted=10, completed=10, rating_sum=15,
                                                               rating_count=10))
    got = ids(rank(request(), [flaky, newcomer, reliable, poorly_rated], NOW))
    assert got[0] == "reliable"
    assert got.index("new") < got.index("flaky")
    assert got.index("reliable") < got.index("rated_low")


def test_fairness_fewer_services_in_the_last_seven_days_ranks_higher():
    busy = volunteer("busy", stats=VolunteerStats(accepted=3, completed=3,
                                                  recent=(NOW - timedelta(days=1), NOW - timedelta(days=2),
                                                          NOW - timedelta(days=6))))
    rested = volunteer("rested", stats=VolunteerStats(accepted=3, completed=3,
                                                      recent=(NOW - timedelta(days=8), NOW - timedelta(days=9),
                                                              NOW - timedelta(days=30))))
    got = rank(request(), [busy, rested], NOW)
    assert ids(got) == ["rested", "busy"]
    assert got[0].score - got[1].score == 3 * LOAD_PENALTY


def test_a_skill_named_in_the_request_counts_for_volunteer_requests():
    photographer = volunteer("photo", categories=(), skills=("摄影",))
    gardener = volunteer("garden", categories=(), skills=("园艺",))
    got = rank(request(category="volunteer", text="重阳节活动需要 摄影 志愿者"), [gardener, photographer], NOW)
    assert ids(got) == ["photo", "garden"]


def test_limit_returns_the_best_few_and_a_volunteer_appears_once():
    candidates = [volunteer(f"v{i}", stats=VolunteerStats(accepted=i, completed=i)) for i in range(6)]
    got = rank(request(), candidates + candidates[:2], NOW, limit=3)
    assert len(got) == 3 and len(set(ids(got))) == 3
    assert set(ids(got)) == {"v5", "v4", "v3"}


def test_ties_are_deterministic_but_not_always_the_same_person():
    twins = [volunteer(f"t{i}") for i in range(5)]
    first = ids(rank(request(), twins, NOW))
    assert ids(rank(request(), list(reversed(twins)), NOW)) == first
    winners = {ids(rank(request(id=f"req_{n}"), twins, NOW))[0] for n in range(40)}
    assert len(winners) > 1


def test_score_is_a_pure_function_of_inputs():
    v = volunteer("a", availability=(Window(3, 8 * 60, 10 * 60),))
    assert score(v, request(), NOW) == score(replace(v), request(), NOW)
    assert eligible(v, request())


# --- properties -----------------------------------------------------------------------------------

_profiles = st.builds(
    lambda n, household, building, accepting, cats, completed, failed, ratings, load, window: volunteer(
        f"v{n}", household_id=household, building=building, accepting=accepting, categories=cats,
        availability=(window,) if window else (),
        stats=VolunteerStats(accepted=completed + failed, completed=completed, failed=failed,
                             rating_sum=sum(ratings), rating_count=len(ratings),
                             recent=tuple(NOW - timedelta(hours=h) for h in load))),
    st.integers(0, 30), st.sampled_from(["hh_requester", "hh_a", "hh_b", "hh_c"]), st.sampled_from(["3", "5", None]),
    st.booleans(), st.sampled_from([("pickup",), ("pet",), ("pickup", "pet"), ()]),
    st.integers(0, 20), st.integers(0, 20), st.lists(st.integers(1, 5), max_size=10),
    st.lists(st.integers(1, 400), max_size=8),
    st.one_of(st.none(), st.builds(Window, st.integers(1, 7), st.just(8 * 60), st.just(10 * 60))))


@settings(max_examples=200, deadline=None)
@given(st.lists(_profiles, max_size=25))
def test_ranking_properties(candidates):
    got = rank(request(), candidates, NOW)
    assert all(s.volunteer.household_id != "hh_requester" for s in got)
    assert all(s.volunteer.accepting and "pickup" in s.volunteer.categories for s in got)
    assert [s.sort_key for s in got] == sorted(s.sort_key for s in got)
    # Same-building volunteers all come before the others.
    tiers = [s.same_building for s in got]
    assert tiers == sorted(tiers, reverse=True)
    # The order does not depend on the order candidates came in.
    dedup = {c.resident_id: c for c in candidates}
    assert ids(rank(request(), list(dedup.values())[::-1], NOW)) == ids(rank(request(), list(dedup.values()), NOW))
