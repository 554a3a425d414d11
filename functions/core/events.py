"""Domain events: what happened, written in the same transaction as the change itself.

A use case that changes state builds the event (``new_event``) and hands the outbox's write of
it to the store together with its own writes, so the state and its event commit together or
not at all (the transactional-outbox pattern). After the commit the relay delivers it at least
once to every queue subscribed to its type (``core.messaging.QueueSpec.events``); see
``functions/adapters/outbox.py`` for how, and why there is no publish a crash could lose.

An event's id is derived from its type, its subject and an optional discriminator, so a use
case that is retried after a crash writes the same event again (and the outbox's condition
makes it one): consumers dedupe by event id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Protocol, Sequence

from functions.core import clock
from functions.core.ids import derived_id
from functions.core.messaging import PoisonMessage

MAX_EVENT_TYPE = 64


@dataclass(frozen=True)
class DomainEvent:
    id: str
    type: str                      # "<noun>.<past tense>", e.g. "request.posted"
    subject: str                   # the id of what it is about
    occurred_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)  # ids and figures, never personal data

    def message(self) -> dict[str, Any]:
        """The queue message: what every consumer receives."""
        return {"event_id": self.id, "type": self.type, "subject": self.subject,
                "occurred_at": clock.isoformat(self.occurred_at), "data": dict(self.data)}


def new_event(type: str, subject: str, occurred_at: datetime, data: Mapping[str, Any] | None = None,
              discriminator: str = "") -> DomainEvent:
    return DomainEvent(id=derived_id("evt", type, subject, discriminator), type=type, subject=subject,
                       occurred_at=occurred_at, data=dict(data or {}))


class EventError(PoisonMessage):
    """A message that is not an event of ours: no retry can fix it (it ends in the DLQ)."""


def parse_event(message: Mapping[str, Any]) -> DomainEvent:
    try:
        event_id, event_type, subject = message["event_id"], message["type"], message["subject"]
        occurred_at = clock.parse_iso(message["occurred_at"])
        data = message.get("data") or {}
    except (KeyError, TypeError, ValueError):
        raise EventError("not a domain event") from None
    if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in (event_id, event_type, subject)) \
            or not isinstance(data, dict):
        raise EventError("not a domain event")
    return DomainEvent(id=event_id, type=event_type, subject=subject, occurred_at=occurred_at, data=data)


class Outbox(Protocol):
    """The port use cases write events through; each store joins the write to its transaction."""

    def write(self, event: DomainEvent) -> Any:
        """A write of ``event`` that takes part in the caller's transaction (``also=``)."""


class EventRelay(Protocol):
    """After a commit: deliver these events now. Never raises: what it cannot deliver stays in
    the outbox, and the relay's sweep delivers it later."""

    def dispatch(self, events: Sequence[DomainEvent]) -> None: ...
