"""In-memory twin of the ledger store: dicts behind a lock; a commit checks every condition
first, then applies all (the same all-or-nothing semantics as one TransactWriteItems)."""
from __future__ import annotations

import copy
import threading
from typing import Any, Iterable, Protocol

from functions.ledger.accounts import physical_id
from functions.ledger.reconciliation import AccountState, CheckRunning
from functions.ledger.model import (BalanceRow, CommitHooks, CommitRejected, ExpiringCredit, Plan, Totals,
                                    TransferRecord, apply_bucket, apply_change, balance_holds, bucket_holds,
                                    resolution_holds)


class InMemoryForeignWrite(Protocol):
    """A foreign write the in-memory store can take part in (domain tests only)."""

    def holds_in_memory(self) -> bool: ...

    def apply_in_memory(self) -> None: ...


class InMemoryLedgerStore:
    """Dicts behind a lock; a commit checks every condition first, then applies all."""

    def __init__(self, hooks: CommitHooks | None = None):
        self.hooks = hooks or CommitHooks()
        self._lock = threading.RLock()
        self.transfers: dict[str, TransferRecord] = {}
        self.balances: dict[tuple[str, str], Totals] = {}
        self.buckets: dict[tuple[str, str, str], ExpiringCredit] = {}
        self.commits = 0

    # --- writes ---
    def commit(self, plan: Plan) -> None:
        self.hooks.before_commit(plan)
        with self._lock:
            failed: list[Any] = []
            for record in plan.puts:
                if record.id in self.transfers:
                    failed.append(record)
            for resolution in plan.resolutions:
                if not resolution_holds(resolution, self.transfers.get(resolution.transfer_id)):
                    failed.append(resolution)
            for change in plan.balances:
                if not balance_holds(change, self.balances.get((change.physical, change.asset))):
                    failed.append(change)
            for bucket in plan.buckets:
                if not bucket_holds(bucket, self.buckets.get(bucket.key)):
                    failed.append(bucket)
            for write in plan.foreign:
                if not hasattr(write, "holds_in_memory"):
                    raise TypeError("the in-memory ledger store only takes InMemoryForeignWrite objects")
                if not write.holds_in_memory():
                    failed.append(write)
            if failed:
                raise CommitRejected(failed)
            for record in plan.puts:
                self.transfers[record.id] = record
            for resolution in plan.resolutions:
                current = self.transfers[resolution.transfer_id]
                if resolution.reversal:
                    self.transfers[resolution.transfer_id] = current.with_changes(reversed_by=resolution.by)
                else:
                    self.transfers[resolution.transfer_id] = current.with_changes(
                        status=resolution.status, resolved_by=resolution.by,
                        posted_amount=resolution.posted_amount)
            for change in plan.balances:
                if change.has_deltas:
                    key = (change.physical, change.asset)
                    self.balances[key] = apply_change(self.balances.get(key), change)
            for bucket in plan.buckets:
                self.buckets[bucket.key] = apply_bucket(self.buckets.get(bucket.key), bucket)
            for write in plan.foreign:
                write.apply_in_memory()
            self.commits += 1
        self.hooks.after_commit(plan)

    # --- reads ---
    def get_transfer(self, transfer_id: str) -> TransferRecord | None:
        with self._lock:
            return self.transfers.get(transfer_id)

    def get_transfers(self, transfer_ids: list[str]) -> dict[str, TransferRecord]:
        with self._lock:
            return {tid: self.transfers[tid] for tid in transfer_ids if tid in self.transfers}

    def get_balances(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Totals]:
        with self._lock:
            return {key: self.balances[key] for key in keys if key in self.balances}

    def account_balances(self, physical: str) -> dict[str, Totals]:
        with self._lock:
            return {asset: totals for (account, asset), totals in self.balances.items() if account == physical}

    def statement(self, keys: list[str], before: str | None, limit: int) -> list[TransferRecord]:
        with self._lock:
            rows = [r for r in self.transfers.values()
                    if {physical_id(r.debit_account, r.debit_shard), physical_id(r.credit_account, r.credit_shard)}
                    & set(keys) and (before is None or r.sort_key < before)]
        rows.sort(key=lambda r: r.sort_key, reverse=True)
        return rows[:limit]

    def time_statement(self, account_id: str, before: str | None, limit: int, first_year: int,
                       last_year: int) -> list[TransferRecord]:
        with self._lock:
            rows = [r for r in self.transfers.values()
                    if account_id in (r.debit_account, r.credit_account) and (before is None or r.sort_key < before)
                    and first_year <= int(r.sort_key[:4]) <= last_year]
        rows.sort(key=lambda r: r.sort_key, reverse=True)
        return rows[:limit]

    def transfers_between(self, since: str, until: str) -> list[TransferRecord]:
        # As the time index: the fields a transfer never changes, markers left empty.
        with self._lock:
            rows = [r.with_changes(kind="", status="", created_at="", content_hash="", memo="", actor=None,
                                   request_id=None, reason=None, resolved_by=None, posted_amount=None,
                                   reversed_by=None)
                    for r in self.transfers.values() if since <= r.sort_key < until]
        return sorted(rows, key=lambda r: r.sort_key)

    def account_seen(self, account_id: str, physicals: list[str]) -> bool:
        with self._lock:
            return any(account in physicals for account, _ in self.balances)

    def expiring(self, day: str) -> list[ExpiringCredit]:
        with self._lock:
            return [credit for (bucket_day, _, _), credit in sorted(self.buckets.items()) if bucket_day == day]

    def scan_transfers(self) -> Iterable[TransferRecord]:
        with self._lock:
            return list(self.transfers.values())

    def scan_balances(self) -> Iterable[BalanceRow]:
        with self._lock:
            return [BalanceRow(account, asset, totals) for (account, asset), totals in self.balances.items()]


class InMemoryCheckReports:
    """In-memory twin of ``dynamo.DynamoCheckReports``: the reports, the checkpoint under a
    lease, the account states."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.checkpoint: dict[str, Any] | None = None
        self.lease: tuple[str, str] | None = None
        self.states: dict[tuple[str, str], AccountState] = {}

    def save(self, report: dict[str, Any]) -> None:
        self.reports.append(report)

    def latest(self) -> dict[str, Any] | None:
        return self.reports[-1] if self.reports else None

    def begin(self, run_id: str, now: str, until: str) -> dict[str, Any] | None:
        if self.lease is not None and self.lease[1] >= now:
            raise CheckRunning()
        self.lease = (run_id, until)
        return copy.deepcopy(self.checkpoint)

    def account_states(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], AccountState]:
        return {key: self.states[key] for key in keys if key in self.states}

    def save_account_states(self, states: dict[tuple[str, str], AccountState]) -> None:
        self.states.update(states)

    def commit(self, checkpoint: dict[str, Any], run_id: str) -> None:
        if self.lease is None or self.lease[0] != run_id:
            raise CheckRunning()
        self.checkpoint = copy.deepcopy(checkpoint)
        self.lease = None
