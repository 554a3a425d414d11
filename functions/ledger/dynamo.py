"""DynamoDB adapter of the ledger (PynamoDB).

Two tables:

- ``ledger-transfers``: one item per transfer, key ``id``. Three global secondary indexes, so a
  statement and the daily check are Queries, never a Scan (``sort_key`` is
  "<UTC time to µs>#<id>" in all three):

  - ``by-debit`` (debit_key, sort_key) and ``by-credit`` (credit_key, sort_key): the statement
    of an account. The key is the account's *physical* id (``pool#3``, ``household:hh_1``), so
    the entries of a sharded system account spread over its shards' partitions and its
    statement merges one Query per shard and side (``statement_keys``). The escrow's side has
    no entry at all (sparse: no ``debit_key``/``credit_key``): every order writes three
    transfers through the escrow, and their escrow-side entries were a third of the ledger's
    index writes and one hot partition; the escrow's statement (an admin's view) is read from
    ``by-time`` instead. A hold's status lives on its item and is projected (ALL), so a
    statement shows its current status without another read.
  - ``by-time`` (time_key = "<UTC year>#<k>", sort_key): every transfer, by time, in
    ``TIME_SHARDS`` partitions per year. The daily ledger check reads the transfers written
    since its last checkpoint as ``TIME_SHARDS`` Queries of a sort-key range
    (``transfers_between``) — a day's partition range, never a Scan. INCLUDE projection of the
    immutable fields only, so resolving a hold or reversing a transfer (markers on the item)
    writes no entry here.
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
import zlib
from contextlib import nullcontext
from typing import Any, Callable, Iterable, TypeVar

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from functions.adapters.dynamo import TransactWrite, make_meta, table
from functions.ledger.accounts import UNINDEXED_ACCOUNTS, physical_id
from functions.ledger.model import (BalanceChange, BalanceRow, BucketChange, CommitHooks, CommitRejected,
                                    ExpiringCredit, Plan, Resolution, Totals, TransferRecord)
from functions.ledger.reconciliation import AccountState, CheckRunning

T = TypeVar("T")

TRANSFERS_TABLE = "ledger-transfers"
BALANCES_TABLE = "ledger-balances"
EXPIRIES_TABLE = "ledger-expiries"
_CONFLICT_RETRIES = 3
# Partitions of ``by-time`` per year: every transfer of the community writes one entry there.
# Four keep the busiest at a quarter of the transfer rate (infra/README.md "Hot partitions");
# the check and the escrow's statement pay one Query per shard. May grow, never shrink (a
# shrink would hide the upper shards from the check).
TIME_SHARDS = 4
# What the check folds and verifies: the fields a transfer never changes after its put.
TIME_PROJECTION = ("op", "debit_account", "credit_account", "asset", "amount", "debit_shard", "credit_shard",
                   "pending_id", "pending_amount", "reversal_of", "linked")


def statement_key(account: str, shard: int | None) -> str | None:
    """The statement index key of one side of a transfer (None: no entry)."""
    return None if account in UNINDEXED_ACCOUNTS else physical_id(account, shard)


def time_key(transfer_id: str, sort_key: str, shards: int = TIME_SHARDS) -> str:
    return f"{sort_key[:4]}#{zlib.crc32(transfer_id.encode()) % shards}"


class _ByDebit(GlobalSecondaryIndex):
    class Meta:
        index_name = "by-debit"
        projection = AllProjection()

    debit_key = UnicodeAttribute(hash_key=True)
    sort_key = UnicodeAttribute(range_key=True)


class _ByCredit(GlobalSecondaryIndex):
    class Meta:
        index_name = "by-credit"
        projection = AllProjection()

    credit_key = UnicodeAttribute(hash_key=True)
    sort_key = UnicodeAttribute(range_key=True)


class _ByTime(GlobalSecondaryIndex):
    class Meta:
        index_name = "by-time"
        projection = IncludeProjection(list(TIME_PROJECTION))

    time_key = UnicodeAttribute(hash_key=True)
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
    debit_key = UnicodeAttribute(null=True)
    credit_key = UnicodeAttribute(null=True)
    time_key = UnicodeAttribute(null=True)

    by_debit = _ByDebit()
    by_credit = _ByCredit()
    by_time = _ByTime()


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
    """What the ledger check keeps between runs, one item each:

    - ``latest``: the latest report (the daily schedule and the CLI overwrite it);
    - ``checkpoint``: the cut the check has folded up to, the per-asset totals there, the
      transfer findings it carries and the accounts it re-verifies (``report`` holds the JSON),
      and the lease of a running check (``lease_id``/``lease_until``);
    - ``acct|<physical>|<asset>``: one account's totals at its last checked cut (``state``).
    """
    Meta = make_meta("ledger-checks")

    check_id = UnicodeAttribute(hash_key=True)
    checked_at = UnicodeAttribute(null=True)
    report = UnicodeAttribute(null=True)   # JSON
    state = UnicodeAttribute(null=True)    # JSON
    cut = UnicodeAttribute(null=True)
    lease_id = UnicodeAttribute(null=True)
    lease_until = UnicodeAttribute(null=True)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _state_id(key: tuple[str, str]) -> str:
    return f"acct|{key[0]}|{key[1]}"


def _state_json(state: AccountState) -> str:
    out: dict[str, Any] = {"t": state.through, "v": list(state.totals.as_dict().values())}
    if state.prev_through is not None and state.prev_totals is not None:
        out.update(pt=state.prev_through, pv=list(state.prev_totals.as_dict().values()))
    return _dumps(out)


def _state_from(raw: str) -> AccountState:
    data = json.loads(raw)
    prev = Totals(*data["pv"]) if "pv" in data else None
    return AccountState(data["t"], Totals(*data["v"]), data.get("pt"), prev)


class DynamoCheckReports:
    """The ledger check's own items (``CheckReports``): reads are strongly consistent, the
    account states go in BatchWriteItem puts (1 WRU each), the checkpoint under a lease."""
    LATEST = "latest"
    CHECKPOINT = "checkpoint"

    def save(self, report: dict[str, Any]) -> None:
        LedgerCheckItem(self.LATEST, checked_at=report["checked_at"], report=_dumps(report)).save()

    def latest(self) -> dict[str, Any] | None:
        try:
            return json.loads(LedgerCheckItem.get(self.LATEST, consistent_read=True).report)
        except LedgerCheckItem.DoesNotExist:
            return None

    def begin(self, run_id: str, now: str, until: str) -> dict[str, Any] | None:
        """Take the lease (one UpdateItem that also returns the checkpoint); ``CheckRunning``
        while another run holds an unexpired one."""
        item = LedgerCheckItem(self.CHECKPOINT)
        condition = LedgerCheckItem.lease_until.does_not_exist() | (LedgerCheckItem.lease_until < now)
        try:
            item.update(actions=[LedgerCheckItem.lease_id.set(run_id), LedgerCheckItem.lease_until.set(until)],
                        condition=condition)
        except UpdateError as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                raise CheckRunning() from None
            raise
        return json.loads(item.report) if item.report else None

    def account_states(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], AccountState]:
        if not keys:
            return {}
        ids = {_state_id(key): key for key in keys}
        return {ids[item.check_id]: _state_from(item.state)
                for item in LedgerCheckItem.batch_get(list(ids), consistent_read=True)}

    def save_account_states(self, states: dict[tuple[str, str], AccountState]) -> None:
        with LedgerCheckItem.batch_write() as batch:
            for key, state in states.items():
                batch.save(LedgerCheckItem(_state_id(key), state=_state_json(state)))

    def commit(self, checkpoint: dict[str, Any], run_id: str) -> None:
        """Store the new checkpoint and release the lease, if this run still holds it."""
        try:
            LedgerCheckItem(self.CHECKPOINT, cut=checkpoint["cut"], report=_dumps(checkpoint)).save(
                condition=LedgerCheckItem.lease_id == run_id)
        except PutError as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                raise CheckRunning() from None
            raise


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
        reversed_by=record.reversed_by, debit_key=statement_key(record.debit_account, record.debit_shard),
        credit_key=statement_key(record.credit_account, record.credit_shard),
        time_key=time_key(record.id, record.sort_key))


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


def _to_window_record(item: LedgerTransferItem) -> TransferRecord:
    """A ``by-time`` entry: the immutable fields (``TIME_PROJECTION``); what it does not carry
    is left empty — the check reads markers from the transfers they are on."""
    return TransferRecord(
        id=item.id, op=item.op, kind="", debit_account=item.debit_account, credit_account=item.credit_account,
        asset=item.asset, amount=int(item.amount), status="", created_at="", sort_key=item.sort_key,
        content_hash="", debit_shard=_int_or_none(item.debit_shard), credit_shard=_int_or_none(item.credit_shard),
        pending_id=item.pending_id, pending_amount=_int_or_none(item.pending_amount), reversal_of=item.reversal_of,
        linked=tuple(item.linked or ()))


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

    def statement(self, keys: list[str], before: str | None, limit: int) -> list[TransferRecord]:
        rows: dict[str, TransferRecord] = {}
        for key in keys:
            for index in (LedgerTransferItem.by_debit, LedgerTransferItem.by_credit):
                condition = LedgerTransferItem.sort_key < before if before else None
                for item in self._io(lambda index=index, condition=condition, key=key: list(index.query(
                        key, range_key_condition=condition, scan_index_forward=False, limit=limit))):
                    rows[item.id] = _to_record(item)  # a transfer between two shards of one account: once
        return sorted(rows.values(), key=lambda record: record.sort_key, reverse=True)[:limit]

    def time_statement(self, account_id: str, before: str | None, limit: int, first_year: int,
                       last_year: int) -> list[TransferRecord]:
        """An unindexed account's statement from ``by-time``: per year, newest first, each
        shard's entries naming the account (a filter: the escrow is on nearly every transfer),
        then the page's items read in full (their markers are not projected)."""
        found: dict[str, str] = {}
        account = (LedgerTransferItem.debit_account == account_id) | (LedgerTransferItem.credit_account == account_id)
        for year in range(last_year, first_year - 1, -1):
            for shard in range(TIME_SHARDS):
                condition = LedgerTransferItem.sort_key < before if before else None
                query = LedgerTransferItem.by_time.query(
                    f"{year:04d}#{shard}", range_key_condition=condition, filter_condition=account,
                    scan_index_forward=False, page_size=limit)
                for item in self._io(lambda query=query: _first(query, limit)):
                    found[item.id] = item.sort_key
            if len(found) >= limit:
                break
        ids = sorted(found, key=found.__getitem__, reverse=True)[:limit]
        full = self.get_transfers(ids)
        return [full[i] for i in ids if i in full]

    def transfers_between(self, since: str, until: str) -> list[TransferRecord]:
        """Every transfer with ``since <= sort_key < until`` (``by-time``: one Query per shard
        and year of the range; eventually consistent, as every index read)."""
        rows: list[TransferRecord] = []
        condition = LedgerTransferItem.sort_key.between(since, until)
        for year in range(int(since[:4]), int(until[:4]) + 1):
            for shard in range(TIME_SHARDS):
                rows.extend(self._io(lambda year=year, shard=shard: [
                    _to_window_record(item) for item in LedgerTransferItem.by_time.query(
                        f"{year:04d}#{shard}", range_key_condition=condition)
                    if item.sort_key < until]))
        rows.sort(key=lambda record: record.sort_key)
        return rows

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


def _first(query: Iterable[T], limit: int) -> list[T]:
    out = []
    for item in query:
        out.append(item)
        if len(out) >= limit:
            break
    return out


class _Cancelled(Exception):
    def __init__(self, failed: list[Any], conflict_only: bool, detail: str):
        self.failed = failed
        self.conflict_only = conflict_only
        self.detail = detail
        super().__init__(detail)
