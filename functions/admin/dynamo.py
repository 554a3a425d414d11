"""The audit log's reader on the ``audit-entries`` table (its model lives in
``adapters.audit``: every domain's transaction may write an entry)."""
from __future__ import annotations

from functions.adapters.audit import AuditEntryItem, query_index, to_entry
from functions.admin.model import AuditRange
from functions.core.audit import AuditEntry


class DynamoAuditReader:
    """``admin.ports.AuditReader``: one Query per call, newest first, ``limit`` items."""

    @staticmethod
    def _read(index, key: str, window: AuditRange, limit: int) -> list[AuditEntry]:
        if limit <= 0:
            return []
        return [to_entry(item) for item in query_index(index, key, window.low, window.high, limit)][:limit]

    def by_actor(self, actor_id: str, window: AuditRange, limit: int) -> list[AuditEntry]:
        return self._read(AuditEntryItem.by_actor, actor_id, window, limit)

    def by_action(self, action: str, window: AuditRange, limit: int) -> list[AuditEntry]:
        return self._read(AuditEntryItem.by_action, action, window, limit)

    def by_subject(self, subject: str, window: AuditRange, limit: int) -> list[AuditEntry]:
        return self._read(AuditEntryItem.by_subject, subject, window, limit)

    def by_month(self, month: str, window: AuditRange, limit: int) -> list[AuditEntry]:
        return self._read(AuditEntryItem.by_month, month, window, limit)
