"""The activity rules that need no storage: the rotating code, attended time and its award, the
award batches; and the pure rules of reputation and risk flags."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from functions.activities.codes import WINDOW, OnSiteCodes
from functions.activities.model import (AWARD_BATCH, CHECKED_IN, CHECKED_OUT, DEFAULT_ROUNDING, FIXED, PER_HOUR,
                                        Activity, Award, Participant, attended_minutes, award_for, award_transfer_id,
                                        batches, rounded)
from functions.core.clock import CHINA_TZ
from functions.identity.model import Reputation
from functions.risk.model import RAPID_CYCLE, REPEATED_PAIR, RiskLimits, Settlement, assess, pair_of

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=CHINA_TZ)


def activity(mode=PER_HOUR, minutes=60) -> Activity:
    return Activity(id="act_1", title="t", description="", place="p", start_at=T0, end_at=T0 + timedelta(hours=2),
                    capacity=10, asset="volunteer", award=Award(mode, minutes), requires_insurance=False,
                    status="published", created_at=T0, created_by="admin", content_hash="x")


def attendee(arrive_minutes: int | None, leave_minutes: int | None) -> Participant:
    at = lambda m: None if m is None else T0 + timedelta(minutes=m)  # noqa: E731
    status = CHECKED_OUT if leave_minutes is not None else CHECKED_IN
    return Participant("act_1", "res_1", "hh_1", "o", status, 1, T0 - timedelta(days=1), at(arrive_minutes),
                       at(leave_minutes))


# --- on-site codes ---------------------------------------------------------------------------------

def test_codes_are_six_digits_rotate_every_window_and_accept_the_previous_one():
    codes = OnSiteCodes(lambda: "stack-secret")
    shown = codes.current("act_1", T0 + timedelta(minutes=3))
    assert len(shown.code) == 6 and shown.code.isdigit()
    assert shown.expires_at == T0 + timedelta(minutes=10) and shown.accepted_until == T0 + timedelta(minutes=20)
    assert codes.accepts("act_1", shown.code, T0 + timedelta(minutes=9))
    assert codes.accepts("act_1", shown.code, T0 + timedelta(minutes=19))        # the previous window
    assert not codes.accepts("act_1", shown.code, T0 + timedelta(minutes=20))    # two windows on: stale
    assert codes.current("act_1", T0 + WINDOW).code != shown.code or \
        codes.current("act_1", T0 + 2 * WINDOW).code != shown.code
    # another activity, another stack: other codes (nothing a participant could compute)
    assert OnSiteCodes(lambda: "other-secret").current("act_1", T0).code != codes.current("act_1", T0).code or \
        OnSiteCodes(lambda: "other-secret").current("act_1", T0 + WINDOW).code != codes.current("act_1", T0 + WINDOW).code
    seen = {codes.current(f"act_{n}", T0).code for n in range(50)}
    assert len(seen) > 45


# --- awards ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arrive, leave, attended, award", [
    (-20, 150, 120, 120),   # early and late: only the activity's own time counts
    (10, 110, 100, 90),     # 1 h 40 → 1 h + 30
    (0, 15, 15, 0),         # ≤ 15 min of an hour: nothing
    (0, 50, 50, 60),
    (30, 20, 0, 0),         # nonsense times: nothing
    (None, None, 0, 0),
])
def test_per_hour_awards_round_the_attended_time(arrive, leave, attended, award):
    person = attendee(arrive, leave) if arrive is not None else attendee(None, None)
    assert attended_minutes(activity(), person) == attended
    assert award_for(activity(), person) == award


def test_rates_round_down_and_fixed_awards_ignore_the_time():
    assert award_for(activity(minutes=45), attendee(0, 100)) == 67   # 90 × 45 / 60 = 67.5 → 67
    assert award_for(activity(FIXED, 30), attendee(0, 5)) == 30
    assert award_for(activity(FIXED, 30), attendee(0, None)) == 0   # never checked out
    assert rounded(125, DEFAULT_ROUNDING) == 120 and rounded(125, ()) == 125


def test_award_ids_are_per_activity_and_participant_and_batches_fit_a_transaction():
    assert award_transfer_id("act_1", "res_1") == award_transfer_id("act_1", "res_1")
    assert award_transfer_id("act_1", "res_1") != award_transfer_id("act_2", "res_1")
    assert [len(b) for b in batches(list(range(45)))] == [20, 20, 5]
    # three items per participant, plus at most one issuance shard each
    assert AWARD_BATCH * 3 + AWARD_BATCH < 100


# --- reputation ----------------------------------------------------------------------------------------

def test_reputation_is_a_bounded_score_of_counters():
    assert Reputation().score == 70
    assert Reputation(completed=1, rating_sum=5, rating_count=1).score == 74
    assert Reputation(completed=1, no_shows=1, rating_sum=5, rating_count=1).score == 61
    assert Reputation(completed=40, rating_sum=200, rating_count=40).score == 100
    assert Reputation(no_shows=30).score == 31
    assert Reputation(no_shows=30, rating_sum=30, rating_count=30).score == 3
    assert all(0 <= Reputation(c, n, r * 5, r).score <= 100 for c in (0, 5) for n in (0, 50) for r in (0, 9))


# --- risk flags ------------------------------------------------------------------------------------------

def settlement(n: int, hours: float, served: str = "hh_a", requester: str = "hh_b") -> Settlement:
    return Settlement(pair_of(served, requester), f"req_{n}", T0 + timedelta(hours=hours), served, requester,
                      "res_v", 60, f"tr_{n}")


def test_repeated_pairs_and_rapid_cycles():
    limits = RiskLimits(repeated_pair_count=3, flag_window_days=7, rapid_cycle_hours=24)
    same_way = [settlement(n, n * 30) for n in range(3)]
    found = assess(same_way[:2], same_way[2], limits)
    assert [(f.kind, f.count, f.request_ids) for f in found] == [(REPEATED_PAIR, 3, ("req_0", "req_1", "req_2"))]
    old = [settlement(0, -24 * 8)]
    assert assess(old + same_way[1:2], same_way[2], limits) == []   # the oldest is out of the window
    back = settlement(9, 2, served="hh_b", requester="hh_a")
    found = assess([settlement(1, 0)], back, limits)
    assert [(f.kind, f.count) for f in found] == [(RAPID_CYCLE, 2)]
    assert assess([settlement(1, -30)], back, limits) == []         # a day and more apart: no cycle
    reviewed = {RAPID_CYCLE: settlement(1, 0).sort_key}
    assert assess([settlement(1, 0)], back, limits, reviewed) == []  # reviewed: not counted again
    off = RiskLimits(repeated_pair_count=0, rapid_cycle_hours=0)
    assert assess(same_way[:2] + [settlement(1, 0)], back, off) == []
