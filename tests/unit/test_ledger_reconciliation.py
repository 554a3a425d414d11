"""Reconciliation finds every kind of damage: each test breaks a healthy ledger one way and
expects exactly the matching violation."""
from __future__ import annotations

import pytest

from functions.ledger.accounts import ESCROW, ISSUANCE, household_account, resident_account
from functions.ledger.service import Ledger
from functions.ledger.model import BalanceRow, Totals, Transfer
from functions.ledger.reconciliation import fold_transfers, reconcile
from tests.fakes.ledger import InMemoryLedgerStore

HH = household_account("hh_a")
HH2 = household_account("hh_b")
ALICE = resident_account("res_alice")


@pytest.fixture
def store():
    """A healthy ledger: funding, a settled hold, a voided hold, a reversal, a linked batch and
    an open hold."""
    store = InMemoryLedgerStore()
    ledger = Ledger(store, shards=4)
    ledger.transfer("fund", ISSUANCE, HH, "service", 300)
    ledger.hold("h1", HH, ESCROW, "service", 100)
    ledger.settle_hold("s1", "h1", ALICE, 60)
    ledger.hold("h2", HH, ESCROW, "service", 50)
    ledger.void_pending("v2", "h2")
    ledger.transfer("t", HH, HH2, "service", 40)
    ledger.reverse("r", "t", "mistake", "admin-1")
    ledger.execute([Transfer("a", HH, HH2, "service", 5), Transfer("b", HH, ALICE, "service", 5)])
    ledger.hold("h3", HH, ESCROW, "service", 20)
    return store


def check(store, cap=0):
    return reconcile(store.scan_transfers(), store.scan_balances(), household_cap=cap)


def kinds(report):
    return sorted({v["type"] for v in report["violations"]})


def test_a_healthy_ledger_is_ok_and_reports_totals_per_asset(store):
    report = check(store)
    assert report["ok"] and report["violations"] == []
    service = report["assets"]["service"]
    assert service["debits_posted"] == service["credits_posted"] == 300 + 60 + 60 + 40 + 40 + 10
    assert service["debits_pending"] == service["credits_pending"] == 20  # only h3 is still held
    assert report["assets"]["contribution"] == dict.fromkeys(
        ("debits_posted", "credits_posted", "debits_pending", "credits_pending"), 0)


def test_a_balance_that_is_not_the_fold_of_its_transfers(store):
    totals = store.balances[(HH, "service")]
    store.balances[(HH, "service")] = Totals(totals.debits_posted, totals.credits_posted + 7,
                                             totals.debits_pending, totals.credits_pending, totals.available + 7)
    report = check(store)
    assert kinds(report) == ["balance_mismatch", "unbalanced_posted"]
    mismatch = next(v for v in report["violations"] if v["type"] == "balance_mismatch")
    assert (mismatch["account"], mismatch["asset"]) == (HH, "service")


def test_a_stored_available_that_disagrees_with_the_totals(store):
    totals = store.balances[(HH2, "service")]
    store.balances[(HH2, "service")] = Totals(totals.debits_posted, totals.credits_posted, totals.debits_pending,
                                              totals.credits_pending, totals.available + 1)
    assert kinds(check(store)) == ["balance_mismatch"]


def test_unbalanced_pending_totals(store):
    key = next(k for k in store.balances if k[0].startswith("escrow#"))
    t = store.balances[key]
    store.balances[key] = Totals(t.debits_posted, t.credits_posted, t.debits_pending, t.credits_pending + 3,
                                 t.available)
    assert kinds(check(store)) == ["balance_mismatch", "unbalanced_pending"]


def test_a_balance_item_nothing_explains(store):
    store.balances[("merchant:m_1", "service")] = Totals()
    assert check(store)["ok"]  # an all-zero item explains itself
    store.balances[("merchant:m_1", "service")] = Totals(0, 5, 0, 0, 5)
    assert "balance_mismatch" in kinds(check(store))


def test_a_limited_account_beyond_its_limit(store):
    # a transfer written past the ledger (e.g. by a buggy migration) overdraws a resident
    bad = store.transfers["t"].with_changes(id="bad", debit_account=ALICE, credit_account=HH2, amount=1000,
                                             reversed_by=None, sort_key="x#bad")
    store.transfers["bad"] = bad
    for key, delta in (((ALICE, "service"), Totals(1000, 0, 0, 0, -1000)), ((HH2, "service"), Totals(0, 1000, 0, 0, 1000))):
        store.balances[key] = store.balances[key] + delta
    report = check(store)
    assert kinds(report) == ["over_limit"]
    assert report["violations"][0]["account"] == ALICE


def test_the_household_cap_when_configured(store):
    """Above the cap is listed, not a violation (a release of the household's own hold or a
    reversal may legitimately put it there; every credit is capped in its own transaction)."""
    assert check(store, cap=1000)["ok"] and check(store, cap=1000)["above_cap"] == []
    report = check(store, cap=100)
    assert report["ok"] and kinds(report) == []
    assert report["above_cap"] and all(row["available"] > 100 for row in report["above_cap"])
    assert "above_cap" not in check(store)


def test_a_hold_resolved_twice(store):
    second = store.transfers["s1.post"].with_changes(id="second-post", linked=(), sort_key="y#second")
    store.transfers["second-post"] = second
    assert {"resolved_twice", "orphan_resolution"} <= set(kinds(check(store)))


def test_a_resolved_hold_without_its_resolution(store):
    del store.transfers["v2"]
    assert {"pending_resolution_mismatch"} <= set(kinds(check(store)))


def test_a_pending_hold_that_claims_a_resolution(store):
    store.transfers["h2"] = store.transfers["h2"].with_changes(status="pending")
    assert kinds(check(store)) == ["pending_resolution_mismatch"]


def test_a_resolution_that_differs_from_its_hold(store):
    store.transfers["v2"] = store.transfers["v2"].with_changes(pending_amount=49)
    assert "resolution_differs_from_hold" in kinds(check(store))


def test_a_reversal_without_its_marker_or_twice(store):
    store.transfers["t"] = store.transfers["t"].with_changes(reversed_by=None)
    assert kinds(check(store)) == ["orphan_reversal"]
    store.transfers["t"] = store.transfers["t"].with_changes(reversed_by="r")
    twice = store.transfers["r"].with_changes(id="r2", sort_key="z#r2")
    store.transfers["r2"] = twice
    assert "reversed_twice" in kinds(check(store))


def test_a_reversal_marker_pointing_nowhere(store):
    store.transfers["fund"] = store.transfers["fund"].with_changes(reversed_by="ghost")
    assert kinds(check(store)) == ["reversal_marker_mismatch"]


def test_a_missing_linked_leg(store):
    gone = store.transfers.pop("b")
    for key, delta in (((HH, "service"), Totals(-5, 0, 0, 0, 5)), ((ALICE, "service"), Totals(0, -5, 0, 0, -5))):
        store.balances[key] = store.balances[key] + delta
    report = check(store)
    assert kinds(report) == ["missing_linked_leg"]
    assert report["violations"][0]["linked_id"] == gone.id


def test_an_unknown_account_in_the_balances():
    rows = [BalanceRow("wallet:x", "service", Totals(0, 0, 0, 0, 0))]
    assert kinds(reconcile([], rows)) == ["unknown_account"]


def test_the_fold_of_the_transfers(store):
    folded = fold_transfers(store.scan_transfers())
    assert folded == {key: totals for key, totals in store.balances.items()}
