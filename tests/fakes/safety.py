"""In-memory twins of the safety ports: insurance records, photo storage, the access log."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Callable, Iterator

from functions.core import clock
from functions.safety.model import (ACTIVE, CANCELLED, CONTENT_TYPES, AccessLogEntry, ExportRange, InsuranceRecord,
                                    ObjectHead, PendingUpload, StoredObject)


class InMemoryInsuranceRecordStore:
    def __init__(self) -> None:
        self.records: dict[str, InsuranceRecord] = {}
        self.writes = 0

    def record_write(self, record: InsuranceRecord) -> Any:
        store = self

        class Write:
            def holds_in_memory(self) -> bool:
                return True

            def apply_in_memory(self) -> None:
                store.records[record.request_id] = record
                store.writes += 1

        return Write()

    def add(self, record: InsuranceRecord) -> bool:
        if record.request_id in self.records:
            return False
        self.records[record.request_id] = record
        self.writes += 1
        return True

    def get(self, request_id: str) -> InsuranceRecord | None:
        return self.records.get(request_id)

    def exists(self, request_id: str) -> bool:
        return request_id in self.records

    def mark_cancelled(self, request_id: str, at: datetime, volunteer_id: str | None = None) -> bool:
        record = self.records.get(request_id)
        if record is None or record.status != ACTIVE or volunteer_id not in (None, record.volunteer_id):
            return False
        self.records[request_id] = replace(record, status=CANCELLED, cancelled_at=at)
        self.writes += 1
        return True

    def between(self, days: ExportRange, limit: int,
                cursor: dict[str, Any] | None) -> tuple[list[InsuranceRecord], dict[str, Any] | None]:
        matching = sorted((r for r in self.records.values() if days.first_day <= r.service_date <= days.last_day),
                          key=lambda r: (r.service_start, r.request_id))
        offset = int((cursor or {}).get("offset", 0))
        page = matching[offset:offset + limit]
        more = offset + limit < len(matching)
        return page, ({"offset": offset + limit} if more else None)


class InMemoryObjectStorage:
    """Objects by key; pre-signed URLs are opaque strings naming what they would allow."""

    def __init__(self, now: Callable[[], datetime] = clock.now):
        self.objects: dict[str, StoredObject] = {}
        self.content_types: dict[str, str] = {}
        self.signed: list[dict[str, Any]] = []
        self.heads = 0
        self.now = now

    def put(self, key: str, size: int, last_modified: datetime | None = None,
            content_type: str | None = None) -> None:
        """Store an object; its type defaults to the one its key's extension was issued for."""
        if content_type is None:
            extension = key.rsplit(".", 1)[-1]
            content_type = next((t for t, e in CONTENT_TYPES.items() if e == extension), "application/octet-stream")
        self.objects[key] = StoredObject(key, size, last_modified or self.now())
        self.content_types[key] = content_type

    def presign_put(self, key: str, content_type: str, size: int | None, expires_in: int) -> str:
        self.signed.append({"method": "PUT", "key": key, "content_type": content_type, "size": size,
                            "expires_in": expires_in})
        return f"memory://evidence/{key}?method=PUT&content_type={content_type}&size={size}"

    def presign_post(self, key: str, content_type: str, max_bytes: int, expires_in: int) -> dict[str, Any]:
        self.signed.append({"method": "POST", "key": key, "content_type": content_type, "max_bytes": max_bytes,
                            "expires_in": expires_in})
        return {"url": "memory://evidence/", "fields": {"key": key, "Content-Type": content_type}}

    def head(self, key: str) -> ObjectHead | None:
        self.heads += 1
        stored = self.objects.get(key)
        return None if stored is None else ObjectHead(key, stored.size, self.content_types[key])

    def presign_download(self, key: str, expires_in: int) -> str:
        self.signed.append({"method": "GET", "key": key, "expires_in": expires_in})
        return f"memory://evidence/{key}?method=GET&expires_in={expires_in}"

    def list(self, prefix: str) -> Iterator[StoredObject]:
        return iter([o for k, o in sorted(self.objects.items()) if k.startswith(prefix)])

    def delete(self, keys: list[str]) -> int:
        for key in keys:
            self.objects.pop(key, None)
            self.content_types.pop(key, None)
        return len(keys)


class InMemoryAccessLog:
    def __init__(self) -> None:
        self.entries: list[AccessLogEntry] = []

    def record(self, entry: AccessLogEntry) -> None:
        self.entries.append(entry)

    def for_request(self, request_id: str, limit: int, cursor: dict[str, Any] | None):
        matching = sorted((e for e in self.entries if e.request_id == request_id),
                          key=lambda e: e.viewed_at, reverse=True)
        offset = int((cursor or {}).get("offset", 0))
        more = offset + limit < len(matching)
        return matching[offset:offset + limit], ({"offset": offset + limit} if more else None)


class InMemoryUploadRegister:
    def __init__(self) -> None:
        self.uploads: dict[str, PendingUpload] = {}

    def add(self, upload: PendingUpload) -> None:
        self.uploads[upload.key] = upload

    def due(self, issued_before: datetime, limit: int) -> list[PendingUpload]:
        due = sorted((u for u in self.uploads.values() if u.issued_at < issued_before), key=lambda u: u.issued_at)
        return due[:limit]

    def remove(self, uploads: list[PendingUpload]) -> None:
        for upload in uploads:
            self.uploads.pop(upload.key, None)
