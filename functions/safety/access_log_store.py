"""DynamoDB adapter of the evidence access log (PIPL: who viewed which request's photos, when).

Hash key ``request_id``, range key ``viewed_key`` = ``<viewed_at>#<random>`` so the log of one
request reads newest first with one Query. Entries expire (TTL) after three years: long enough
for complaints and audits, not kept forever.
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from functions.core import clock
from functions.core.errors import ValidationError
from functions.core.storage import make_meta, table
from functions.safety.evidence import AccessLogEntry

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
            raise ValidationError(details={"fields": {"cursor": "is not a cursor this API returned"}})
        query = EvidenceAccessItem.query(request_id, scan_index_forward=False, limit=limit,
                                         last_evaluated_key=cursor)
        entries = [AccessLogEntry(item.request_id, item.viewer_id, item.viewer_role, int(item.photo_count),
                                  clock.parse_iso(item.viewed_at)) for item in query]
        return entries, query.last_evaluated_key
