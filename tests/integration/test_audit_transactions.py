"""The audit entry rides in the change's own TransactWriteItems (moto): committed together,
cancelled together, once per request however often the request's transaction is retried, and
written alone only when no transaction could carry it (100 items already, or none at all)."""
from __future__ import annotations

from datetime import datetime

import boto3
import pytest
from moto import mock_aws

from functions.adapters import dynamo
from functions.adapters.dynamo import Put, commit, create_tables
from functions.bootstrap import table_definitions
from functions.core import audit
from functions.core.clock import CHINA_TZ
from functions.core.errors import InsufficientCredits
from functions.ledger.accounts import ISSUANCE, household_account
from functions.ledger.dynamo import DynamoLedgerStore
from functions.ledger.service import Ledger

AT = datetime(2026, 12, 1, 9, 0, tzinfo=CHINA_TZ)
HH = household_account("hh_audit")


@pytest.fixture
def tables():
    with mock_aws():
        from functions.adapters.audit import AuditEntryItem  # noqa: F401  (installs the transaction hook)

        create_tables(boto3.client("dynamodb"), table_definitions(),
                      names=["audit-entries", "ledger-transfers", "ledger-balances", "events"])
        yield


@pytest.fixture
def calls(monkeypatch):
    """The TransactWriteItems sent, as their item counts."""
    import botocore.client

    sent: list[int] = []
    original = botocore.client.BaseClient._make_api_call

    def counting(client, operation, params):
        if operation == "TransactWriteItems":
            sent.append(len(params["TransactItems"]))
        return original(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counting)
    return sent


def entry(entry_id: str = "aud_1") -> audit.AuditEntry:
    return audit.AuditEntry(id=entry_id, at=AT, actor_id="res_admin", action="transfer.reverse",
                            target={"transfer_id": "t-1"}, reason="测试", subject="hh_audit")


def stored() -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=table_definitions_name("audit-entries"))["Items"]


def table_definitions_name(logical: str) -> str:
    return next(d["TableName"] for d in table_definitions() if d["LogicalName"] == logical)


def in_request(pending: audit.AuditEntry, action):
    token = audit.begin(pending)
    try:
        return action()
    finally:
        audit.end(token)


def test_the_entry_commits_in_the_changes_transaction(tables, calls):
    ledger = Ledger(DynamoLedgerStore(), shards=2)
    pending = entry()
    in_request(pending, lambda: ledger.transfer("fund", ISSUANCE, HH, "service", 100))
    assert calls == [4]            # the transfer, two balances, and the entry: one TransactWriteItems
    assert pending.written
    (item,) = stored()
    assert item["action"]["S"] == "transfer.reverse" and item["subject"]["S"] == "hh_audit"
    # only the first transaction of the request carries it
    in_request(pending, lambda: ledger.transfer("fund-2", ISSUANCE, HH, "service", 5))
    assert calls == [4, 3] and len(stored()) == 1


def test_a_refused_change_leaves_no_entry(tables, calls):
    ledger = Ledger(DynamoLedgerStore(), shards=2)
    ledger.transfer("fund", ISSUANCE, HH, "service", 10)
    pending = entry()
    with pytest.raises(InsufficientCredits):  # the ledger still names its refusal with the entry aboard
        in_request(pending, lambda: ledger.transfer("spend", HH, household_account("hh_b"), "service", 50))
    assert calls[-1] == 4 and not pending.written
    assert stored() == []


def test_a_cancelled_transaction_leaves_no_entry(tables):
    from functions.adapters.outbox import OutboxEventItem

    OutboxEventItem("0", "evt-1", type="t", subject="s", occurred_at="x", data="{}").save()
    pending = entry()
    duplicate = Put(OutboxEventItem("0", "evt-1", type="t", subject="s", occurred_at="x", data="{}"),
                    condition=OutboxEventItem.event_id.does_not_exist())
    with pytest.raises(dynamo.TransactWriteError):
        in_request(pending, lambda: commit([duplicate]))
    assert stored() == [] and not pending.written
    # the request's retry (a new transaction) carries the same entry once
    fresh = Put(OutboxEventItem("0", "evt-2", type="t", subject="s", occurred_at="x", data="{}"))
    in_request(pending, lambda: commit([fresh]))
    in_request(entry(), lambda: commit([fresh]))    # a replay of the request: the same id, overwritten
    assert len(stored()) == 1


def test_a_full_transaction_leaves_the_entry_to_the_lone_write(tables, calls):
    from functions.adapters.audit import DynamoAuditLog
    from functions.adapters.outbox import OutboxEventItem

    pending = entry()
    writes = [Put(OutboxEventItem("0", f"evt-{n}", type="t", subject="s", occurred_at="x", data="{}"))
              for n in range(100)]
    in_request(pending, lambda: commit(writes))
    assert calls == [100] and not pending.written and stored() == []
    DynamoAuditLog().write(pending)
    assert len(stored()) == 1 and pending.written
