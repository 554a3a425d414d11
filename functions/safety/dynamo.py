"""DynamoDB adapters of safety: insurance records and the evidence access log.

Insurance records: one item per request
(hash key ``request_id``), written with ``attribute_not_exists`` so a
redelivered queue message cannot write twice. The export reads the GSI ``by_service_month``
(``service_month`` "YYYY-MM" + ``service_start``): a date range of at most 92 days is at most
four Queries with a key condition on the start time — never a Scan.

The evidence access log (PIPL: who viewed which request's photos, when):

Hash key ``request_id``, range key ``viewed_key`` = ``<viewed_at>#<random>`` so the log of one
request reads newest first with one Query. Entries expire (TTL) after three years: long enough
for complaints and audits, not kept forever.

Registered uploads (photos issued but not yet known to be named, see ``safety.model``): hash
key ``issued_day`` (community date of issue), range key ``issued_key`` = ``<issued_at>#<key>``,
so the sweep reads what is due with one Query per day of its look-back, oldest first, and a
community's few hundred uploads a day sit in one small partition per day. Rows expire (TTL)
after ``UPLOAD_LOOKBACK``; a row that outlives it (the sweep stopped for days) leaves its photo
to the retention purge.
"""
from __future__ import annotations

import re
import secrets
from datetime import date, datetime, timedelta
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from functions.adapters.dynamo import Put, bad_cursor, index_meta, make_meta, table
from functions.core import clock
from functions.safety.model import ACTIVE, CANCELLED, AccessLogEntry, ExportRange, InsuranceRecord, PendingUpload

_MONTH = re.compile(r"\d{4}-\d{2}")
_CURSOR_KEYS = {"request_id", "service_month", "service_start"}


class InsuranceRecordByServiceMonth(GlobalSecondaryIndex):
    Meta = index_meta("by-service-month")
    service_month = UnicodeAttribute(hash_key=True)
    service_start = UnicodeAttribute(range_key=True)


@table
class InsuranceRecordItem(Model):
    Meta = make_meta("insurance-records")
    request_id = UnicodeAttribute(hash_key=True)
    volunteer_id = UnicodeAttribute()
    category = UnicodeAttribute()
    category_name = UnicodeAttribute()
    service_start = UnicodeAttribute()
    service_month = UnicodeAttribute()
    duration_minutes = NumberAttribute()
    covered_from = UnicodeAttribute()
    covered_to = UnicodeAttribute()
    insurer = UnicodeAttribute()
    policy_number = UnicodeAttribute()
    status = UnicodeAttribute()
    created_at = UnicodeAttribute()
    cancelled_at = UnicodeAttribute(null=True)
    activity_id = UnicodeAttribute(null=True)

    by_service_month = InsuranceRecordByServiceMonth()


def _to_item(record: InsuranceRecord) -> InsuranceRecordItem:
    iso = clock.isoformat
    return InsuranceRecordItem(
        request_id=record.request_id, volunteer_id=record.volunteer_id, category=record.category,
        category_name=record.category_name, service_start=iso(record.service_start),
        service_month=record.service_date.strftime("%Y-%m"), duration_minutes=record.duration_minutes,
        covered_from=iso(record.covered_from), covered_to=iso(record.covered_to), insurer=record.insurer,
        policy_number=record.policy_number, status=record.status, created_at=iso(record.created_at),
        cancelled_at=iso(record.cancelled_at) if record.cancelled_at else None, activity_id=record.activity_id,
    )


def _from_item(item: InsuranceRecordItem) -> InsuranceRecord:
    parse = clock.parse_iso
    return InsuranceRecord(
        request_id=item.request_id, volunteer_id=item.volunteer_id, category=item.category,
        category_name=item.category_name, service_start=parse(item.service_start),
        duration_minutes=int(item.duration_minutes), covered_from=parse(item.covered_from),
        covered_to=parse(item.covered_to), insurer=item.insurer, policy_number=item.policy_number,
        status=item.status, created_at=parse(item.created_at),
        cancelled_at=parse(item.cancelled_at) if item.cancelled_at else None, activity_id=item.activity_id,
    )


def _months(days: ExportRange) -> list[str]:
    months, year, month = [], days.first_day.year, days.first_day.month
    while (year, month) <= (days.last_day.year, days.last_day.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _bound(day: date, end: bool) -> str:
    # service_start is always stored by clock.isoformat (seconds, +08:00), so these compare as text.
    return f"{day.isoformat()}T{'23:59:59' if end else '00:00:00'}+08:00"


def _checked_cursor(cursor: dict[str, Any] | None, months: list[str]) -> tuple[int, dict[str, Any] | None]:
    if cursor is None:
        return 0, None
    month, key = cursor.get("month"), cursor.get("key")
    valid = isinstance(month, str) and _MONTH.fullmatch(month) and month in months and set(cursor) <= {"month", "key"}
    if valid and key is not None:
        valid = (isinstance(key, dict) and set(key) == _CURSOR_KEYS
                 and all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in key.values())
                 and key["service_month"]["S"] == month)
    if not valid:
        raise bad_cursor()
    return months.index(month), key


class DynamoInsuranceRecordStore:
    def record_write(self, record: InsuranceRecord) -> Put:
        return Put(_to_item(record))

    def add(self, record: InsuranceRecord) -> bool:
        try:
            _to_item(record).save(condition=InsuranceRecordItem.request_id.does_not_exist())
        except PutError as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self, request_id: str) -> InsuranceRecord | None:
        try:
            return _from_item(InsuranceRecordItem.get(request_id, consistent_read=True))
        except InsuranceRecordItem.DoesNotExist:
            return None

    def exists(self, request_id: str) -> bool:
        # One strongly consistent GetItem of the key only: check-in right after the consumer
        # wrote must see the record.
        try:
            InsuranceRecordItem.get(request_id, consistent_read=True, attributes_to_get=["request_id"])
        except InsuranceRecordItem.DoesNotExist:
            return False
        return True

    def mark_cancelled(self, request_id: str, at: datetime, volunteer_id: str | None = None) -> bool:
        condition = InsuranceRecordItem.status == ACTIVE
        if volunteer_id is not None:
            condition &= InsuranceRecordItem.volunteer_id == volunteer_id
        try:
            InsuranceRecordItem(request_id).update(
                actions=[InsuranceRecordItem.status.set(CANCELLED),
                         InsuranceRecordItem.cancelled_at.set(clock.isoformat(at))],
                condition=condition)
        except UpdateError as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                return False  # no record, or already cancelled
            raise
        return True

    def between(self, days: ExportRange, limit: int,
                cursor: dict[str, Any] | None) -> tuple[list[InsuranceRecord], dict[str, Any] | None]:
        months = _months(days)
        start, last_key = _checked_cursor(cursor, months)
        condition = InsuranceRecordItem.service_start.between(_bound(days.first_day, False),
                                                               _bound(days.last_day, True))
        records: list[InsuranceRecord] = []
        for position in range(start, len(months)):
            month = months[position]
            query = InsuranceRecordItem.by_service_month.query(
                month, range_key_condition=condition, limit=limit - len(records), last_evaluated_key=last_key)
            records.extend(_from_item(item) for item in query)
            last_key = query.last_evaluated_key
            if len(records) >= limit:
                if last_key:
                    return records, {"month": month, "key": last_key}
                if position + 1 < len(months):
                    return records, {"month": months[position + 1], "key": None}
                return records, None
            last_key = None
        return records, None


# --- the evidence access log ---------------------------------------------------------------------

ACCESS_LOG_RETENTION = timedelta(days=3 * 365)


@table
class EvidenceAccessItem(Model):
    Meta = make_meta("evidence-access", ttl_attribute="expires_at")
    request_id = UnicodeAttribute(hash_key=True)
    viewed_key = UnicodeAttribute(range_key=True)
    viewer_id = UnicodeAttribute()
    viewer_role = UnicodeAttribute()
    photo_count = NumberAttribute()
    viewed_at = UnicodeAttribute()
    expires_at = NumberAttribute()


class DynamoAccessLog:
    def record(self, entry: AccessLogEntry) -> None:
        viewed_at = clock.isoformat(entry.viewed_at)
        EvidenceAccessItem(
            entry.request_id, f"{viewed_at}#{secrets.token_hex(4)}", viewer_id=entry.viewer_id,
            viewer_role=entry.viewer_role, photo_count=entry.photo_count, viewed_at=viewed_at,
            expires_at=int((entry.viewed_at + ACCESS_LOG_RETENTION).timestamp()),
        ).save()

    def for_request(self, request_id: str, limit: int,
                    cursor: dict[str, Any] | None) -> tuple[list[AccessLogEntry], dict[str, Any] | None]:
        if cursor is not None and not (
                set(cursor) == {"request_id", "viewed_key"}
                and cursor["request_id"] == {"S": request_id}
                and isinstance(cursor["viewed_key"], dict) and isinstance(cursor["viewed_key"].get("S"), str)):
            raise bad_cursor()
        query = EvidenceAccessItem.query(request_id, scan_index_forward=False, limit=limit,
                                         last_evaluated_key=cursor)
        entries = [AccessLogEntry(item.request_id, item.viewer_id, item.viewer_role, int(item.photo_count),
                                  clock.parse_iso(item.viewed_at)) for item in query]
        return entries, query.last_evaluated_key


UPLOAD_LOOKBACK = timedelta(days=3)


@table
class EvidenceUploadItem(Model):
    Meta = make_meta("evidence-uploads", ttl_attribute="expires_at")
    issued_day = UnicodeAttribute(hash_key=True)
    issued_key = UnicodeAttribute(range_key=True)
    request_id = UnicodeAttribute()
    expires_at = NumberAttribute()


def _issued_key(upload: PendingUpload) -> tuple[str, str]:
    issued = upload.issued_at.astimezone(clock.CHINA_TZ)
    return issued.date().isoformat(), f"{clock.isoformat(issued)}#{upload.key}"


class DynamoUploadRegister:
    def add(self, upload: PendingUpload) -> None:
        day, issued_key = _issued_key(upload)
        EvidenceUploadItem(day, issued_key, request_id=upload.request_id,
                           expires_at=int((upload.issued_at + UPLOAD_LOOKBACK).timestamp())).save()

    def due(self, issued_before: datetime, limit: int) -> list[PendingUpload]:
        before = issued_before.astimezone(clock.CHINA_TZ)
        bound = clock.isoformat(before)
        found: list[PendingUpload] = []
        day = (before - UPLOAD_LOOKBACK).date()
        while day <= before.date() and len(found) < limit:
            for item in EvidenceUploadItem.query(day.isoformat(), EvidenceUploadItem.issued_key < bound,
                                                 limit=limit - len(found)):
                issued, key = item.issued_key.split("#", 1)
                found.append(PendingUpload(key, item.request_id, clock.parse_iso(issued)))
            day += timedelta(days=1)
        return found

    def remove(self, uploads: list[PendingUpload]) -> None:
        with EvidenceUploadItem.batch_write() as batch:
            for upload in uploads:
                batch.delete(EvidenceUploadItem(*_issued_key(upload)))
