"""DynamoDB adapters of notifications: consents, delivery claims and the local outbox.

- ``notification-consents``  openid + template → counters (one UpdateItem per grant/consume).
- ``notification-deliveries`` delivery key → status; the conditional put that makes a message
  go out at most once (``claimed``, left so when it was sent; skipped, refused and failed
  overwrite it). Expires after ``DELIVERY_RETENTION_DAYS`` (long after any retry).
- ``outbox``  what local stages "send": one partition (local volumes only), newest first by
  an increasing sequence; a GSI by recipient for ``?openid=``.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, PutError, UpdateError
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from functions.adapters.dynamo import (checked_cursor, condition_failed as _condition_failed, epoch as _epoch,
                                       index_meta, make_meta, table)
from functions.core import clock
from functions.core.ids import new_id
from functions.notifications.model import (CLAIMED, UNFINISHED, Consent, Delivery, SendResult, SendStatus, TemplateRegistry,
                                           wechat_data)

DELIVERY_RETENTION_DAYS = 180
OUTBOX_RETENTION_DAYS = 30
OUTBOX_PARTITION = "outbox"


# --- consents ----------------------------------------------------------------------------------

@table
class ConsentItem(Model):
    Meta = make_meta("notification-consents")
    openid = UnicodeAttribute(hash_key=True)
    template = UnicodeAttribute(range_key=True)
    available = NumberAttribute(default=0)
    accepted_total = NumberAttribute(default=0)
    refused_total = NumberAttribute(default=0)
    consumed_total = NumberAttribute(default=0)
    updated_at = UnicodeAttribute(null=True)


def _consent(record: ConsentItem) -> Consent:
    return Consent(template=record.template, available=int(record.available or 0),
                   accepted_total=int(record.accepted_total or 0), refused_total=int(record.refused_total or 0),
                   updated_at=clock.parse_iso(record.updated_at) if record.updated_at else None)


class DynamoConsentStore:
    def _update(self, openid: str, template: str, actions: list, condition: Any = None) -> ConsentItem:
        record = ConsentItem(openid, template)
        record.update(actions=actions, condition=condition)  # an UpdateItem creates a missing item
        return record

    def grant(self, openid: str, template: str, at: datetime) -> Consent:
        return _consent(self._update(openid, template, [
            ConsentItem.available.add(1), ConsentItem.accepted_total.add(1),
            ConsentItem.updated_at.set(clock.isoformat(at))]))

    def refuse(self, openid: str, template: str, at: datetime) -> Consent:
        return _consent(self._update(openid, template, [
            ConsentItem.refused_total.add(1), ConsentItem.updated_at.set(clock.isoformat(at))]))

    def consume(self, openid: str, template: str, at: datetime) -> bool:
        try:
            self._update(openid, template, [
                ConsentItem.available.add(-1), ConsentItem.consumed_total.add(1),
                ConsentItem.updated_at.set(clock.isoformat(at))], condition=ConsentItem.available > 0)
        except UpdateError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def give_back(self, openid: str, template: str) -> None:
        self._update(openid, template, [ConsentItem.available.add(1), ConsentItem.consumed_total.add(-1)])

    def exhaust(self, openid: str, template: str, at: datetime) -> None:
        self._update(openid, template, [ConsentItem.available.set(0),
                                        ConsentItem.updated_at.set(clock.isoformat(at))])

    def of(self, openid: str) -> dict[str, Consent]:
        return {r.template: _consent(r) for r in ConsentItem.query(openid, consistent_read=True)}


# --- deliveries --------------------------------------------------------------------------------

@table
class DeliveryItem(Model):
    Meta = make_meta("notification-deliveries", ttl_attribute="expires_at")
    delivery_key = UnicodeAttribute(hash_key=True)
    template = UnicodeAttribute()
    recipient_id = UnicodeAttribute()
    request_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    errcode = NumberAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    expires_at = NumberAttribute()


class DynamoDeliveryStore:
    def claim(self, delivery: Delivery) -> bool:
        at = clock.isoformat(delivery.created_at)
        record = DeliveryItem(
            delivery.key, template=delivery.template, recipient_id=delivery.recipient_id,
            request_id=delivery.request_id, status=CLAIMED, created_at=at, updated_at=at,
            expires_at=_epoch(delivery.created_at + timedelta(days=DELIVERY_RETENTION_DAYS)))
        try:
            record.save(condition=DeliveryItem.delivery_key.does_not_exist())
        except PutError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def finish(self, key: str, status: str, errcode: int | None, at: datetime) -> None:
        actions = [DeliveryItem.status.set(status), DeliveryItem.updated_at.set(clock.isoformat(at))]
        if errcode is not None:
            actions.append(DeliveryItem.errcode.set(errcode))
        DeliveryItem(key).update(actions=actions, condition=DeliveryItem.delivery_key.exists())

    def release(self, key: str) -> None:
        try:
            DeliveryItem(key).delete(condition=DeliveryItem.status.is_in(*UNFINISHED))
        except DeleteError as error:
            if not _condition_failed(error):
                raise

    def claimed(self, keys: Iterable[str]) -> set[str]:
        wanted = sorted(set(keys))
        if not wanted:
            return set()
        return {r.delivery_key for r in DeliveryItem.batch_get(wanted, attributes_to_get=["delivery_key"])}

    def get(self, key: str) -> Delivery | None:
        try:
            record = DeliveryItem.get(key, consistent_read=True)
        except DeliveryItem.DoesNotExist:
            return None
        return Delivery(key=record.delivery_key, template=record.template, recipient_id=record.recipient_id,
                        request_id=record.request_id, created_at=clock.parse_iso(record.created_at),
                        status=record.status, errcode=int(record.errcode) if record.errcode is not None else None)


# --- the local outbox --------------------------------------------------------------------------

class OutboxMessageByRecipient(GlobalSecondaryIndex):
    Meta = index_meta("by-recipient")
    openid = UnicodeAttribute(hash_key=True)
    seq = UnicodeAttribute(range_key=True)


@table
class OutboxMessageItem(Model):
    Meta = make_meta("outbox", ttl_attribute="expires_at")
    box = UnicodeAttribute(hash_key=True)
    seq = UnicodeAttribute(range_key=True)  # increasing: newest first is a reverse Query
    message_id = UnicodeAttribute()
    openid = UnicodeAttribute()
    template = UnicodeAttribute()
    template_id = UnicodeAttribute()
    data = UnicodeAttribute()        # JSON of the logical fields
    wechat_data = UnicodeAttribute()  # JSON of what WeChat would receive
    page = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    expires_at = NumberAttribute()

    by_recipient = OutboxMessageByRecipient()


_seq_lock = threading.Lock()
_last_seq = 0


def _next_seq() -> str:
    """Wall-clock nanoseconds, strictly increasing within the process (two messages in one
    millisecond still come out in the order they were sent)."""
    global _last_seq
    with _seq_lock:
        _last_seq = max(time.time_ns(), _last_seq + 1)
        return f"{_last_seq:020d}"


class OutboxNotifier:
    """The local stages' notifier: every message lands in the ``outbox`` table."""

    def __init__(self, templates: TemplateRegistry, now: Callable[[], datetime] = clock.now):
        self._templates, self._now = templates, now

    def send(self, openid: str, template: str, data: Mapping[str, str], page: str | None = None) -> SendResult:
        config = self._templates.get(template)
        if config is None:
            return SendResult(SendStatus.FAILED)
        now = self._now()
        message_id = new_id("msg")
        OutboxMessageItem(OUTBOX_PARTITION, _next_seq(), message_id=message_id, openid=openid, template=template,
                     template_id=config.template_id,
                     data=json.dumps(dict(data), ensure_ascii=False),
                     wechat_data=json.dumps(wechat_data(config, data), ensure_ascii=False), page=page,
                     created_at=clock.isoformat(now),
                     expires_at=_epoch(now + timedelta(days=OUTBOX_RETENTION_DAYS))).save()
        return SendResult(SendStatus.SENT, message_id=message_id)


class DynamoOutboxReader:
    """What the local stages "sent", newest first (``GET /v1/admin/outbox``)."""

    def page(self, limit: int, cursor: dict[str, Any] | None,
             openid: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        return outbox_page(limit, cursor, openid)


def outbox_page(limit: int, cursor: dict[str, Any] | None,
                openid: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    if openid:
        cursor = checked_cursor(cursor, ("box", "seq", "openid"))
    else:
        cursor = checked_cursor(cursor, ("box", "seq"))
    if openid:
        query = OutboxMessageItem.by_recipient.query(openid, scan_index_forward=False, limit=limit,
                                                last_evaluated_key=cursor)
    else:
        query = OutboxMessageItem.query(OUTBOX_PARTITION, scan_index_forward=False, limit=limit,
                                   last_evaluated_key=cursor)
    items = [{"id": r.message_id, "openid": r.openid, "template": r.template, "template_id": r.template_id,
              "data": json.loads(r.data), "wechat_data": json.loads(r.wechat_data), "page": r.page,
              "created_at": r.created_at} for r in query]
    return items, query.last_evaluated_key
