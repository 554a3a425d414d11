"""What the request use cases need from outside: their stores, the ledger, the other domains
(through the methods named here; the composition root hands in who implements them)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Protocol, Sequence

from functions.core.caller import Caller
from functions.ledger.model import TransferRecord
from functions.requests.model import Category, ServiceRequest


class RequestStore(Protocol):
    def get(self, request_id: str) -> ServiceRequest:
        """The request (strongly consistent); NotFound."""

    def find(self, request_id: str, consistent: bool = True) -> ServiceRequest | None:
        """None if absent; ``consistent=False`` reads half the units and may lag a write just made."""

    def get_many(self, request_ids: list[str]) -> dict[str, ServiceRequest]:
        """Eventually consistent batch read: for lists, not decisions."""

    def feed(self, category: str | None, limit: int, cursor: dict | None,
             exclude_household: str | None) -> tuple[list[ServiceRequest], dict | None]: ...

    def by_status(self, status: str, limit: int, cursor: dict | None) -> tuple[list[ServiceRequest], Any]: ...

    def by_household(self, household_id: str, limit: int, cursor: dict | None) -> tuple[list[ServiceRequest], Any]: ...

    def by_volunteer(self, volunteer_id: str, limit: int, cursor: dict | None) -> tuple[list[ServiceRequest], Any]: ...

    def due(self, status: str, until: datetime, since: datetime | None = None) -> Iterator[ServiceRequest]: ...

    def write(self, request: ServiceRequest, changes: dict[str, Any] | None = None,
              expected_status: str | None = None) -> Any:
        """A write of the request that joins another transaction (the ledger's ``also``): a
        new request (``expected_status`` None) or ``changes`` conditional on the status."""

    def transition(self, request: ServiceRequest, changes: dict[str, Any], also: Sequence[Any] = ()) -> ServiceRequest:
        """Apply ``changes`` (and ``also``) in one transaction if the request is still in the
        state it was read in; InvalidState otherwise. Returns the request as changed."""


class CategoryStore(Protocol):
    def load_all(self) -> dict[str, Category]: ...

    def save(self, category: Category, actor: str) -> None: ...


class Ledger(Protocol):
    """The ledger API the lifecycle uses (``functions.ledger.service.Ledger``)."""

    def hold(self, transfer_id: str, debit: str, credit: str = ..., asset: str = ..., amount: int = 0,
             kind: str = ..., memo: str = ..., actor: str | None = None, request_id: str | None = None,
             also: Sequence[Any] = ()) -> TransferRecord: ...

    def void_pending(self, transfer_id: str, pending_id: str, actor: str | None = None, reason: str = "",
                     *, kind: str = ..., also: Sequence[Any] = ()) -> TransferRecord: ...

    def settle_hold(self, settlement_id: str, pending_id: str, payee: str, amount: int,
                    also: Sequence[Any] = (), actor: str | None = None, kind: str = ...,
                    memo: str = "") -> list[TransferRecord]: ...

    def execute(self, commands: Sequence[Any], also: Sequence[Any] = ()) -> list[TransferRecord]: ...


class InsuranceRegister(Protocol):
    def has_record(self, request_id: str) -> bool: ...

    def record_write(self, accepted: ServiceRequest) -> Any:
        """The insurance record of an accepted service, as a write of the accept's transaction
        (None where the community has no policy configured: the queue then retries and alarms)."""


class Households(Protocol):
    def has_member(self, household_id: str | None, member_id: str | None) -> bool: ...

    def act_for(self, caller: Caller, member_id: str) -> Any:
        """``identity.model.ActingFor`` if the caller may act for the member (a named 亲情代理
        of the member's household, or an admin); 400 / 403 otherwise."""


class RiskControls(Protocol):
    def settlement_writes(self, request: ServiceRequest, amount: int, at: datetime) -> list[Any]:
        """The writes that enforce the community's limits on paying ``amount`` for ``request``
        (conditional counters joining the settlement's transaction); refusals the use case can
        tell beforehand are raised here (422 ``OWN_REQUEST``, ``LIMIT_EXCEEDED``)."""


class EvidenceUploads(Protocol):
    def verify_upload(self, request_id: str, key: str) -> None:
        """Raise a 422 unless the photo under ``key`` was uploaded and is acceptable (a refused
        photo is deleted)."""
