"""What the ledger's use cases need from storage: commit a plan atomically (all conditions
checked, every failed one reported, nothing applied unless all hold), a few keyed reads, the
statement query and full scans for reconciliation.

``dynamo.DynamoLedgerStore`` is the real adapter; ``tests/fakes/ledger.py`` has an in-memory
twin with the same transactional semantics for fast domain tests.
"""
from __future__ import annotations

from typing import Any, Iterable, Protocol

from functions.core.caller import Caller
from functions.ledger.accounts import Account
from functions.ledger.model import BalanceRow, CommitHooks, ExpiringCredit, Plan, Totals, TransferRecord
from functions.ledger.reconciliation import CheckState


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

    def statement(self, keys: list[str], before: str | None, limit: int) -> list[TransferRecord]:
        """Up to ``limit`` transfers debiting or crediting one of the physical accounts ``keys``
        (an account, or a sharded account's shards) with ``sort_key < before``, newest first."""

    def time_statement(self, account_id: str, before: str | None, limit: int, first_year: int,
                       last_year: int) -> list[TransferRecord]:
        """The same for an account without statement entries (``UNINDEXED_ACCOUNTS``), from the
        time index, years ``last_year`` down to ``first_year``."""

    def transfers_between(self, since: str, until: str) -> list[TransferRecord]:
        """Every transfer with ``since <= sort_key < until``, oldest first, with the fields a
        transfer never changes (markers empty): what the incremental check folds."""

    def account_seen(self, account_id: str, physicals: list[str]) -> bool:
        """Whether the ledger has ever recorded anything for the account."""

    def expiring(self, day: str) -> list[ExpiringCredit]:
        """Every expiry bucket of ``day`` (closed ones too)."""

    def scan_transfers(self) -> Iterable[TransferRecord]: ...

    def scan_balances(self) -> Iterable[BalanceRow]: ...


class AccountOwners(Protocol):
    """Who owns the accounts: what the credit routes need to know about people (identity
    implements it; the ledger never reads another domain's tables)."""

    def recipient(self, caller: Caller, kind: str, target_id: str) -> str:
        """The account ``kind`` ("household_id" / "resident_id") ``target_id`` names, if the
        caller may pay it (own household, declared relatives); NotFound / NotRelative otherwise."""

    def shares_household(self, caller: Caller, resident_id: str) -> bool:
        """Whether the resident is a member of the caller's household."""

    def exists(self, account: Account) -> bool:
        """Whether a resident or household account names someone registered."""


class CheckReports(CheckState, Protocol):
    """Where the scheduled and command-line checks leave their reports (the admin endpoint reads
    the latest) and the incremental check its running state (``reconciliation.CheckState``)."""

    def save(self, report: dict[str, Any]) -> None: ...

    def latest(self) -> dict[str, Any] | None: ...


class CrossCommunity(Protocol):
    """Transfers to another community of the district (通存通兑): the district domain implements
    it; the ledger's route hands it the validated body and the transfer id it derived from the
    Idempotency-Key (the same id a local transfer would get, so one key is one transfer)."""

    def send(self, caller: Caller, transfer_id: str, body: dict) -> dict:
        """``{"id", "status": "pending"|"posted"|"failed"}``; refusals at home raise (422)."""
