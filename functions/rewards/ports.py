"""What the rewards use cases need from outside: their store, the ledger, identity (birth years
for the minimum age; the merchant role of a login) and 志愿汇.

Writes that must commit with ledger legs are returned as objects with ``add_to(transaction)``
and handed to the ledger's ``also=``: the state and its credits move in one transaction.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Mapping, Protocol, Sequence

from functions.ledger.model import ExpiringCredit, PointKind, Totals, TransferRecord
from functions.rewards.model import (CatalogueItem, Exchange, Merchant, PartnerAnswer, StatementLine,
                                     Voucher)


class RewardsStore(Protocol):
    def commit(self, writes: Sequence[Any]) -> None:
        """The writes in one transaction (no ledger legs); ``InvalidState`` when a condition failed."""

    # merchants
    def get_merchant(self, merchant_id: str) -> Merchant | None: ...

    def new_merchant(self, merchant: Merchant) -> Any:
        """A write storing a new merchant (condition: the id is new)."""

    # catalogue
    def get_item(self, item_id: str) -> CatalogueItem | None:
        """Strongly consistent."""

    def new_item(self, item: CatalogueItem) -> Any:
        """A write storing a new item (condition: the id is new)."""

    def change_item(self, item: CatalogueItem, changes: Mapping[str, Any]) -> Any:
        """A write of ``changes``, conditional on ``outstanding`` being what ``item`` read."""

    def catalogue(self, limit: int, cursor: dict | None) -> tuple[list[CatalogueItem], dict | None]:
        """Every item, newest first (one Query of the catalogue index)."""

    def take_unit(self, item_id: str) -> Any:
        """A write reserving one unit: ``stock_left`` − 1, ``outstanding`` + 1 (condition: a unit is left)."""

    def return_unit(self, item_id: str) -> Any:
        """A write giving a reserved unit back (cancel, expiry)."""

    def hand_over_unit(self, item_id: str) -> Any:
        """A write: a reserved unit was redeemed (``outstanding`` − 1, ``redeemed`` + 1)."""

    def take_allowance(self, item_id: str, holder_id: str, limit: int) -> Any:
        """A write counting one more voucher of the item for the holder (condition: under ``limit``)."""

    def return_allowance(self, item_id: str, holder_id: str) -> Any: ...

    def allowance_used(self, item_id: str, holder_id: str) -> int: ...

    # vouchers
    def get_voucher(self, voucher_id: str) -> Voucher | None: ...

    def new_voucher(self, voucher: Voucher) -> list[Any]:
        """Writes storing a new voucher and its code (conditions: both new)."""

    def voucher_of_code(self, code: str) -> tuple[str, str] | None:
        """(voucher id, merchant id) of a code."""

    def change_voucher(self, voucher: Voucher, changes: Mapping[str, Any]) -> Any:
        """A write of ``changes``, conditional on the status ``voucher`` was read in."""

    def vouchers_of(self, holder_id: str, limit: int, cursor: dict | None) -> tuple[list[Voucher], dict | None]: ...

    def vouchers_expiring(self, until: datetime) -> Iterator[Voucher]:
        """Issued vouchers whose ``expires_at`` is at or before ``until``."""

    # exchanges
    def get_exchange(self, exchange_id: str) -> Exchange | None: ...

    def get_exchanges(self, exchange_ids: Sequence[str]) -> dict[str, Exchange]: ...

    def new_exchange(self, exchange: Exchange) -> Any: ...

    def change_exchange(self, exchange: Exchange, changes: Mapping[str, Any]) -> Any:
        """A write of ``changes``, conditional on the status ``exchange`` was read in."""

    def record_late_answer(self, exchange_id: str, answer: PartnerAnswer, at: datetime) -> None: ...

    def log_answer(self, answer: PartnerAnswer, effect: str, at: datetime) -> Any:
        """A write of the answer into the exchange's answer log (every answer is kept)."""

    def answers(self, exchange_id: str) -> list[tuple[PartnerAnswer, str]]:
        """The logged answers of an exchange, oldest first, with their effect."""

    def exchanges_due(self, until: datetime) -> Iterator[Exchange]:
        """Pending exchanges whose timeout is at or before ``until``."""

    def exchanges_of_day(self, day: str) -> list[Exchange]: ...


class Ledger(Protocol):
    """The ledger API rewards uses (``functions.ledger.service.Ledger``)."""

    point_kinds: Mapping[str, PointKind]

    def point_kind(self, asset: str) -> PointKind: ...

    def transfer(self, transfer_id: str, debit: str, credit: str, asset: str = ..., amount: int = 0,
                 kind: str = ..., memo: str = ..., actor: str | None = None, request_id: str | None = None,
                 also: Sequence[Any] = ()) -> TransferRecord: ...

    def hold(self, transfer_id: str, debit: str, credit: str = ..., asset: str = ..., amount: int = 0,
             kind: str = ..., memo: str = ..., actor: str | None = None, request_id: str | None = None,
             also: Sequence[Any] = ()) -> TransferRecord: ...

    def post_pending(self, transfer_id: str, pending_id: str, amount: int | None = None,
                     actor: str | None = None, *, kind: str = ..., memo: str = ...,
                     also: Sequence[Any] = ()) -> TransferRecord: ...

    def void_pending(self, transfer_id: str, pending_id: str, actor: str | None = None, reason: str = "",
                     *, kind: str = ..., also: Sequence[Any] = ()) -> TransferRecord: ...

    def execute(self, commands: Sequence[Any], also: Sequence[Any] = ()) -> list[TransferRecord]: ...

    def balances(self, account_id: str) -> dict[str, Totals]: ...

    def statement(self, account_id: str, limit: int = 20, cursor: dict[str, Any] | None = None) -> Any: ...

    def expiring(self, day: str) -> list[ExpiringCredit]: ...

    def expire(self, credit: ExpiringCredit, actor: str = ...) -> ExpiringCredit: ...


class Residents(Protocol):
    """Identity, as rewards needs it."""

    def birth_year(self, household_id: str, resident_id: str) -> int | None: ...

    def role_grant(self, openid: str, role: str) -> Any:
        """A write giving the login of ``openid`` a role, in the caller's transaction."""


class ZyhPartner(Protocol):
    """志愿汇, behind an adapter: ``zyh.HttpZyhPartner`` (HMAC-signed HTTPS) or the local fake."""

    def submit(self, exchange: Exchange) -> PartnerAnswer:
        """Ask the partner to credit the coins; our exchange id is the idempotency key, so
        asking again never makes a second exchange. ``PartnerNoAnswer`` when it does not answer
        in time; ``UpstreamError`` when it could not be asked."""

    def statement(self, day: str) -> list[StatementLine]:
        """The partner's statement of what it credited on ``day``."""
