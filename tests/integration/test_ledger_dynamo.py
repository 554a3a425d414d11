"""The DynamoDB adapter on moto: same semantics as the fake, conditions enforced by DynamoDB,
cancellation reasons mapped back to the right plan element, crashes, retries, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from functions.core.errors import (Conflict, IdempotencyMismatch, InsufficientCredits, InvalidState, LimitExceeded,
                                   ValidationError)
from functions.adapters.dynamo import create_tables
from functions.bootstrap import table_definitions
from functions.core.settings import region
from functions.ledger import cli, dynamo
from functions.ledger.accounts import ESCROW, ISSUANCE, POOL, household_account, resident_account, shard_for
from functions.ledger.dynamo import DynamoLedgerStore, LedgerBalanceItem, LedgerTransferItem
from functions.ledger.service import Ledger
from functions.ledger.model import BalanceChange, CommitRejected, Plan, SimulatedCrash, Transfer
from tests.property.ledger_support import CrashOnce

HH = household_account("hh_a")
HH2 = household_account("hh_b")
ALICE = resident_account("res_alice")


class Marker(Model):
    """A stand-in for another domain's item (e.g. a request) written in the ledger's transaction."""

    class Meta:
        table_name = "ledger-test-markers"
        region = region()

    key = UnicodeAttribute(hash_key=True)
    state = UnicodeAttribute()


class MarkerTransition:
    """Foreign write: move the marker from ``expected`` to ``new`` (an update)."""

    def __init__(self, key: str, expected: str, new: str):
        self.key, self.expected, self.new = key, expected, new

    def add_to(self, transaction) -> None:
        transaction.update(Marker(self.key), actions=[Marker.state.set(self.new)],
                           condition=Marker.state == self.expected)


class RequireTransfer:
    """Foreign write: a condition check (PynamoDB sends these FIRST, whatever the add order)."""

    def __init__(self, transfer_id: str, exists: bool = True):
        self.transfer_id, self.exists = transfer_id, exists

    def add_to(self, transaction) -> None:
        condition = LedgerTransferItem.id.exists() if self.exists else LedgerTransferItem.id.does_not_exist()
        transaction.condition_check(LedgerTransferItem, self.transfer_id, condition=condition)


@pytest.fixture
def moto_ledger():
    with mock_aws():
        create_tables(boto3.client("dynamodb"), table_definitions(), names=["ledger-transfers", "ledger-balances", "ledger-checks"])
        Marker.create_table(billing_mode="PAY_PER_REQUEST", wait=False)
        store = DynamoLedgerStore(sleep=lambda seconds: None)
        yield Ledger(store, shards=4)


def snapshot():
    transfers = sorted((i.id, i.status, i.resolved_by, i.reversed_by) for i in LedgerTransferItem.scan())
    balances = sorted((i.account, i.asset, int(i.available), int(i.debits_posted), int(i.credits_posted),
                       int(i.debits_pending), int(i.credits_pending)) for i in LedgerBalanceItem.scan())
    return transfers, balances


def available(ledger, account, asset="service"):
    totals = ledger.balances(account).get(asset)
    return totals.available if totals else 0


def test_transfer_replay_mismatch_and_refusal_on_dynamodb(moto_ledger):
    ledger = moto_ledger
    first = ledger.transfer("fund", ISSUANCE, HH, "service", 100, kind="starting_credits", memo="启动")
    assert ledger.transfer("fund", ISSUANCE, HH, "service", 100, kind="starting_credits", memo="启动") == first
    assert ledger.get_transfer("fund") == first
    before = snapshot()
    with pytest.raises(IdempotencyMismatch):
        ledger.transfer("fund", ISSUANCE, HH, "service", 99, kind="starting_credits", memo="启动")
    with pytest.raises(InsufficientCredits):
        ledger.transfer("t", HH, HH2, "service", 101)
    with pytest.raises(ValidationError):
        ledger.transfer("t", HH, HH2, "service", 0)
    assert snapshot() == before
    assert available(ledger, HH) == 100
    assert ledger.check()["ok"]


def test_two_phase_and_reversal_on_dynamodb(moto_ledger):
    ledger = moto_ledger
    ledger.transfer("fund", ISSUANCE, HH, "service", 200)
    ledger.hold("h1", HH, ESCROW, "service", 90, request_id="req_1")
    ledger.hold("h2", HH, ESCROW, "service", 50)
    assert available(ledger, HH) == 60
    post = ledger.post_pending("p1", "h1", amount=30, actor="res_alice")
    assert ledger.post_pending("p1", "h1", amount=30, actor="res_alice") == post
    ledger.void_pending("v2", "h2", reason="expired")
    with pytest.raises(InvalidState):
        ledger.post_pending("p2", "h2")
    with pytest.raises(InvalidState):
        ledger.void_pending("v1", "h1")
    assert available(ledger, HH) == 170
    ledger.transfer("t", HH, HH2, "service", 70)
    ledger.reverse("r", "t", "wrong household", "admin-1")
    with pytest.raises(InvalidState):
        ledger.reverse("r2", "t", "again", "admin-1")
    assert (available(ledger, HH), available(ledger, HH2)) == (170, 0)
    statuses = {r.id: r.status for r in ledger.statement(HH, limit=50).items}
    assert statuses == {"fund": "posted", "h1": "posted", "h2": "voided", "p1": "posted", "v2": "voided",
                        "t": "posted", "r": "posted"}
    assert ledger.check()["ok"]


def test_settlement_commits_with_the_request_write(moto_ledger):
    ledger = moto_ledger
    Marker("req_1", state="completed").save()
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    hold = ledger.hold("h", HH, ESCROW, "service", 90, request_id="req_1")
    before = snapshot()
    with pytest.raises(InvalidState):
        ledger.settle_hold("s", "h", ALICE, 60, also=[MarkerTransition("req_1", "in_service", "settled")])
    assert snapshot() == before and Marker.get("req_1").state == "completed"
    post, pay = ledger.settle_hold("s", "h", ALICE, 60, also=[MarkerTransition("req_1", "completed", "settled")])
    assert Marker.get("req_1").state == "settled"
    assert pay.debit_shard == hold.credit_shard
    # the crash-retry of the same settlement: its foreign condition fails now, the ids exist
    assert ledger.settle_hold("s", "h", ALICE, 60,
                              also=[MarkerTransition("req_1", "completed", "settled")]) == [post, pay]
    assert (available(ledger, HH), available(ledger, ALICE)) == (40, 60)
    assert ledger.check()["ok"]


def test_cancellation_reasons_are_mapped_by_action_type_not_by_add_order(moto_ledger):
    ledger = moto_ledger
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    before = snapshot()
    batch = [Transfer("a", HH, HH2, "service", 60), Transfer("b", HH, ALICE, "service", 60)]
    # the condition check passes, the household balance fails -> insufficient, not invalid state
    with pytest.raises(InsufficientCredits) as caught:
        ledger.execute(batch, also=[RequireTransfer("fund", exists=True)])
    assert caught.value.details == {"account": HH, "asset": "service"}
    # the balances are fine, only the condition check (sent first) fails -> invalid state
    fine = [Transfer("a", HH, HH2, "service", 10), Transfer("b", HH, ALICE, "service", 10)]
    with pytest.raises(InvalidState):
        ledger.execute(fine, also=[RequireTransfer("missing", exists=True)])
    assert snapshot() == before
    # the adapter names exactly the failing plan element
    store = ledger.store
    short = BalanceChange(HH2, "service", debits_posted=5, min_available=5)
    fine_change = BalanceChange(ALICE, "service", credits_posted=5)
    with pytest.raises(CommitRejected) as rejected:
        store.commit(Plan(balances=[fine_change, short], foreign=[RequireTransfer("fund")]))
    assert rejected.value.failed == [short]


def test_household_cap_on_dynamodb(moto_ledger):
    capped = Ledger(moto_ledger.store, shards=4, household_cap=150)
    capped.transfer("fund", ISSUANCE, HH, "service", 100)
    capped.transfer("own", ISSUANCE, ALICE, "service", 100)
    before = snapshot()
    with pytest.raises(LimitExceeded):
        capped.transfer("move", ALICE, HH, "service", 51, cap_excess="refuse")
    assert snapshot() == before
    capped.transfer("move", ALICE, HH, "service", 50, cap_excess="refuse")
    # a capped household may still spend (both conditions on one item)
    capped.execute([Transfer("in", ISSUANCE, HH, "service", 10), Transfer("out", HH, HH2, "service", 20)])
    assert available(capped, HH) == 140
    # a grant past the cap is paid in full, the excess moves to the pool in the same transaction
    capped.transfer("grant", ISSUANCE, HH, "service", 30)
    assert capped.get_transfer("grant.cap").amount == 20 and available(capped, HH) == 150
    capped.transfer("grant2", ISSUANCE, HH, "service", 5)   # at the cap: all of it moves on
    capped.transfer("first", ISSUANCE, household_account("hh_new"), "service", 400)  # no balance item yet
    assert capped.get_transfer("grant2.cap").amount == 5
    assert capped.get_transfer("first.cap").amount == 250
    assert capped.balances(POOL)["service"].available == 275
    assert capped.check()["ok"]


def test_statement_merges_both_indexes_newest_first(moto_ledger):
    ledger = moto_ledger
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    for i in range(5):
        ledger.transfer(f"out{i}", HH, HH2, "service", 1)
        ledger.transfer(f"in{i}", HH2, HH, "service", 1)
    seen, cursor = [], None
    while True:
        page = ledger.statement(HH, limit=3, cursor=cursor)
        seen.extend(r.id for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = [x for i in reversed(range(5)) for x in (f"in{i}", f"out{i}")] + ["fund"]
    assert seen == expected
    assert [r.id for r in ledger.statement(ISSUANCE, limit=5).items] == ["fund"]


def test_sharded_balances_and_pool_payouts(moto_ledger):
    ledger = moto_ledger
    ledger.transfer("fund", ISSUANCE, HH, "service", 1000)
    for i in range(8):
        ledger.transfer(f"d{i}", HH, POOL, "service", 25, kind="donation")
    assert ledger.balances(POOL)["service"].available == 200
    assert ledger.balances(ISSUANCE)["service"].available == -1000
    richest = max(range(4), key=lambda s: sum(25 for i in range(8) if shard_for(f"d{i}", 4) == s))
    grant = ledger.transfer("g", POOL, ALICE, "service", 25, kind="grant")
    assert available(ledger, ALICE) == 25 and grant.debit_shard is not None
    assert ledger.balances(POOL)["service"].available == 175
    assert richest in range(4)
    assert ledger.account_seen(POOL) and not ledger.account_seen(household_account("hh_never"))
    assert ledger.check()["ok"]


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_around_the_commit_then_retry_applies_once(moto_ledger, when):
    ledger = moto_ledger
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    ledger.store.hooks = CrashOnce(when)
    with pytest.raises(SimulatedCrash):
        ledger.hold("h", HH, ESCROW, "service", 40)
    assert (ledger.get_transfer("h") is not None) is (when == "after")
    assert ledger.hold("h", HH, ESCROW, "service", 40).status == "pending"
    assert available(ledger, HH) == 60
    assert ledger.check()["ok"]


def test_transaction_conflicts_are_retried_then_reported(moto_ledger, monkeypatch):
    ledger = moto_ledger
    real = DynamoLedgerStore._transact
    conflicts = {"left": 2}
    attempts: list[int] = []

    def flaky(self, plan):
        attempts.append(plan.item_count)
        if conflicts["left"]:
            conflicts["left"] -= 1
            raise dynamo._Cancelled([], True, "TransactionConflict")
        return real(self, plan)

    monkeypatch.setattr(DynamoLedgerStore, "_transact", flaky)
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    assert attempts == [3] * 3
    conflicts["left"] = 100
    with pytest.raises(Conflict):
        ledger.transfer("t", HH, HH2, "service", 1)
    assert available(ledger, HH) == 100


def test_cli_check_reports_and_fails_on_tampering(moto_ledger, capsys):
    from functions import bootstrap

    ledger = moto_ledger
    bootstrap.reset()
    ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    assert cli.main(["check"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["assets"]["service"]["credits_posted"] == 100
    LedgerBalanceItem(HH, "service").update(actions=[LedgerBalanceItem.available.add(5),
                                                     LedgerBalanceItem.credits_posted.add(5)])
    assert cli.main(["check"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert {v["type"] for v in report["violations"]} == {"balance_mismatch", "unbalanced_posted"}
    bootstrap.reset()


def test_scheduled_check_logs_counts_not_ids(moto_ledger, capsys, caplog):
    from functions import bootstrap
    from functions.app import app

    bootstrap.reset()
    moto_ledger.transfer("fund", ISSUANCE, HH, "service", 100)
    LedgerBalanceItem(HH, "service").update(actions=[LedgerBalanceItem.available.add(1)])
    event = json.loads((Path(__file__).resolve().parents[2] / "events" / "ledger-check.json").read_text())
    assert app.handler_map["ledger-check"](event, None) == {"ok": False, "violations": 1}
    metrics_out = capsys.readouterr().out
    assert '"LedgerViolations":[1.0]' in metrics_out
    (record,) = [r for r in caplog.records if r.getMessage() == "ledger reconciliation"]
    assert record.levelname == "ERROR" and record.violation_types == {"balance_mismatch": 1}
    assert "hh_a" not in str(vars(record)) + metrics_out
    bootstrap.reset()
