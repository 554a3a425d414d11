"""What the safety use cases need from outside: the insurance and access-log stores, private
object storage for photos, and the requests they are about."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Protocol

from functions.requests.model import ServiceRequest
from functions.safety.model import (
    AccessLogEntry, ExportRange, InsuranceRecord, ObjectHead, PendingUpload, StoredObject,
)


class InsuranceRecordStore(Protocol):
    def record_write(self, record: InsuranceRecord) -> Any:
        """The record as a write of another transaction (``add_to``), replacing any earlier one."""

    def add(self, record: InsuranceRecord) -> bool:
        """Write unless a record for the request exists; True if this call wrote it."""

    def get(self, request_id: str) -> InsuranceRecord | None: ...

    def exists(self, request_id: str) -> bool: ...

    def mark_cancelled(self, request_id: str, at: datetime, volunteer_id: str | None = None) -> bool:
        """active → cancelled (only if it insures ``volunteer_id``, when given); False otherwise."""

    def between(self, days: ExportRange, limit: int,
                cursor: dict[str, Any] | None) -> tuple[list[InsuranceRecord], dict[str, Any] | None]:
        """Records whose service date is in ``days``, by service start; ``cursor`` continues."""


class ActivitySignups(Protocol):
    def is_active(self, activity_id: str, resident_id: str, seq: int) -> bool:
        """Whether that sign-up (the resident's ``seq``-th for the activity) still stands."""


class RequestReader(Protocol):
    def get(self, request_id: str) -> ServiceRequest:
        """Raises NotFound for an unknown id."""


class ObjectStorage(Protocol):
    def presign_put(self, key: str, content_type: str, size: int | None, expires_in: int) -> str:
        """A PUT URL for exactly ``key`` and ``content_type`` and, when given, exactly ``size`` bytes."""

    def presign_post(self, key: str, content_type: str, max_bytes: int, expires_in: int) -> dict[str, Any]:
        """A POST policy for exactly ``key`` and ``content_type``, 1..``max_bytes`` bytes:
        ``{"url", "fields"}``."""

    def head(self, key: str) -> ObjectHead | None:
        """Size and type of the object, None when there is none."""

    def presign_download(self, key: str, expires_in: int) -> str: ...

    def list(self, prefix: str) -> Iterator[StoredObject]: ...

    def delete(self, keys: list[str]) -> int:
        """Delete the keys (absent ones are fine); returns how many were requested."""


class AccessLog(Protocol):
    def record(self, entry: AccessLogEntry) -> None: ...

    def for_request(self, request_id: str, limit: int,
                    cursor: dict[str, Any] | None) -> tuple[list[AccessLogEntry], dict[str, Any] | None]: ...


class UploadRegister(Protocol):
    def add(self, upload: PendingUpload) -> None: ...

    def due(self, issued_before: datetime, limit: int) -> list[PendingUpload]:
        """Registered uploads issued before ``issued_before``, oldest first, at most ``limit``."""

    def remove(self, uploads: list[PendingUpload]) -> None:
        """Forget these uploads (absent ones are fine)."""
