"""What the administration use cases need from outside: the audit log's indexes (kept by
``adapters.audit``) and, for the exports, the settled services and closed activities of a
date range (handed in by ``bootstrap`` from the requests and activities domains)."""
from __future__ import annotations

from typing import Iterable, Mapping, Protocol

from datetime import date

from functions.admin.model import AuditRange, Engagement
from functions.core.audit import AuditEntry


class AuditReader(Protocol):
    def by_actor(self, actor_id: str, window: AuditRange, limit: int) -> list[AuditEntry]: ...

    def by_action(self, action: str, window: AuditRange, limit: int) -> list[AuditEntry]: ...

    def by_subject(self, subject: str, window: AuditRange, limit: int) -> list[AuditEntry]: ...

    def by_month(self, month: str, window: AuditRange, limit: int) -> list[AuditEntry]:
        """Newest first within ``window``, at most ``limit`` entries."""


class EngagementSource(Protocol):
    def between(self, first_day: date, last_day: date) -> Iterable[Engagement]:
        """Completed services (or activity participations) of the days, read page by page
        from the source's date index (never a Scan)."""


class People(Protocol):
    def names(self, resident_ids: Iterable[str]) -> Mapping[str, str]:
        """resident id -> name, for the export's 姓名 (unknown ids are left out)."""
