"""The audit log's table (issue 12): one small item per admin action, proxy act and
personal-data view, written by the transaction of the change it records (see ``core.audit``).

Kept beside the outbox, in adapters, because every domain's transaction may carry an entry:
``adapters.dynamo.TransactWrite`` appends it as the transaction's last item. It is an
*update* (SET of every attribute) rather than a put so that it lands after every item a
domain added: the ledger maps cancellation reasons back to its own items by position.

Keys: ``id`` (derived per request, so a retry overwrites rather than doubles). Indexes, each
ordered by ``sk = <at>#<id>`` (newest first is a reverse Query, a time range a key condition):
``by-actor``, ``by-action``, ``by-subject`` (sparse: entries about one resident or household,
what ``GET /v1/residents/me/audit`` reads) and ``by-month`` (every entry, one partition per
community month: admin actions are a handful a minute, far below a partition's 1,000 WCU/s).
An item is ~250 bytes: 1 write unit (2 in a transaction) plus 4 index entries.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from functions.adapters.dynamo import GlobalSecondaryIndex, carry_audit_entries, index_meta, iso, make_meta, table
from functions.core import clock
from functions.core.audit import AuditEntry


class AuditByActor(GlobalSecondaryIndex):
    Meta = index_meta("by-actor")
    actor_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class AuditByAction(GlobalSecondaryIndex):
    Meta = index_meta("by-action")
    action = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class AuditBySubject(GlobalSecondaryIndex):
    Meta = index_meta("by-subject")
    subject = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class AuditByMonth(GlobalSecondaryIndex):
    Meta = index_meta("by-month")
    month = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


@table
class AuditEntryItem(Model):
    Meta = make_meta("audit-entries")
    id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute()
    month = UnicodeAttribute()
    at = UnicodeAttribute()
    actor_id = UnicodeAttribute()
    action = UnicodeAttribute()
    target = UnicodeAttribute(null=True)      # JSON of the path parameters
    reason = UnicodeAttribute(null=True)
    details = UnicodeAttribute(null=True)     # JSON, ids and choices only
    subject = UnicodeAttribute(null=True)
    by_actor = AuditByActor()
    by_action = AuditByAction()
    by_subject = AuditBySubject()
    by_month = AuditByMonth()


def _json(value: dict[str, Any]) -> str | None:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True) if value else None


def _attributes(entry: AuditEntry) -> dict[str, Any]:
    at = iso(entry.at)
    values = {"sk": f"{at}#{entry.id}", "month": at[:7], "at": at, "actor_id": entry.actor_id,
              "action": entry.action, "target": _json(entry.target), "reason": entry.reason or None,
              "details": _json(entry.details), "subject": entry.subject}
    return {name: value for name, value in values.items() if value is not None}


def entry_item(entry: AuditEntry) -> AuditEntryItem:
    return AuditEntryItem(entry.id, **_attributes(entry))


def entry_update_kwargs(entry: AuditEntry) -> dict[str, Any]:
    """The entry as one ``Update`` of a ``TransactWriteItems`` (creates the item)."""
    attributes = _attributes(entry)
    actions = [getattr(AuditEntryItem, name).set(value) for name, value in attributes.items()]
    return AuditEntryItem(entry.id).get_update_kwargs_from_instance(actions=actions)


def to_entry(item: AuditEntryItem) -> AuditEntry:
    return AuditEntry(id=item.id, at=clock.parse_iso(item.at), actor_id=item.actor_id, action=item.action,
                      target=json.loads(item.target) if item.target else {}, reason=item.reason or "",
                      details=json.loads(item.details) if item.details else {}, subject=item.subject,
                      written=True)


carry_audit_entries(entry_update_kwargs)


class DynamoAuditLog:
    """``core.audit.AuditLog``: the lone write of an entry no transaction carried."""

    def write(self, entry: AuditEntry) -> None:
        entry_item(entry).save()
        entry.written = True


def query_index(index: GlobalSecondaryIndex, key: str, low: str, high: str,
                limit: int) -> Iterator[AuditEntryItem]:
    """Newest first, ``low <= sk < high`` (``high`` exclusive: the last item of a page)."""
    for item in index.query(key, AuditEntryItem.sk.between(low, high), scan_index_forward=False,
                            limit=limit + 1, page_size=limit + 1):
        if item.sk >= high:
            continue
        yield item
