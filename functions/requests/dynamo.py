"""DynamoDB adapters of requests: the requests table and the categories table.

Requests.

Indexes (each a Query, never a Scan, on request paths). Each index holds only what its query
needs, because every entry costs a write (1 WRU per KB of what it projects) whenever the item
enters, leaves, or changes a projected attribute (issue 14; ``python -m bench cost``):

- ``by-feed``          feed (only while open) + created_key   → the feed, newest first (ALL:
                       a page is one Query; a need enters once and leaves once)
- ``by-feed-category`` feed_category (only while open) + created_key → the feed of one category
- ``by-due``           due_shard = status#0..3 (only while a schedule must look) + due_at
                       → expiry (open), reminders and no-shows (accepted), overdue (in service),
                       auto-confirm (completed). KEYS_ONLY, read back with one BatchGet; four
                       shards so no one partition takes every order's writes
- ``by-status``        listed_status (the status, except while open) + created_key → the admin
                       list (KEYS_ONLY + BatchGet); open requests are listed from ``by-feed``,
                       so posting and accepting write no entry here
- ``by-household``     household_id + created_key → a household's own requests (KEYS_ONLY:
                       written once when posted, never again)
- ``by-volunteer``     volunteer_id + created_key → a volunteer's services (KEYS_ONLY: written
                       once when accepted)
``due_at`` is set per state: open → start_at (an unaccepted need expires when it should have
started), accepted → start_at, completed → completed_at + auto-confirm period; other states
drop it so the schedule index stays small. Index changes and their backfill: infra/README.md.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from dataclasses import replace
from typing import Any, Iterator, Sequence

import json
from decimal import Decimal

from pynamodb.attributes import BooleanAttribute, ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from functions.adapters.dynamo import (bad_cursor, cancelled_by_condition, condition_failed, index_meta, make_meta,
                                       new_transaction, table)
from functions.core import clock
from functions.core.errors import InvalidState, NotFound
from functions.core.validation import MAX_ID_LENGTH
from functions.requests import model as lc
from functions.requests.model import Category, RoundingBand, ServiceRequest

_DATE_FIELDS = ("start_at", "created_at", "accepted_at", "checked_in_at", "completed_at", "settled_at", "open_until",
                "overdue_flagged_at")

DUE_SHARDS = 4


class RequestByFeed(GlobalSecondaryIndex):
    Meta = index_meta("by-feed")
    feed = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class RequestByFeedCategory(GlobalSecondaryIndex):
    Meta = index_meta("by-feed-category")
    feed_category = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class RequestByStatus(GlobalSecondaryIndex):
    Meta = index_meta("by-status", "keys")
    listed_status = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class RequestByDue(GlobalSecondaryIndex):
    Meta = index_meta("by-due", "keys")
    due_shard = UnicodeAttribute(hash_key=True)
    due_at = UnicodeAttribute(range_key=True)


class RequestByHousehold(GlobalSecondaryIndex):
    Meta = index_meta("by-household", "keys")
    household_id = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class RequestByVolunteer(GlobalSecondaryIndex):
    Meta = index_meta("by-volunteer", "keys")
    volunteer_id = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


def due_shard(request_id: str, status: str) -> str:
    # A stable shard per request (crc32, not hash(): the same in every process).
    import zlib

    return f"{status}#{zlib.crc32(request_id.encode()) % DUE_SHARDS}"


@table
class RequestItem(Model):
    Meta = make_meta("requests")
    request_id = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute()
    feed = UnicodeAttribute(null=True)           # "open" while open, else absent (sparse index)
    feed_category = UnicodeAttribute(null=True)  # the category while open, else absent
    listed_status = UnicodeAttribute(null=True)  # the status unless open (by-feed lists those)
    due_at = UnicodeAttribute(null=True)
    due_shard = UnicodeAttribute(null=True)      # status#shard while due_at is set
    category = UnicodeAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute()
    start_at = UnicodeAttribute()
    duration_minutes = NumberAttribute()
    requester_id = UnicodeAttribute()
    household_id = UnicodeAttribute()
    payer_account = UnicodeAttribute()
    hold_transfer_id = UnicodeAttribute()
    credits_held = NumberAttribute()
    created_at = UnicodeAttribute()
    created_key = UnicodeAttribute()  # sort key of the lists: microseconds + id, so no ties
    content_hash = UnicodeAttribute()
    beneficiary_member_id = UnicodeAttribute(null=True)
    volunteer_id = UnicodeAttribute(null=True)
    volunteer_household_id = UnicodeAttribute(null=True)
    credits_paid = NumberAttribute(null=True)
    accepted_at = UnicodeAttribute(null=True)
    checked_in_at = UnicodeAttribute(null=True)
    completed_at = UnicodeAttribute(null=True)
    completed_minutes = NumberAttribute(null=True)
    settled_at = UnicodeAttribute(null=True)
    settlement_transfer_id = UnicodeAttribute(null=True)
    evidence_keys = ListAttribute(of=UnicodeAttribute, default=list)
    rating = NumberAttribute(null=True)
    comment = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    disputed_by = UnicodeAttribute(null=True)
    closed_by = UnicodeAttribute(null=True)
    open_until = UnicodeAttribute(null=True)
    overdue_flagged_at = UnicodeAttribute(null=True)
    no_shows = NumberAttribute(default=0)
    proxy_id = UnicodeAttribute(null=True)
    insured = BooleanAttribute(null=True)   # only while this acceptance's record exists (absent: ask safety)

    by_feed = RequestByFeed()
    by_feed_category = RequestByFeedCategory()
    by_status = RequestByStatus()
    by_due = RequestByDue()
    by_household = RequestByHousehold()
    by_volunteer = RequestByVolunteer()


def _to_store(value: Any) -> Any:
    return clock.isoformat(value) if isinstance(value, datetime) else value


def _from_record(record: RequestItem) -> ServiceRequest:
    data = {name: getattr(record, "request_id" if name == "id" else name)
            for name in ServiceRequest.__dataclass_fields__}
    for name in _DATE_FIELDS:
        if data[name] is not None:
            data[name] = clock.parse_iso(data[name])
    for name in ("duration_minutes", "credits_held", "credits_paid", "completed_minutes", "rating", "no_shows"):
        if data[name] is not None:
            data[name] = int(data[name])
    data["evidence_keys"] = list(data["evidence_keys"] or [])
    return ServiceRequest(**data)


def created_key(created_at: datetime, request_id: str) -> str:
    return f"{created_at.astimezone(timezone.utc):%Y%m%dT%H%M%S.%f}#{request_id}"


def due_at_for(request: ServiceRequest, auto_confirm_after: timedelta) -> str | None:
    """When a schedule must look at the request next: an open need expires at its start (or,
    released after a no-show, at its booked end); an accepted one is reminded of and, never
    checked in, released; one in service long past its end is completed or flagged; a completed
    one auto-confirms. Final (and flagged) requests drop out of the index."""
    if request.status == lc.OPEN:
        return clock.isoformat(request.open_until or request.start_at)
    if request.status == lc.ACCEPTED:
        return clock.isoformat(request.start_at)
    if request.status == lc.IN_SERVICE and request.overdue_flagged_at is None:
        return clock.isoformat(request.booked_end)
    if request.status == lc.COMPLETED and request.completed_at is not None:
        return clock.isoformat(request.completed_at + auto_confirm_after)
    return None


class RequestWrite:
    """A write of a request item that joins a ledger transaction (``also=`` of the ledger).

    The condition on the state read is what makes status and credits move together: if another
    actor got there first, the whole transaction (hold/post/void included) is cancelled.
    """

    def __init__(self, store: "DynamoRequestStore", request: ServiceRequest, changes: dict[str, Any] | None,
                 expected_status: str | None):
        self.store, self.request, self.changes, self.expected_status = store, request, changes, expected_status

    def add_to(self, transaction: TransactWrite) -> None:
        if self.expected_status is None:
            transaction.save(self.store.record_for(self.request),
                             condition=RequestItem.request_id.does_not_exist())
        else:
            transaction.update(RequestItem(self.request.id),
                               actions=self.store.actions(self.request, self.changes or {}),
                               condition=RequestItem.status == self.expected_status)


MAX_REQUEST_ID = MAX_ID_LENGTH


def _checked_cursor(cursor: dict | None, partition: tuple[str, str], sort_key: str) -> dict | None:
    """Only a last evaluated key of this query (its index, its partition) reaches DynamoDB, which
    refuses any other ExclusiveStartKey with a ValidationException (a 500, not the caller's 400)."""
    if cursor is None:
        return None
    name, value = partition
    if (set(cursor) != {"request_id", name, sort_key} or cursor[name] != {"S": value}
            or not all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) and v["S"]
                       for v in cursor.values())):
        raise bad_cursor()
    return cursor


class DynamoRequestStore:
    def __init__(self, auto_confirm_after: timedelta):
        self.auto_confirm_after = auto_confirm_after

    # --- reads ------------------------------------------------------------------------------
    def get(self, request_id: str, consistent: bool = True) -> ServiceRequest:
        if not request_id or len(request_id) > MAX_REQUEST_ID:
            raise NotFound("没有这个需求", {"request_id": request_id[:MAX_REQUEST_ID]})
        try:
            return _from_record(RequestItem.get(request_id, consistent_read=consistent))
        except DoesNotExist:
            raise NotFound("没有这个需求", {"request_id": request_id}) from None

    def find(self, request_id: str, consistent: bool = True) -> ServiceRequest | None:
        """``consistent=False`` (half the read) for callers whose next write is conditional or
        who retry: it may miss an item written a moment ago, or show it a moment old."""
        try:
            return self.get(request_id, consistent=consistent)
        except NotFound:
            return None

    def get_many(self, request_ids: list[str]) -> dict[str, ServiceRequest]:
        """One BatchGetItem per 100 ids (eventually consistent: for lists, not decisions)."""
        return {record.request_id: _from_record(record) for record in RequestItem.batch_get(request_ids)}

    def _in_order(self, keys: list[RequestItem], consistent: bool = False) -> list[ServiceRequest]:
        """A keys-only index page, read back in the index's order with one BatchGetItem."""
        ids = [k.request_id for k in keys]
        if not ids:
            return []
        found = {r.request_id: r for r in RequestItem.batch_get(ids, consistent_read=consistent)}
        return [_from_record(found[i]) for i in ids if i in found]

    def feed(self, category: str | None, limit: int, cursor: dict | None,
             exclude_household: str | None) -> tuple[list[ServiceRequest], dict | None]:
        """Open needs newest first, without the caller's household (a filter, so a page may need
        more than one Query; the cursor is DynamoDB's own last evaluated key)."""
        items: list[ServiceRequest] = []
        last_key = (_checked_cursor(cursor, ("feed_category", category), "created_key") if category
                    else _checked_cursor(cursor, ("feed", lc.OPEN), "created_key"))
        while len(items) < limit:
            if category:
                query = RequestItem.by_feed_category.query(
                    category, scan_index_forward=False, limit=limit - len(items),
                    last_evaluated_key=last_key,
                    filter_condition=(RequestItem.household_id != exclude_household) if exclude_household else None)
            else:
                query = RequestItem.by_feed.query(
                    lc.OPEN, scan_index_forward=False, limit=limit - len(items), last_evaluated_key=last_key,
                    filter_condition=(RequestItem.household_id != exclude_household) if exclude_household else None)
            items.extend(_from_record(r) for r in query)
            last_key = query.last_evaluated_key
            if not last_key:
                break
        return items, last_key

    def by_status(self, status: str, limit: int, cursor: dict | None):
        if status == lc.OPEN:
            query = RequestItem.by_feed.query(
                lc.OPEN, scan_index_forward=False, limit=limit,
                last_evaluated_key=_checked_cursor(cursor, ("feed", lc.OPEN), "created_key"))
            return [_from_record(r) for r in query], query.last_evaluated_key
        query = RequestItem.by_status.query(
            status, scan_index_forward=False, limit=limit,
            last_evaluated_key=_checked_cursor(cursor, ("listed_status", status), "created_key"))
        return self._in_order(list(query)), query.last_evaluated_key

    def by_household(self, household_id: str, limit: int, cursor: dict | None):
        query = RequestItem.by_household.query(
            household_id, scan_index_forward=False, limit=limit,
            last_evaluated_key=_checked_cursor(cursor, ("household_id", household_id), "created_key"))
        return self._in_order(list(query)), query.last_evaluated_key

    def by_volunteer(self, volunteer_id: str, limit: int, cursor: dict | None):
        query = RequestItem.by_volunteer.query(
            volunteer_id, scan_index_forward=False, limit=limit,
            last_evaluated_key=_checked_cursor(cursor, ("volunteer_id", volunteer_id), "created_key"))
        return self._in_order(list(query)), query.last_evaluated_key

    def due(self, status: str, until: datetime, since: datetime | None = None) -> Iterator[ServiceRequest]:
        condition = (RequestItem.due_at.between(clock.isoformat(since), clock.isoformat(until))
                     if since else RequestItem.due_at <= clock.isoformat(until))
        keys: list[RequestItem] = []
        for shard in range(DUE_SHARDS):
            keys.extend(RequestItem.by_due.query(f"{status}#{shard}", range_key_condition=condition))
        keys.sort(key=lambda k: (k.due_at, k.request_id))
        for start in range(0, len(keys), 100):
            # Consistent: a schedule decides on what it reads (its transition is conditional too).
            yield from self._in_order(keys[start:start + 100], consistent=True)

    # --- writes -----------------------------------------------------------------------------
    def record_for(self, request: ServiceRequest) -> RequestItem:
        values = {("request_id" if name == "id" else name): _to_store(getattr(request, name))
                  for name in ServiceRequest.__dataclass_fields__}
        due = due_at_for(request, self.auto_confirm_after)
        is_open = request.status == lc.OPEN
        return RequestItem(
            created_key=created_key(request.created_at, request.id),
            feed=lc.OPEN if is_open else None,
            feed_category=request.category if is_open else None,
            listed_status=None if is_open else request.status,
            due_at=due,
            due_shard=due_shard(request.id, request.status) if due else None,
            **values,
        )

    def actions(self, request: ServiceRequest, changes: dict[str, Any]) -> list[Action]:
        status = changes.get("status", request.status)
        actions: list[Action] = []
        for name, value in changes.items():
            attribute = getattr(RequestItem, name)
            actions.append(attribute.remove() if value is None else attribute.set(_to_store(value)))
        if "status" in changes:
            if status == lc.OPEN:
                actions += [RequestItem.feed.set(lc.OPEN), RequestItem.feed_category.set(request.category),
                            RequestItem.listed_status.remove()]
            else:
                actions += [RequestItem.feed.remove(), RequestItem.feed_category.remove(),
                            RequestItem.listed_status.set(status)]
        due = due_at_for(replace(request, **changes), self.auto_confirm_after)
        if due:
            actions += [RequestItem.due_at.set(due), RequestItem.due_shard.set(due_shard(request.id, status))]
        else:
            actions += [RequestItem.due_at.remove(), RequestItem.due_shard.remove()]
        return actions

    def transition(self, request: ServiceRequest, changes: dict[str, Any], also: Sequence[Any] = ()) -> ServiceRequest:
        """Apply ``changes`` (with ``also``, in one transaction) if the request is still in the
        state it was read in; returns the request as changed, without reading it again."""
        changed = InvalidState("需求状态已变化，请刷新后重试", {"request_id": request.id})
        try:
            if not also:
                RequestItem(request.id).update(actions=self.actions(request, changes),
                                               condition=RequestItem.status == request.status)
            else:
                with new_transaction() as transaction:
                    self.write(request, changes, expected_status=request.status).add_to(transaction)
                    for write in also:
                        write.add_to(transaction)
        except UpdateError as error:
            if condition_failed(error):
                raise changed from None
            raise
        except TransactWriteError as error:
            if cancelled_by_condition(error):
                raise changed from None
            raise
        return replace(request, **changes)

    def write(self, request: ServiceRequest, changes: dict[str, Any] | None = None,
              expected_status: str | None = None) -> RequestWrite:
        return RequestWrite(self, request, changes, expected_status)


# --- categories ----------------------------------------------------------------------------------
# Only admin changes are stored; built-ins need no seeding. One partition holds this community's
# handful of categories, so listing them is a single Query (1 call, ≤ ~10 items), never a Scan.

CATEGORY_PARTITION = "categories"


@table
class CategoryItem(Model):
    Meta = make_meta("categories")
    partition = UnicodeAttribute(hash_key=True)
    category_id = UnicodeAttribute(range_key=True)
    tariff = UnicodeAttribute()  # JSON of Category.to_dict(): one attribute keeps the schema flat
    updated_by = UnicodeAttribute(null=True)


def category_from_dict(data: dict, builtin: bool = True) -> Category:
    return Category(
        id=data["id"], name=data["name"], credit_mode=data["credit_mode"],
        multiplier=Decimal(str(data["multiplier"])),
        rounding=tuple(RoundingBand(b["max_minutes"], b["credit_minutes"]) for b in data["rounding"]),
        max_minutes=data["max_minutes"], credit_per_service=data["credit_per_service"],
        credit_eligible=data["credit_eligible"], requires_insurance=data["requires_insurance"],
        requires_evidence=data["requires_evidence"], builtin=builtin,
    )


class DynamoCategoryStore:
    def load_all(self) -> dict[str, Category]:
        return {
            record.category_id: category_from_dict(json.loads(record.tariff))
            for record in CategoryItem.query(CATEGORY_PARTITION)
        }

    def save(self, category: Category, actor: str) -> None:
        payload = category.to_dict()
        # Keep the exact decimal, not the float the API shows.
        payload["multiplier"] = str(category.multiplier)
        CategoryItem(CATEGORY_PARTITION, category.id, tariff=json.dumps(payload, ensure_ascii=False),
                       updated_by=actor).save()
