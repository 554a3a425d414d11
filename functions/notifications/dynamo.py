"""DynamoDB adapters of notifications: consents, delivery claims and the local outbox.

- ``notification-consents``  openid + template → counters (one UpdateItem per grant/consume).
- ``notification-deliveries`` delivery key → status; the conditional put that makes a message
  go out at most once. Expires after ``DELIVERY_RETENTION_DAYS`` (long after any retry).
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
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from functions.core import clock
from functions.core.errors import ValidationError
from functions.core.ids import new_id
from functions.core.storage import make_meta, table
from functions.notifications.notifier import SendResult, SendStatus
from functions.notifications.service import SENDING, Consent, Delivery
from functions.notifications.templates import TemplateRegistry, wechat_data

DELIVERY_RETENTION_DAYS = 180
OUTBOX_RETENTION_DAYS = 30
OUTBOX_PARTITION = "outbox"


def _condition_failed(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


# --- consents ----------------------------------------------------------------------------------

@table
class ConsentRecord(Model):
    Meta = make_meta("notification-consents")
    openid = UnicodeAttribute(hash_key=True)
    template = UnicodeAttribute(range_key=True)
    available = NumberAttribute(default=0)
    accepted_total = NumberAttribute(default=0)
    refused_total = NumberAttribute(default=0)
    consumed_total = NumberAttribute(default=0)
    updated_at = UnicodeAttribute(null=True)


def _consent(record: ConsentRecord) -> Consent:
    return Consent(template=record.template, available=int(record.available or 0),
                   accepted_total=int(record.accepted_total or 0), refused_total=int(record.refused_total or 0),
                   updated_at=clock.parse_iso(record.updated_at) if record.updated_at else None)


class DynamoConsentStore:
    def _update(self, openid: str, template: str, actions: list, condition: Any = None) -> ConsentRecord:
        record = ConsentRecord(openid, template)
        record.update(actions=actions, condition=condition)  # an UpdateItem creates a missing item
        return record

    def grant(self, openid: str, template: str, at: datetime) -> Consent:
        return _consent(self._update(openid, template, [
            ConsentRecord.available.add(1), ConsentRecord.accepted_total.add(1),
            ConsentRecord.updated_at.set(clock.isoformat(at))]))

    def refuse(self, openid: str, template: str, at: datetime) -> Consent:
        return _consent(self._update(openid, template, [
            ConsentRecord.refused_total.add(1), ConsentRecord.updated_at.set(clock.isoformat(at))]))

    def consume(self, openid: str, template: str, at: datetime) -> bool:
        try:
            self._update(openid, template, [
                ConsentRecord.available.add(-1), ConsentRecord.consumed_total.add(1),
                ConsentRecord.updated_at.set(clock.isoformat(at))], condition=ConsentRecord.available > 0)
        except UpdateError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def give_back(self, openid: str, template: str) -> None:
        self._update(openid, template, [ConsentRecord.available.add(1), ConsentRecord.consumed_total.add(-1)])

    def exhaust(self, openid: str, template: str, at: datetime) -> None:
        self._update(openid, template, [ConsentRecord.available.set(0),
                                        ConsentRecord.updated_at.set(clock.isoformat(at))])

    def of(self, openid: str) -> dict[str, Consent]:
        return {r.template: _consent(r) for r in ConsentRecord.query(openid, consistent_read=True)}


# --- deliveries --------------------------------------------------------------------------------

@table
class DeliveryRecord(Model):
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
        record = DeliveryRecord(
            delivery.key, template=delivery.template, recipient_id=delivery.recipient_id,
            request_id=delivery.request_id, status=SENDING, created_at=at, updated_at=at,
            expires_at=_epoch(delivery.created_at + timedelta(days=DELIVERY_RETENTION_DAYS)))
        try:
            record.save(condition=DeliveryRecord.delivery_key.does_not_exist())
        except PutError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def finish(self, key: str, status: str, errcode: int | None, at: datetime) -> None:
        actions = [DeliveryRecord.status.set(status), DeliveryRecord.updated_at.set(clock.isoformat(at))]
        if errcode is not None:
            actions.append(DeliveryRecord.errcode.set(errcode))
        DeliveryRecord(key).update(actions=actions, condition=DeliveryRecord.delivery_key.exists())

    def release(self, key: str) -> None:
        try:
            DeliveryRecord(key).delete(condition=DeliveryRecord.status == SENDING)
        except DeleteError as error:
            if not _condition_failed(error):
                raise

    def claimed(self, keys: Iterable[str]) -> set[str]:
        wanted = sorted(set(keys))
        if not wanted:
            return set()
        return {r.delivery_key for r in DeliveryRecord.batch_get(wanted, attributes_to_get=["delivery_key"])}

    def get(self, key: str) -> Delivery | None:
        try:
            record = DeliveryRecord.get(key, consistent_read=True)
        except DeliveryRecord.DoesNotExist:
            return None
        return Delivery(key=record.delivery_key, template=record.template, recipient_id=record.recipient_id,
                        request_id=record.request_id, created_at=clock.parse_iso(record.created_at),
                        status=record.status, errcode=int(record.errcode) if record.errcode is not None else None)


# --- the local outbox --------------------------------------------------------------------------

class _OutboxByRecipient(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_recipient"
        projection = AllProjection()
    openid = UnicodeAttribute(hash_key=True)
    seq = UnicodeAttribute(range_key=True)


@table
class OutboxRecord(Model):
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

    by_recipient = _OutboxByRecipient()


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
        OutboxRecord(OUTBOX_PARTITION, _next_seq(), message_id=message_id, openid=openid, template=template,
                     template_id=config.template_id,
                     data=json.dumps(dict(data), ensure_ascii=False),
                     wechat_data=json.dumps(wechat_data(config, data), ensure_ascii=False), page=page,
                     created_at=clock.isoformat(now),
                     expires_at=_epoch(now + timedelta(days=OUTBOX_RETENTION_DAYS))).save()
        return SendResult(SendStatus.SENT, message_id=message_id)


def checked_cursor(cursor: dict[str, Any] | None, key_names: Iterable[str]) -> dict[str, Any] | None:
    """A cursor is DynamoDB's last evaluated key; refuse anything else before it reaches a Query
    (where it would be a 500, not the caller's 400)."""
    if cursor is None:
        return None
    names = set(key_names)
    if set(cursor) != names or not all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str)
                                       for v in cursor.values()):
        raise ValidationError(details={"fields": {"cursor": "is not a cursor this API returned"}})
    return cursor


def outbox_page(limit: int, cursor: dict[str, Any] | None,
                openid: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    if openid:
        cursor = checked_cursor(cursor, ("box", "seq", "openid"))
    else:
        cursor = checked_cursor(cursor, ("box", "seq"))
    if openid:
        query = OutboxRecord.by_recipient.query(openid, scan_index_forward=False, limit=limit,
                                                last_evaluated_key=cursor)
    else:
        query = OutboxRecord.query(OUTBOX_PARTITION, scan_index_forward=False, limit=limit,
                                   last_evaluated_key=cursor)
    items = [{"id": r.message_id, "openid": r.openid, "template": r.template, "template_id": r.template_id,
              "data": json.loads(r.data), "wechat_data": json.loads(r.wechat_data), "page": r.page,
              "created_at": r.created_at} for r in query]
    return items, query.last_evaluated_key
