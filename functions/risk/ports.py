"""What the risk use cases need from outside: their counters and flags, the settled requests
(requests' store) and the ledger (reversals when an admin resolves a flag that way)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from functions.ledger.model import TransferRecord
from functions.requests.model import ServiceRequest
from functions.risk.model import Counter, Finding, Flag, RiskLimits, Settlement


class CounterStore(Protocol):
    def volunteer_day(self, key: str, minutes: int, limits: RiskLimits) -> Any:
        """A write joining the settlement's transaction: ADD ``minutes`` and one service to the
        volunteer's day, on the condition that neither passes its limit. Its ``refusal()`` names
        the limit when the condition failed."""

    def pair_day(self, key: str, limits: RiskLimits) -> Any:
        """The same for the pair of households: ADD one service under ``pair_daily``."""

    def get(self, key: str) -> Counter: ...


class FlagStore(Protocol):
    def record(self, settlement: Settlement) -> None:
        """Remember a settlement under its pair (idempotent: the same settlement once)."""

    def recent(self, pair: str, since: datetime) -> list[Settlement]: ...

    def reviewed_through(self, pair: str) -> dict[str, str]:
        """kind → sort key of the newest settlement an admin already reviewed for the pair."""

    def raise_or_update(self, finding: Finding, at: datetime) -> Flag:
        """The one open flag of (kind, pair): created, or its count and requests updated."""

    def get(self, flag_id: str) -> Flag | None: ...

    def by_status(self, status: str, limit: int, cursor: dict | None) -> tuple[list[Flag], dict | None]: ...

    def resolve(self, flag: Flag) -> bool:
        """Store ``flag`` as resolved if it is still open (False otherwise); the pair's next
        findings of its kind count only settlements after ``flag.through``."""


class SettledRequests(Protocol):
    def get(self, request_id: str) -> ServiceRequest: ...


class ReversalLedger(Protocol):
    def reverse_transfer(self, original_id: str, reason: str, actor: str) -> TransferRecord:
        """Reverse a posted transfer (a settlement: both legs); ``AlreadyReversed`` if done."""

    def get_transfer(self, transfer_id: str) -> TransferRecord | None: ...
