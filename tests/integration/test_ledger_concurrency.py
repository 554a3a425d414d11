"""Concurrency: many threads against one balance / one id / one hold.

moto is not thread-safe in-process, so the adapter's low-level calls are serialized by a lock.
That alone would let threads run one after another (and pass by luck), so a barrier in the
commit hook forces the interleaving under test: EVERY thread has planned — read whatever it
reads, decided it can go ahead — before ANY of them commits. Only the conditional writes stand
between them and an overdraft, a double application or a double resolution.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from moto import mock_aws

from functions.core.errors import InsufficientCredits, InvalidState, TimebankError
from functions.adapters.dynamo import create_tables
from functions.bootstrap import table_definitions
from functions.ledger.accounts import ESCROW, ISSUANCE, POOL, household_account, resident_account, shard_for
from functions.ledger.dynamo import DynamoLedgerStore
from functions.ledger.service import Ledger
from functions.ledger.model import CommitHooks
from tests.fakes.ledger import InMemoryLedgerStore
from tests.property.ledger_support import BarrierHooks

THREADS = 16
HH = household_account("hh_a")


@pytest.fixture(params=["dynamodb", "memory"])
def ledger(request):
    if request.param == "memory":
        yield Ledger(InMemoryLedgerStore(), shards=4)
        return
    with mock_aws():
        create_tables(boto3.client("dynamodb"), table_definitions(), names=["ledger-transfers", "ledger-balances"])
        yield Ledger(DynamoLedgerStore(lock=threading.Lock()), shards=4)


def race(ledger, attempts):
    """Run the callables in THREADS threads, all planned before any commits; returns
    (results, errors) in submission order."""
    ledger.store.hooks = BarrierHooks(len(attempts))
    try:
        def run(attempt):
            try:
                return attempt(), None
            except TimebankError as error:
                return None, error

        with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
            outcomes = list(pool.map(run, attempts))
    finally:
        ledger.store.hooks = CommitHooks()
    return [r for r, _ in outcomes], [e for _, e in outcomes]


def available(ledger, account):
    totals = ledger.balances(account).get("service")
    return totals.available if totals else 0


def test_parallel_spending_never_overdraws(ledger):
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    attempts = [lambda i=i: ledger.transfer(f"spend-{i}", HH, resident_account(f"res_{i}"), "service", 10)
                for i in range(THREADS)]
    results, errors = race(ledger, attempts)
    assert sum(r is not None for r in results) == 10
    assert all(isinstance(e, InsufficientCredits) for e in errors if e is not None)
    assert available(ledger, HH) == 0
    assert sum(available(ledger, resident_account(f"res_{i}")) for i in range(THREADS)) == 100
    assert ledger.check()["ok"]


def test_parallel_holds_never_reserve_more_than_available(ledger):
    ledger.transfer("fund", ISSUANCE, HH, "service", 95)
    attempts = [lambda i=i: ledger.hold(f"hold-{i}", HH, ESCROW, "service", 30) for i in range(THREADS)]
    results, errors = race(ledger, attempts)
    assert sum(r is not None for r in results) == 3
    assert available(ledger, HH) == 5
    assert ledger.check()["ok"]


def test_many_submissions_of_one_transfer_apply_it_once(ledger):
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    attempts = [lambda: ledger.transfer("gift", HH, household_account("hh_b"), "service", 30, memo="生日")
                for _ in range(THREADS)]
    results, errors = race(ledger, attempts)
    assert errors == [None] * THREADS
    assert len({(r.id, r.created_at, r.sort_key) for r in results}) == 1
    assert (available(ledger, HH), available(ledger, household_account("hh_b"))) == (70, 30)
    assert ledger.check()["ok"]


def test_a_hold_is_resolved_once_however_many_race_for_it(ledger):
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    ledger.hold("h", HH, ESCROW, "service", 80)
    attempts = []
    for i in range(THREADS):
        if i % 2:
            attempts.append(lambda i=i: ledger.void_pending(f"void-{i}", "h"))
        else:
            attempts.append(lambda i=i: ledger.settle_hold(f"settle-{i}", "h", resident_account(f"res_{i}"), 50))
    results, errors = race(ledger, attempts)
    assert sum(r is not None for r in results) == 1
    assert all(isinstance(e, InvalidState) for e in errors if e is not None)
    assert available(ledger, HH) in (20 + 30, 100)  # settled at 50 (30 released) or voided
    assert ledger.check()["ok"]


def test_a_transfer_is_reversed_once_however_many_race_for_it(ledger):
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    ledger.transfer("t", HH, household_account("hh_b"), "service", 40)
    attempts = [lambda i=i: ledger.reverse(f"rev-{i}", "t", "mistake", "admin-1") for i in range(THREADS)]
    results, errors = race(ledger, attempts)
    assert sum(r is not None for r in results) == 1
    assert available(ledger, HH) == 100
    assert ledger.check()["ok"]


def test_parallel_pool_payouts_all_read_the_same_shard_yet_never_overdraw_it(ledger):
    ledger.transfer("fund", ISSUANCE, HH, "service", 1000)
    donation = next(f"d{i}" for i in range(100) if shard_for(f"d{i}", 4) == 0)
    ledger.transfer(donation, HH, POOL, "service", 50, kind="donation")
    # every payout's planner reads shard 0 with 50 available and picks it
    attempts = [lambda i=i: ledger.transfer(f"grant-{i}", POOL, resident_account(f"res_{i}"), "service", 20,
                                            kind="grant") for i in range(THREADS)]
    results, errors = race(ledger, attempts)
    assert sum(r is not None for r in results) == 2
    assert ledger.balances(POOL)["service"].available == 10
    assert ledger.check()["ok"]


def test_the_race_is_real_without_the_condition_the_same_race_overdraws(ledger):
    """Guards the test itself: with the balance condition stripped from the plans, the forced
    interleaving lets every thread spend — so the tests above pass because of the condition."""
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    real_commit = ledger.store.commit

    def unconditional(plan):
        for change in plan.balances:
            change.min_available = None
        real_commit(plan)

    ledger.store.commit = unconditional
    attempts = [lambda i=i: ledger.transfer(f"spend-{i}", HH, resident_account(f"res_{i}"), "service", 10)
                for i in range(THREADS)]
    results, errors = race(ledger, attempts)
    assert errors == [None] * THREADS
    assert available(ledger, HH) == 100 - 10 * THREADS
    assert "over_limit" in {v["type"] for v in ledger.check()["violations"]}
