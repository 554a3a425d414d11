"""The event outbox and its relay: how a domain event written with a state change reaches its
consumers at least once.

Design (and why not DynamoDB Streams): each event is one item of the ``events`` table, written
by the same ``TransactWriteItems`` as the change it reports (``Outbox.write`` returns that
write). After the commit the use case asks the relay to ``dispatch`` the events it wrote: the
relay sends each to every queue subscribed to its type and then deletes the item. If the
process dies or SQS fails anywhere after the commit, the item simply stays, and the ``relay``
schedule (every minute) sends whatever is older than ``SWEEP_GRACE`` — so no event is lost,
and an event may be sent twice (consumers dedupe by event id).

A Streams relay would cost one write less per event, but it needs a stream-triggered function
that neither Chalice's local server nor moto runs, its records live 24 hours (a relay broken
for a day loses events; an outbox item waits), and it would make the local runtime and the
tests deliver events differently from AWS. Here the same code relays on AWS, in ``make run``
and in tests. Cost per event: one transactional put (2 WRU ≤ 1 KB), one delete (1 WRU), one
SendMessage per subscribed queue; the sweep is one Query per shard per minute.

Items are spread over ``SHARDS`` partitions (the event id's hash) so one hot partition does not
cap the write rate; an item is keyed by its event id, so a use case retried after a crash
overwrites its own event instead of adding a second one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Sequence

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from functions.adapters.dynamo import iso, make_meta, table
from functions.core import clock
from functions.core.events import DomainEvent
from functions.core.ids import content_hash
from functions.core.messaging import Publisher, subscribers
from functions.core.observability import count, logger

SHARDS = 8
SWEEP_GRACE = timedelta(seconds=30)   # the eager dispatch normally deletes an item within ms
ALARM_AFTER_ATTEMPTS = 10             # sweeps that failed to send it: logged as an error


def shard_of(event_id: str) -> str:
    return str(int(content_hash(event_id)[:8], 16) % SHARDS)


@table
class OutboxEventItem(Model):
    Meta = make_meta("events")
    shard = UnicodeAttribute(hash_key=True)
    event_id = UnicodeAttribute(range_key=True)
    type = UnicodeAttribute()
    subject = UnicodeAttribute()
    occurred_at = UnicodeAttribute()
    data = UnicodeAttribute()                 # JSON
    attempts = NumberAttribute(default=0)


def _item(event: DomainEvent) -> OutboxEventItem:
    return OutboxEventItem(shard_of(event.id), event.id, type=event.type, subject=event.subject,
                           occurred_at=iso(event.occurred_at),
                           data=json.dumps(dict(event.data), ensure_ascii=False, separators=(",", ":")))


def _event(item: OutboxEventItem) -> DomainEvent:
    return DomainEvent(id=item.event_id, type=item.type, subject=item.subject,
                       occurred_at=clock.parse_iso(item.occurred_at), data=json.loads(item.data))


@dataclass(frozen=True)
class EventWrite:
    """The outbox item of one event, as a write of the caller's transaction."""
    event: DomainEvent

    def add_to(self, transaction: TransactWrite) -> None:
        transaction.save(_item(self.event))


class DynamoOutbox:
    """``core.events.Outbox`` on the ``events`` table."""

    def write(self, event: DomainEvent) -> EventWrite:
        return EventWrite(event)


class Relay:
    """``core.events.EventRelay``: sends events to their subscribed queues, then forgets them."""

    def __init__(self, publisher: Publisher, now: Callable[[], datetime] = clock.now):
        self.publisher = publisher
        self.now = now

    def dispatch(self, events: Sequence[DomainEvent]) -> None:
        for event in events:
            try:
                self._send(event)
            except Exception as error:  # noqa: BLE001 - the sweep delivers what this could not
                logger.warning("event left for the relay sweep",
                               extra={"event_id": event.id, "type": event.type, "error": type(error).__name__})
                count("EventRelayDeferred")

    def _send(self, event: DomainEvent) -> None:
        message = event.message()
        for queue in subscribers(event.type):
            self.publisher.publish(queue, message, deduplication_id=event.id)
        OutboxEventItem(shard_of(event.id), event.id).delete()

    def pending(self, older_than: datetime | None = None) -> Iterable[OutboxEventItem]:
        cutoff = iso(older_than) if older_than is not None else None
        for shard in range(SHARDS):
            for item in OutboxEventItem.query(str(shard), consistent_read=True):
                if cutoff is None or item.occurred_at <= cutoff:
                    yield item

    def sweep(self, grace: timedelta = SWEEP_GRACE) -> dict[str, int]:
        """Send every event the eager dispatch did not (a crash, SQS down); the schedule's job."""
        sent = failed = 0
        for item in list(self.pending(self.now() - grace)):
            try:
                self._send(_event(item))
                sent += 1
            except Exception as error:  # noqa: BLE001 - counted, retried by the next sweep
                failed += 1
                attempts = int(item.attempts or 0) + 1
                OutboxEventItem(item.shard, item.event_id).update(actions=[OutboxEventItem.attempts.set(attempts)])
                log = logger.error if attempts >= ALARM_AFTER_ATTEMPTS else logger.warning
                log("relay could not send event", extra={"event_id": item.event_id, "type": item.type,
                                                         "attempts": attempts, "error": type(error).__name__})
        if sent:
            count("EventRelaySwept", sent)
        if failed:
            count("EventRelayFailed", failed)
        return {"sent": sent, "failed": failed}


def pending_events() -> list[DomainEvent]:
    """Every event still in the outbox (tests, and operators checking the relay)."""
    return [_event(item) for item in Relay(publisher=None).pending()]  # type: ignore[arg-type]

