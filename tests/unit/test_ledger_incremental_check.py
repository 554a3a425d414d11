"""The incremental ledger check (reconciliation.incremental_check) on the in-memory store: it
agrees with the full audit on a healthy ledger day after day, finds the damage the full audit
finds in what was written since its last cut (a tampered balance, an unbalanced asset, an
account beyond its limits, a broken linked batch, a second resolution), keeps a finding until it
is repaired, reads only what was written since its last cut, survives a run that died before its
checkpoint, and refuses a second concurrent run."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from functions.core import clock
from functions.ledger.accounts import ESCROW, ISSUANCE, POOL, household_account, resident_account
from functions.ledger.model import Totals, Transfer
from functions.ledger.reconciliation import CheckRunning, audit, incremental_check, stamp
from functions.ledger.service import Ledger
from tests.fakes.ledger import InMemoryCheckReports, InMemoryLedgerStore

HH = household_account("hh_a")
HH2 = household_account("hh_b")
ALICE = resident_account("res_alice")
DAY0 = datetime(2026, 12, 1, 9, 0, tzinfo=clock.CHINA_TZ)


class World:
    def __init__(self) -> None:
        self.now = DAY0
        clock.set_clock(lambda: self.now)
        self.store = InMemoryLedgerStore()
        self.ledger = Ledger(self.store, shards=4)
        self.state = InMemoryCheckReports()
        self.runs = 0

    def check(self, cap: int = 0) -> dict:
        self.runs += 1
        return incremental_check(self.store, self.state, self.now, household_cap=cap, run_id=f"run{self.runs}")

    def next_day(self) -> None:
        self.now += timedelta(days=1)

    def tamper(self, key: tuple[str, str], delta: Totals) -> None:
        self.store.balances[key] = self.store.balances[key] + delta


@pytest.fixture
def world():
    w = World()
    yield w
    clock.set_clock(None)


def a_day_of_orders(world: World, day: int, n: int = 3) -> None:
    for i in range(n):
        hold = world.ledger.hold(f"h{day}-{i}", HH, ESCROW, "service", 30, request_id=f"req{day}-{i}")
        world.ledger.settle_hold(f"s{day}-{i}", hold.id, ALICE, 20)
    world.ledger.transfer(f"d{day}", HH, POOL, "service", 5, kind="donation")


def kinds(report: dict) -> list[str]:
    return sorted({v["type"] for v in report["violations"]})


def test_day_after_day_it_agrees_with_the_full_audit(world):
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 1000)
    for day in range(4):
        a_day_of_orders(world, day)
        world.ledger.hold(f"open{day}", HH, ESCROW, "service", 10)  # still held at the check
        world.next_day()
        report, full = world.check(), world.ledger.check()
        assert report["ok"] and full["ok"], report["violations"]
        assert report["assets"] == full["assets"]
        assert report["mode"] == "incremental"
    # and within the margin: what was just written is compared (the tail), folded next time
    world.ledger.transfer("late", HH, HH2, "service", 7)
    report = world.check()
    assert report["ok"] and report["assets"] == world.ledger.check()["assets"]
    world.next_day()
    assert world.check()["ok"]


def test_it_reads_only_what_was_written_since_its_cut(world):
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 100_000)
    for day in range(5):
        a_day_of_orders(world, day, n=10)
        world.next_day()
        world.check()
    a_day_of_orders(world, 99, n=2)
    world.next_day()
    report = world.check()
    # two orders of three transfers and a donation; their accounts: household, resident, pool
    # and escrow shards, no more — the 150 transfers of the days before are not read again
    assert report["ok"] and report["transfers"] == 7
    touched = {key[0].split("#")[0] for key in world.state.states if world.state.states[key].through ==
               report["through"]}
    assert touched <= {HH, ALICE, POOL, ESCROW}


def test_a_tampered_balance_of_an_account_used_since_the_cut(world):
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 300)
    world.next_day()
    assert world.check()["ok"]
    world.ledger.transfer("t", HH, HH2, "service", 40)
    world.tamper((HH, "service"), Totals(0, 7, 0, 0, 7))
    world.next_day()
    report = world.check()
    assert kinds(report) == ["balance_mismatch", "unbalanced_posted"]
    mismatch = next(v for v in report["violations"] if v["type"] == "balance_mismatch")
    assert (mismatch["account"], mismatch["asset"]) == (HH, "service")
    assert report["assets"] == world.ledger.check()["assets"]  # the sums of what is stored
    # the account is not used again: the finding stays, run after run, until it is repaired
    world.next_day()
    assert kinds(world.check()) == ["balance_mismatch", "unbalanced_posted"]
    world.tamper((HH, "service"), Totals(0, -7, 0, 0, -7))
    world.next_day()
    assert world.check()["ok"]


def test_a_stored_available_that_disagrees_with_the_totals(world):
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 300)
    world.tamper((HH, "service"), Totals(0, 0, 0, 0, 1))
    world.next_day()
    assert kinds(world.check()) == ["balance_mismatch"]


def test_unbalanced_pending_totals(world):
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 300)
    world.ledger.hold("h", HH, ESCROW, "service", 50)
    key = next(k for k in world.store.balances if k[0].startswith("escrow#"))
    world.tamper(key, Totals(0, 0, 0, 3, 0))
    world.next_day()
    assert kinds(world.check()) == ["balance_mismatch", "unbalanced_pending"]


def test_an_account_beyond_its_limit(world):
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 300)
    world.next_day()
    assert world.check()["ok"]
    # a transfer written past the ledger (e.g. by a buggy migration) overdraws a resident
    bad = world.store.transfers["fund"].with_changes(id="bad", debit_account=ALICE, credit_account=HH2,
                                                    debit_shard=None, amount=1000,
                                                    sort_key=stamp(world.now) + "#bad")
    world.store.transfers["bad"] = bad
    for key, delta in (((ALICE, "service"), Totals(1000, 0, 0, 0, -1000)), ((HH2, "service"), Totals(0, 1000, 0, 0, 1000))):
        world.store.balances[key] = world.store.balances.get(key, Totals()) + delta
    world.next_day()
    report = world.check()
    assert kinds(report) == ["over_limit"]
    assert report["violations"][0]["account"] == ALICE


def test_a_missing_linked_leg(world):
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 300)
    world.ledger.execute([Transfer("a", HH, HH2, "service", 5), Transfer("b", HH, ALICE, "service", 5)])
    gone = world.store.transfers.pop("b")
    for key, delta in (((HH, "service"), Totals(-5, 0, 0, 0, 5)), ((ALICE, "service"), Totals(0, -5, 0, 0, -5))):
        world.store.balances[key] = world.store.balances[key] + delta
    world.next_day()
    report = world.check()
    assert kinds(report) == ["missing_linked_leg"]
    assert report["violations"][0]["linked_id"] == gone.id
    world.next_day()
    assert kinds(world.check()) == ["missing_linked_leg"]   # carried until a full audit
    world.store.transfers["b"] = gone
    for key, delta in (((HH, "service"), Totals(5, 0, 0, 0, -5)), ((ALICE, "service"), Totals(0, 5, 0, 0, 5))):
        world.store.balances[key] = world.store.balances[key] + delta
    assert audit(world.store, world.state, world.now, run_id="audit")["ok"]
    world.next_day()
    assert world.check()["ok"]


def test_a_hold_resolved_twice_and_a_resolution_of_nothing(world):
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 300)
    world.ledger.hold("h1", HH, ESCROW, "service", 100)
    world.ledger.settle_hold("s1", "h1", ALICE, 60)
    second = world.store.transfers["s1.post"].with_changes(id="second-post", linked=())
    world.store.transfers["second-post"] = second
    world.next_day()
    assert {"resolved_twice", "orphan_resolution"} <= set(kinds(world.check()))


def test_a_resolution_that_differs_from_its_hold(world):
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 300)
    world.ledger.hold("h2", HH, ESCROW, "service", 50)
    world.ledger.void_pending("v2", "h2")
    world.store.transfers["v2"] = world.store.transfers["v2"].with_changes(pending_amount=49)
    world.next_day()
    assert "resolution_differs_from_hold" in kinds(world.check())


def test_a_reversal_without_its_marker(world):
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 300)
    world.ledger.transfer("t", HH, HH2, "service", 40)
    world.ledger.reverse("r", "t", "mistake", "admin-1")
    world.store.transfers["t"] = world.store.transfers["t"].with_changes(reversed_by=None)
    world.next_day()
    assert kinds(world.check()) == ["orphan_reversal"]


def test_a_run_that_died_before_its_checkpoint_is_redone_from_the_states_it_left(world):
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 300)
    world.next_day()
    assert world.check()["ok"]
    world.ledger.transfer("t", HH, HH2, "service", 40)
    world.next_day()
    real = world.state.commit

    def die(checkpoint, run_id):
        raise RuntimeError("the function timed out")

    world.state.commit = die
    with pytest.raises(RuntimeError):
        world.check()   # it wrote HH's and HH2's new states, not the checkpoint
    world.state.commit = real
    world.state.lease = None  # the lease expires
    world.ledger.transfer("t2", HH, HH2, "service", 10)
    world.next_day()
    report = world.check()
    assert report["ok"], report["violations"]
    world.next_day()
    assert world.check()["ok"]


def test_one_run_at_a_time(world):
    world.state.begin("other", stamp(world.now), stamp(world.now + timedelta(minutes=15)))
    with pytest.raises(CheckRunning):
        world.check()
    world.now += timedelta(minutes=16)   # an abandoned lease expires
    assert world.check()["ok"]


def test_the_household_cap_listing(world):
    capped = Ledger(world.store, shards=4, household_cap=100)
    world.ledger.transfer("fund", ISSUANCE, HH, "service", 300)
    world.next_day()
    report = incremental_check(world.store, world.state, world.now, household_cap=100, run_id="cap")
    assert report["ok"] and [row["account"] for row in report["above_cap"]] == [HH]
    assert capped.household_cap == 100
