"""What the activity use cases need from outside: their store, the ledger (awards from
issuance), the rounding of an asset, and a channel for reminders (notifications' one-time
consents, handed in by the composition root)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping, Protocol, Sequence

from functions.activities.model import Activity, CloseResult, Participant
from functions.ledger.model import TransferRecord


class ActivityStore(Protocol):
    def create(self, activity: Activity) -> bool:
        """Store a new activity; False if its id exists (an idempotent replay)."""

    def get(self, activity_id: str) -> Activity:
        """Strongly consistent; NotFound."""

    def page(self, phase: str, now: datetime, limit: int,
             cursor: dict | None) -> tuple[list[Activity], dict | None]: ...

    def starting_between(self, start: datetime, end: datetime) -> Iterable[Activity]: ...

    def participant(self, activity_id: str, resident_id: str) -> Participant | None: ...

    def participants(self, activity_id: str) -> list[Participant]:
        """Every participant (strongly consistent, all pages), ordered by resident id."""

    def sign_up(self, activity: Activity, participant: Participant, previous: Participant | None,
                also: Sequence[Any]) -> None:
        """One transaction: the participant (new, or ``previous`` cancelled signing up again),
        the activity's ``signed_up`` + 1 on the condition that a place is free and it is open,
        and ``also`` (the event). ActivityFull / AlreadySignedUp / InvalidState when refused."""

    def cancel_signup(self, activity: Activity, participant: Participant, also: Sequence[Any]) -> None: ...

    def check(self, activity: Activity, participant: Participant, changes: Mapping[str, Any]) -> Participant:
        """Check-in/out: ``changes`` if the participant is still as read and the activity open."""

    def mark_closing(self, activity: Activity) -> Activity:
        """Stop every further sign-up and check-in/out (idempotent)."""

    def award_write(self, activity_id: str, resident_id: str, minutes: int, transfer_id: str) -> Any:
        """The participant's award, as a write of the award batch's ledger transaction."""

    def mark_closed(self, activity: Activity, result: CloseResult, actor: str, at: datetime) -> Activity:
        """closing → closed with the result; a concurrent close that got there first wins (its
        result, the same by construction, is returned)."""


class AwardLedger(Protocol):
    def execute(self, commands: Sequence[Any], also: Sequence[Any] = ()) -> list[TransferRecord]: ...


class AssetRules(Protocol):
    def rounding(self, asset: str) -> tuple[tuple[int, int], ...]:
        """The asset's rounding bands for attended time (``model.DEFAULT_ROUNDING`` shape)."""


class ReminderChannel(Protocol):
    def already_sent(self, keys: Iterable[str]) -> set[str]:
        """Which reminder keys were claimed before (one batch read)."""

    def remind(self, key: str, participant: Participant, data: Mapping[str, str], page: str) -> str:
        """Send one reminder at most once per key, only with the participant's consent; the
        outcome (sent / skipped / refused / failed / retry / already)."""
