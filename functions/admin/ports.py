"""What the administration use cases need from outside: the audit log's indexes (kept by
``adapters.audit``) and, for the exports, the settled services and closed activities of a
date range (handed in by ``bootstrap`` from the requests and activities domains)."""
from __future__ import annotations

from typing import Iterable, Protocol

from functions.admin.model import AuditRange, VolunteerRecord
from functions.core.audit import AuditEntry


class AuditReader(Protocol):
    def by_actor(self, actor_id: str, window: AuditRange, limit: int) -> list[AuditEntry]: ...

    def by_action(self, action: str, window: AuditRange, limit: int) -> list[AuditEntry]: ...

    def by_subject(self, subject: str, window: AuditRange, limit: int) -> list[AuditEntry]: ...

    def by_month(self, month: str, window: AuditRange, limit: int) -> list[AuditEntry]:
        """Newest first within ``window``, at most ``limit`` entries."""


class VolunteerRecordSource(Protocol):
    def records(self, first_day: str, last_day: str) -> Iterable[VolunteerRecord]:
        """Every completed service or activity participation of the days, oldest day first,
        read page by page from the source's date index (never a Scan)."""
