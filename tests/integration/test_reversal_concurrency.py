"""Reversals under races: many admins (or one double click) reverse the same transfer at once;
every one of them has read the original as not yet reversed before any commits. The original's
condition lets exactly one through; the others get ALREADY_REVERSED and nothing moves twice."""
from __future__ import annotations

import threading

import boto3
import pytest
from moto import mock_aws

from functions.adapters.dynamo import create_tables
from functions.bootstrap import table_definitions
from functions.ledger.accounts import ESCROW, ISSUANCE, household_account, resident_account
from functions.ledger.dynamo import DynamoLedgerStore
from functions.ledger.model import AlreadyReversed
from functions.ledger.service import Ledger
from tests.fakes.ledger import InMemoryLedgerStore
from tests.integration.test_ledger_concurrency import race

THREADS = 8
PAYER, VOLUNTEER = household_account("hh_p"), resident_account("res_v")


@pytest.fixture(params=["dynamodb", "memory"])
def ledger(request):
    if request.param == "memory":
        yield Ledger(InMemoryLedgerStore(), shards=4)
        return
    with mock_aws():
        create_tables(boto3.client("dynamodb"), table_definitions(), names=["ledger-transfers", "ledger-balances"])
        yield Ledger(DynamoLedgerStore(lock=threading.Lock()), shards=4)


def available(ledger, account):
    totals = ledger.balances(account).get("service")
    return totals.available if totals else 0


def test_parallel_reversals_of_one_settlement_reverse_it_once(ledger):
    ledger.transfer("fund", ISSUANCE, PAYER, "service", 300)
    ledger.hold("hold-1", PAYER, ESCROW, "service", 60)
    ledger.settle_hold("settle-1", "hold-1", VOLUNTEER, 60)
    assert (available(ledger, PAYER), available(ledger, VOLUNTEER)) == (240, 60)
    attempts = [lambda i=i: ledger.reverse_transfer("settle-1.pay", f"admin {i} corrects", f"res_admin{i}")
                for i in range(THREADS)]
    results, errors = race(ledger, attempts)
    assert sum(r is not None for r in results) == 1
    assert all(isinstance(e, AlreadyReversed) for e in errors if e is not None)
    assert (available(ledger, PAYER), available(ledger, VOLUNTEER)) == (300, 0)
    (winner,) = [r for r in results if r is not None]
    assert ledger.get_transfer("settle-1.pay").reversed_by == winner.id
    assert ledger.get_transfer("settle-1.post").reversed_by is not None
    assert ledger.check()["ok"]
