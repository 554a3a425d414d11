"""DynamoDB adapter of the ledger (PynamoDB).

Two tables:

- ``ledger-transfers``: one item per transfer, key ``id``. Two global secondary indexes make a
  statement a Query, never a Scan: ``by-debit`` (debit_account, sort_key) and ``by-credit``
  (credit_account, sort_key); ``sort_key`` is "<UTC time to µs>#<id>". The indexes carry the
  logical account (``pool``, not ``pool#3``), so a sharded account's statement is one Query per
  side too. A hold's status lives on its item, so the statement always shows its current
  status (pending → posted / voided) without another read. Keying the indexes on the logical
  account puts all of ``issuance``'s statement entries in one index partition; its write rate
  (one entry per grant) is far below a partition's 1,000 WCU/s, and sharding the index key
  would cost a Query per shard on every statement.
- ``ledger-balances``: one item per (physical account, asset) with the four totals and the
  stored ``available``; updates are ``ADD`` deltas under the ``available`` condition.
- ``ledger-expiries``: credits of expiring assets, one item per (expiry day, "account#asset"),
  ``ADD``ed by the transaction that posts the credit; the day is the partition key, so the
  daily expiry reads exactly one partition (a Query). Closing sets ``expired_amount`` under
  ``attribute_not_exists(expired_amount)``. A day's credits of the whole community share one
  partition: its writes are one per credit, far below a partition's 1,000 WCU/s.

A plan is committed as one ``TransactWriteItems``. PynamoDB sends the items grouped by action
type (condition checks, deletes, puts, updates) whatever order they were added in, so the
cancellation reasons are mapped back through the same grouping (``_TaggedTransaction``).

Tests may pass a ``lock`` (moto is not thread-safe: every low-level call is serialized) and
``hooks`` (crash before / after the commit, barriers to force interleavings).
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import nullcontext
from typing import Any, Callable, Iterable, TypeVar

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from functions.adapters.dynamo import TransactWrite, make_meta, table
from functions.ledger.model import (BalanceChange, BalanceRow, BucketChange, CommitHooks, CommitRejected,
                                    ExpiringCredit, Plan, Resolution, Totals, TransferRecord)

T = TypeVar("T")

TRANSFERS_TABLE = "ledger-transfers"
BALANCES_TABLE = "ledger-balances"
EXPIRIES_TABLE = "ledger-expiries"
_CONFLICT_RETRIES = 3


class _ByDebit(GlobalSecondaryIndex):
    class Meta:
        index_name = "by-debit"
        projection = AllProjection()

    debit_account = UnicodeAttribute(hash_key=True)
    sort_key = UnicodeAttribute(range_key=True)


class _ByCredit(GlobalSecondaryIndex):
    class Meta:
        index_name = "by-credit"
        projection = AllProjection()

    credit_account = UnicodeAttribute(hash_key=True)
    sort_key = UnicodeAttribute(range_key=True)


@table
class LedgerTransferItem(Model):
    Meta = make_meta(TRANSFERS_TABLE)

    id = UnicodeAttribute(hash_key=True)
    op = UnicodeAttribute()
    kind = UnicodeAttribute()
    debit_account = UnicodeAttribute()
    credit_account = UnicodeAttribute()
    asset = UnicodeAttribute()
    amount = NumberAttribute()
    status = UnicodeAttribute()
    created_at = UnicodeAttribute()
    sort_key = UnicodeAttribute()
    content_hash = UnicodeAttribute()
    memo = UnicodeAttribute(null=True)
    actor = UnicodeAttribute(null=True)
    request_id = UnicodeAttribute(null=True)
    debit_shard = NumberAttribute(null=True)
    credit_shard = NumberAttribute(null=True)
    pending_id = UnicodeAttribute(null=True)
    pending_amount = NumberAttribute(null=True)
    reversal_of = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    linked = ListAttribute(of=UnicodeAttribute, null=True)
    resolved_by = UnicodeAttribute(null=True)
    posted_amount = NumberAttribute(null=True)
    reversed_by = UnicodeAttribute(null=True)

    by_debit = _ByDebit()
    by_credit = _ByCredit()


@table
class LedgerBalanceItem(Model):
    Meta = make_meta(BALANCES_TABLE)

    account = UnicodeAttribute(hash_key=True)   # physical: "household:hh_1", "pool#3"
    asset = UnicodeAttribute(range_key=True)
    debits_posted = NumberAttribute(default=0)
    credits_posted = NumberAttribute(default=0)
    debits_pending = NumberAttribute(default=0)
    credits_pending = NumberAttribute(default=0)
    available = NumberAttribute(default=0)


@table
class LedgerCheckItem(Model):
    """The latest report of the ledger check (one item; the daily schedule and the CLI overwrite it)."""
    Meta = make_meta("ledger-checks")

    check_id = UnicodeAttribute(hash_key=True)
    checked_at = UnicodeAttribute()
    report = UnicodeAttribute()   # JSON


class DynamoCheckReports:
    LATEST = "latest"

    def save(self, report: dict[str, Any]) -> None:
        LedgerCheckItem(self.LATEST, checked_at=report["checked_at"],
                        report=json.dumps(report, ensure_ascii=False, separators=(",", ":"))).save()

    def latest(self) -> dict[str, Any] | None:
        try:
            return json.loads(LedgerCheckItem.get(self.LATEST, consistent_read=True).report)
        except LedgerCheckItem.DoesNotExist:
            return None


@table
class LedgerExpiryItem(Model):
    Meta = make_meta(EXPIRIES_TABLE)

    day = UnicodeAttribute(hash_key=True)       # the day the credits expire (YYYY-MM-DD, Asia/Shanghai)
    key = UnicodeAttribute(range_key=True)      # "<account>#<asset>"
    account = UnicodeAttribute()
    asset = UnicodeAttribute()
    amount = NumberAttribute(default=0)
    expired_amount = NumberAttribute(null=True)
    expired_by = UnicodeAttribute(null=True)


# --- conversions ------------------------------------------------------------------------------

def _to_item(record: TransferRecord) -> LedgerTransferItem:
    return LedgerTransferItem(
        record.id, op=record.op, kind=record.kind, debit_account=record.debit_account,
        credit_account=record.credit_account, asset=record.asset, amount=record.amount, status=record.status,
        created_at=record.created_at, sort_key=record.sort_key, content_hash=record.content_hash,
        memo=record.memo or None, actor=record.actor, request_id=record.request_id,
        debit_shard=record.debit_shard, credit_shard=record.credit_shard, pending_id=record.pending_id,
        pending_amount=record.pending_amount, reversal_of=record.reversal_of, reason=record.reason,
        linked=list(record.linked) or None, resolved_by=record.resolved_by, posted_amount=record.posted_amount,
        reversed_by=record.reversed_by)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _to_record(item: LedgerTransferItem) -> TransferRecord:
    return TransferRecord(
        id=item.id, op=item.op, kind=item.kind, debit_account=item.debit_account,
        credit_account=item.credit_account, asset=item.asset, amount=int(item.amount), status=item.status,
        created_at=item.created_at, sort_key=item.sort_key, content_hash=item.content_hash,
        memo=item.memo or "", actor=item.actor, request_id=item.request_id,
        debit_shard=_int_or_none(item.debit_shard), credit_shard=_int_or_none(item.credit_shard),
        pending_id=item.pending_id, pending_amount=_int_or_none(item.pending_amount),
        reversal_of=item.reversal_of, reason=item.reason, linked=tuple(item.linked or ()),
        resolved_by=item.resolved_by, posted_amount=_int_or_none(item.posted_amount),
        reversed_by=item.reversed_by)


def _credit(item: LedgerExpiryItem) -> ExpiringCredit:
    return ExpiringCredit(item.day, item.account, item.asset, int(item.amount or 0),
                          _int_or_none(item.expired_amount), item.expired_by)


def _totals(item: LedgerBalanceItem) -> Totals:
    return Totals(int(item.debits_posted or 0), int(item.credits_posted or 0), int(item.debits_pending or 0),
                  int(item.credits_pending or 0), int(item.available or 0))


class _TaggedTransaction:
    """Forwards to a ``TransactWrite`` and remembers, per action type, which plan element
    added each action — PynamoDB sends (and DynamoDB reports reasons) in the order condition
    checks, deletes, puts, updates. Foreign ``add_to(transaction)`` writes receive this object."""

    def __init__(self, transaction: TransactWrite):
        self._transaction = transaction
        self.tag: Any = None
        self._by_type: dict[str, list[Any]] = {"condition_check": [], "delete": [], "save": [], "update": []}

    def condition_check(self, *args: Any, **kwargs: Any) -> None:
        self._by_type["condition_check"].append(self.tag)
        self._transaction.condition_check(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> None:
        self._by_type["delete"].append(self.tag)
        self._transaction.delete(*args, **kwargs)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self._by_type["save"].append(self.tag)
        self._transaction.save(*args, **kwargs)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._by_type["update"].append(self.tag)
        self._transaction.update(*args, **kwargs)

    def in_request_order(self) -> list[Any]:
        return [tag for kind in ("condition_check", "delete", "save", "update") for tag in self._by_type[kind]]


class DynamoLedgerStore:
    def __init__(self, hooks: CommitHooks | None = None, lock: threading.Lock | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.hooks = hooks or CommitHooks()
        self._lock = lock
        self._sleep = sleep

    def _io(self, call: Callable[[], T]) -> T:
        with self._lock if self._lock is not None else nullcontext():
            return call()

    # --- writes ---
    def commit(self, plan: Plan) -> None:
        self.hooks.before_commit(plan)
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                self._io(lambda: self._transact(plan))
                break
            except _Cancelled as cancelled:
                if cancelled.conflict_only and attempt < _CONFLICT_RETRIES:
                    # Another transaction held one of the items; the conditions are re-checked
                    # on the next attempt, so retrying cannot double-apply.
                    self._sleep(0.02 * 2 ** attempt)
                    continue
                raise CommitRejected(cancelled.failed, cancelled.detail) from None
        self.hooks.after_commit(plan)

    def _transact(self, plan: Plan) -> None:
        connection = LedgerTransferItem._get_connection().connection
        transaction = TransactWrite(connection=connection)
        tagged = _TaggedTransaction(transaction)
        for record in plan.puts:
            tagged.tag = record
            tagged.save(_to_item(record), condition=LedgerTransferItem.id.does_not_exist())
        for resolution in plan.resolutions:
            tagged.tag = resolution
            self._add_resolution(tagged, resolution)
        for change in plan.balances:
            tagged.tag = change
            self._add_balance(tagged, change)
        for bucket in plan.buckets:
            tagged.tag = bucket
            self._add_bucket(tagged, bucket)
        for write in plan.foreign:
            tagged.tag = write
            write.add_to(tagged)
        try:
            with transaction:
                pass  # leaving the block commits
        except TransactWriteError as error:
            if error.cause_response_code != "TransactionCanceledException":
                raise
            reasons = error.cancellation_reasons
            # A request's audit entry rides as the last item (adapters.dynamo.TransactWrite).
            order = tagged.in_request_order() + ([None] if transaction.carried_audit else [])
            if len(reasons) != len(order):
                raise _Cancelled([], False, "cancellation reasons could not be mapped") from None
            failed, codes = [], set()
            for tag, reason in zip(order, reasons):
                if reason is None or reason.code in (None, "None"):
                    continue
                codes.add(reason.code)
                if reason.code == "ConditionalCheckFailed" and tag not in failed:
                    failed.append(tag)
            raise _Cancelled(failed, codes == {"TransactionConflict"}, ",".join(sorted(codes))) from None

    @staticmethod
    def _add_resolution(transaction: _TaggedTransaction, resolution: Resolution) -> None:
        item = LedgerTransferItem(resolution.transfer_id)
        if resolution.reversal:
            actions = [LedgerTransferItem.reversed_by.set(resolution.by)]
            condition = (LedgerTransferItem.status == "posted") & LedgerTransferItem.reversed_by.does_not_exist()
        else:
            actions = [LedgerTransferItem.status.set(resolution.status),
                       LedgerTransferItem.resolved_by.set(resolution.by)]
            if resolution.posted_amount is not None:
                actions.append(LedgerTransferItem.posted_amount.set(resolution.posted_amount))
            condition = (LedgerTransferItem.status == "pending") & LedgerTransferItem.resolved_by.does_not_exist()
        transaction.update(item, actions=actions, condition=condition)

    @staticmethod
    def _add_balance(transaction: _TaggedTransaction, change: BalanceChange) -> None:
        condition = None
        if change.min_available is not None:
            condition = LedgerBalanceItem.available >= change.min_available
        if change.max_available is not None:
            # A missing item has available 0, and the planner only sets a cap >= 0.
            cap = LedgerBalanceItem.available.does_not_exist() | (LedgerBalanceItem.available <= change.max_available)
            condition = cap if condition is None else condition & cap
        if not change.has_deltas:
            transaction.condition_check(LedgerBalanceItem, change.physical, change.asset, condition=condition)
            return
        # Every total is ADDed (zeros too) so every item carries all five attributes.
        actions = [
            LedgerBalanceItem.debits_posted.add(change.debits_posted),
            LedgerBalanceItem.credits_posted.add(change.credits_posted),
            LedgerBalanceItem.debits_pending.add(change.debits_pending),
            LedgerBalanceItem.credits_pending.add(change.credits_pending),
            LedgerBalanceItem.available.add(change.available_delta),
        ]
        transaction.update(LedgerBalanceItem(change.physical, change.asset), actions=actions, condition=condition)

    @staticmethod
    def _add_bucket(transaction: _TaggedTransaction, change: BucketChange) -> None:
        item = LedgerExpiryItem(change.day, f"{change.account}#{change.asset}")
        actions = [LedgerExpiryItem.account.set(change.account), LedgerExpiryItem.asset.set(change.asset),
                   LedgerExpiryItem.amount.add(change.amount)]
        condition = None
        if change.close is not None:
            taken, transfer_id = change.close
            actions.append(LedgerExpiryItem.expired_amount.set(taken))
            if transfer_id is not None:
                actions.append(LedgerExpiryItem.expired_by.set(transfer_id))
            condition = LedgerExpiryItem.expired_amount.does_not_exist()
        transaction.update(item, actions=actions, condition=condition)

    # --- reads ---
    def expiring(self, day: str) -> list[ExpiringCredit]:
        return self._io(lambda: [_credit(i) for i in LedgerExpiryItem.query(day, consistent_read=True)])

    def get_transfer(self, transfer_id: str) -> TransferRecord | None:
        def call() -> TransferRecord | None:
            try:
                return _to_record(LedgerTransferItem.get(transfer_id, consistent_read=True))
            except DoesNotExist:
                return None

        return self._io(call)

    def get_transfers(self, transfer_ids: list[str]) -> dict[str, TransferRecord]:
        ids = list(dict.fromkeys(transfer_ids))
        if len(ids) == 1:
            record = self.get_transfer(ids[0])
            return {record.id: record} if record else {}
        if not ids:
            return {}
        items = self._io(lambda: list(LedgerTransferItem.batch_get(ids, consistent_read=True)))
        return {item.id: _to_record(item) for item in items}

    def get_balances(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Totals]:
        if not keys:
            return {}
        items = self._io(lambda: list(LedgerBalanceItem.batch_get(keys, consistent_read=True)))
        return {(item.account, item.asset): _totals(item) for item in items}

    def account_balances(self, physical: str) -> dict[str, Totals]:
        items = self._io(lambda: list(LedgerBalanceItem.query(physical, consistent_read=True)))
        return {item.asset: _totals(item) for item in items}

    def statement(self, account_id: str, before: str | None, limit: int) -> list[TransferRecord]:
        rows: list[TransferRecord] = []
        for index in (LedgerTransferItem.by_debit, LedgerTransferItem.by_credit):
            condition = LedgerTransferItem.sort_key < before if before else None
            rows.extend(self._io(lambda index=index, condition=condition: [
                _to_record(item) for item in index.query(account_id, range_key_condition=condition,
                                                         scan_index_forward=False, limit=limit)]))
        rows.sort(key=lambda record: record.sort_key, reverse=True)
        return rows[:limit]

    def account_seen(self, account_id: str, physicals: list[str]) -> bool:
        for physical in physicals:
            if self._io(lambda physical=physical: list(LedgerBalanceItem.query(physical, limit=1))):
                return True
        return False

    def scan_transfers(self) -> Iterable[TransferRecord]:
        return self._io(lambda: [_to_record(i) for i in LedgerTransferItem.scan(consistent_read=True)])

    def scan_balances(self) -> Iterable[BalanceRow]:
        return self._io(lambda: [BalanceRow(i.account, i.asset, _totals(i))
                                             for i in LedgerBalanceItem.scan(consistent_read=True)])


class _Cancelled(Exception):
    def __init__(self, failed: list[Any], conflict_only: bool, detail: str):
        self.failed = failed
        self.conflict_only = conflict_only
        self.detail = detail
        super().__init__(detail)
