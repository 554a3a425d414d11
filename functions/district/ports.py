"""What the district use cases need from outside: their store, the ledger, identity (who may
receive), and the hub."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Protocol, Sequence

from functions.core.caller import Caller
from functions.district.model import Incoming, Outgoing


class DistrictStore(Protocol):
    """Every write is returned, not made: it joins the ledger's transaction (``also=``)."""

    def get_outgoing(self, transfer_id: str) -> Outgoing | None: ...

    def get_incoming(self, transfer_id: str) -> Incoming | None: ...

    def statuses(self, direction: str, transfer_ids: Sequence[str]) -> dict[str, str]:
        """id -> status for those of ``transfer_ids`` that exist (one BatchGetItem)."""

    def put_outgoing(self, transfer: Outgoing) -> Any:
        """A write of a new outgoing transfer (only if the id is new)."""

    def resolve_outgoing(self, transfer: Outgoing) -> Any:
        """A write of the outgoing transfer's outcome (only while it is still pending)."""

    def put_incoming(self, transfer: Incoming) -> Any:
        """A write of the decision on an incoming transfer (only if the id is new)."""

    def pending_outgoing(self, older_than: datetime | None = None) -> list[Outgoing]: ...


class Ledger(Protocol):
    def hold(self, transfer_id: str, debit: str, credit: str = ..., asset: str = ..., amount: int = 0,
             kind: str = ..., memo: str = ..., actor: str | None = None, request_id: str | None = None,
             also: Sequence[Any] = ()) -> Any: ...

    def post_pending(self, transfer_id: str, pending_id: str, amount: int | None = None,
                     actor: str | None = None, *, kind: str = ..., memo: str = ...,
                     also: Sequence[Any] = ()) -> Any: ...

    def void_pending(self, transfer_id: str, pending_id: str, actor: str | None = None, reason: str = "",
                     *, kind: str = ..., also: Sequence[Any] = ()) -> Any: ...

    def transfer(self, transfer_id: str, debit: str, credit: str, asset: str = ..., amount: int = 0,
                 kind: str = ..., memo: str = ..., actor: str | None = None, request_id: str | None = None,
                 also: Sequence[Any] = (), cap_excess: str = "pool") -> Any: ...

    def execute(self, commands: Sequence[Any], also: Sequence[Any] = ()) -> Any: ...

    def balances(self, account_id: str) -> Mapping[str, Any]: ...

    def get_transfer(self, transfer_id: str) -> Any: ...


@dataclass(frozen=True)
class Person:
    """What the district domain may know of a resident: ids, status and the keyed phone hash."""
    resident_id: str
    household_id: str
    verified: bool
    phone_hash: str | None


class People(Protocol):
    """Identity, as far as cross-community transfers need it (bootstrap adapts the service)."""

    def caller(self, caller: Caller) -> Person: ...

    def resident(self, resident_id: str) -> Person | None: ...

    def household_exists(self, household_id: str) -> bool: ...

    def by_phone_hash(self, phone_hash: str) -> Person | None:
        """The verified resident with this keyed phone hash."""

    def remote_declarations(self, household_id: str, community: str) -> list[str]:
        """Households of ``community`` this household declared relatives."""

    def declared_remote(self, household_id: str, community: str, remote_household_id: str) -> bool: ...


class Hub(Protocol):
    """The district hub, over signed HTTP. Each call answers the hub's current state of the
    transfer, or raises (no answer: nothing may be concluded)."""

    def submit(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """``{"id", "status": "forwarding"|"credited"|"refused", "failure_code"?}``"""

    def position(self) -> dict[str, Any]:
        """``{"positions": {asset: n}, "open": [{"id", "source", "destination", "asset", "amount", "status"}]}``"""
