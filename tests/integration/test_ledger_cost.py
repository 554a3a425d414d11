"""The ledger's cost model, measured: DynamoDB calls and items per operation.

Counted below the adapter, at botocore (every API call any client makes), because moto's
ConsumedCapacity is a constant. These are the numbers of the docstring of ``ledger.py``; a
change that adds a call or an item fails here.
"""
from __future__ import annotations

import boto3
import botocore.client
import pytest
from moto import mock_aws

from functions.adapters.dynamo import create_tables
from functions.bootstrap import table_definitions
from functions.ledger.accounts import ESCROW, ISSUANCE, POOL, household_account, resident_account
from functions.ledger.dynamo import DynamoLedgerStore
from functions.ledger.service import Ledger

HH = household_account("hh_a")
HH2 = household_account("hh_b")
ALICE = resident_account("res_alice")


class ApiCalls:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, operation: str, params: dict) -> None:
        if operation == "TransactWriteItems":
            items = len(params["TransactItems"])
        elif operation == "BatchGetItem":
            items = sum(len(request["Keys"]) for request in params["RequestItems"].values())
        else:
            items = 1
        self.calls.append((operation, items))

    def take(self) -> list[tuple[str, int]]:
        taken, self.calls = self.calls, []
        return taken


@pytest.fixture
def measured(monkeypatch):
    counter = ApiCalls()
    real = botocore.client.BaseClient._make_api_call

    def counting(client, operation, params):
        if client.meta.service_model.service_name == "dynamodb":
            counter(operation, params)
        return real(client, operation, params)

    with mock_aws():
        create_tables(boto3.client("dynamodb"), table_definitions(), names=["ledger-transfers", "ledger-balances"])
        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counting)
        ledger = Ledger(DynamoLedgerStore(), shards=8)
        yield ledger, counter


def test_calls_and_items_per_operation(measured):
    ledger, calls = measured
    ledger.transfer("fund", ISSUANCE, HH, "service", 1000, kind="starting_credits")
    assert calls.take() == [("TransactWriteItems", 3)]

    ledger.transfer("t", HH, HH2, "service", 10)
    assert calls.take() == [("TransactWriteItems", 3)]

    ledger.hold("h1", HH, ESCROW, "service", 90)
    assert calls.take() == [("TransactWriteItems", 3)]

    ledger.post_pending("p1", "h1", amount=60)
    assert calls.take() == [("GetItem", 1), ("TransactWriteItems", 4)]

    ledger.hold("h2", HH, ESCROW, "service", 30)
    calls.take()
    ledger.void_pending("v2", "h2")
    assert calls.take() == [("GetItem", 1), ("TransactWriteItems", 4)]

    ledger.reverse("r", "t", "mistake", "admin-1")
    assert calls.take() == [("GetItem", 1), ("TransactWriteItems", 4)]

    ledger.hold("h3", HH, ESCROW, "service", 90)
    calls.take()
    ledger.settle_hold("s3", "h3", ALICE, 45)
    assert calls.take() == [("GetItem", 1), ("TransactWriteItems", 6)]

    ledger.transfer("d", HH, POOL, "service", 100, kind="donation")
    calls.take()
    ledger.transfer("g", POOL, ALICE, "service", 50, kind="grant")
    assert calls.take() == [("BatchGetItem", 8), ("TransactWriteItems", 3)]

    ledger.balances(HH)
    assert calls.take() == [("Query", 1)]
    ledger.balances(POOL)
    assert calls.take() == [("BatchGetItem", 8 * 6)]  # every shard of each of the six assets
    ledger.statement(HH, limit=20)
    assert calls.take() == [("Query", 1), ("Query", 1)]


def test_replays_and_refusals_cost_one_diagnosing_read(measured):
    ledger, calls = measured
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    calls.take()
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    assert calls.take() == [("TransactWriteItems", 3), ("GetItem", 1)]
    with pytest.raises(Exception):
        ledger.transfer("big", HH, HH2, "service", 101)
    assert calls.take() == [("TransactWriteItems", 3)]  # reasons say "balance": no read needed
