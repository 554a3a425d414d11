"""The ledger's storage port and its in-memory implementation.

``LedgerStore`` is what the domain needs: commit a plan atomically (all conditions checked,
every failed one reported, nothing applied unless all hold), a few keyed reads, the statement
query and full scans for reconciliation. ``dynamo.DynamoLedgerStore`` is the real adapter;
``InMemoryLedgerStore`` has the same transactional semantics for fast domain tests.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable, Protocol

from functions.ledger.model import (PENDING, POSTED, BalanceChange, BalanceRow, CommitHooks, CommitRejected,
                                    Plan, Resolution, Totals, TransferRecord)


class LedgerStore(Protocol):
    hooks: CommitHooks

    def commit(self, plan: Plan) -> None:
        """Apply every write of ``plan`` or none; ``CommitRejected`` when a condition fails."""

    def get_transfer(self, transfer_id: str) -> TransferRecord | None: ...

    def get_transfers(self, transfer_ids: list[str]) -> dict[str, TransferRecord]: ...

    def get_balances(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Totals]:
        """(physical, asset) -> totals, for the keys that exist."""

    def account_balances(self, physical: str) -> dict[str, Totals]:
        """asset -> totals of one physical account."""

    def statement(self, account_id: str, before: str | None, limit: int) -> list[TransferRecord]:
        """Up to ``limit`` transfers debiting or crediting ``account_id`` with
        ``sort_key < before``, newest first."""

    def account_seen(self, account_id: str, physicals: list[str]) -> bool:
        """Whether the ledger has ever recorded anything for the account."""

    def scan_transfers(self) -> Iterable[TransferRecord]: ...

    def scan_balances(self) -> Iterable[BalanceRow]: ...


def resolution_holds(resolution: Resolution, current: TransferRecord | None) -> bool:
    """The condition of a ``Resolution`` against the stored transfer (shared by the fake and
    documentation of what the DynamoDB condition expresses)."""
    if current is None:
        return False
    if resolution.reversal:
        return current.status == POSTED and current.reversed_by is None
    return current.status == PENDING and current.resolved_by is None


def balance_holds(change: BalanceChange, current: Totals | None) -> bool:
    available = current.available if current else 0
    if change.min_available is not None and available < change.min_available:
        return False
    if change.max_available is not None and available > change.max_available:
        return False
    return True


def apply_change(current: Totals | None, change: BalanceChange) -> Totals:
    base = current or Totals()
    return Totals(
        debits_posted=base.debits_posted + change.debits_posted,
        credits_posted=base.credits_posted + change.credits_posted,
        debits_pending=base.debits_pending + change.debits_pending,
        credits_pending=base.credits_pending + change.credits_pending,
        available=base.available + change.available_delta,
    )


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

    def statement(self, account_id: str, before: str | None, limit: int) -> list[TransferRecord]:
        with self._lock:
            rows = [r for r in self.transfers.values()
                    if account_id in (r.debit_account, r.credit_account) and (before is None or r.sort_key < before)]
        rows.sort(key=lambda r: r.sort_key, reverse=True)
        return rows[:limit]

    def account_seen(self, account_id: str, physicals: list[str]) -> bool:
        with self._lock:
            return any(account in physicals for account, _ in self.balances)

    def scan_transfers(self) -> Iterable[TransferRecord]:
        with self._lock:
            return list(self.transfers.values())

    def scan_balances(self) -> Iterable[BalanceRow]:
        with self._lock:
            return [BalanceRow(account, asset, totals) for (account, asset), totals in self.balances.items()]
