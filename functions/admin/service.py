"""Administration use cases: reading the audit log (admins: by actor, action and time;
residents: the entries about themselves and their household) and the volunteer-record export."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Callable, Iterable

from functions.admin.model import AuditRange, VolunteerRecord, audit_range
from functions.admin.ports import AuditReader, VolunteerRecordSource
from functions.core import clock
from functions.core.audit import AuditEntry
from functions.core.validation import field_error


def _sort_key(entry: AuditEntry) -> str:
    return f"{clock.isoformat(entry.at)}#{entry.id}"


@dataclass
class AuditPage:
    items: list[AuditEntry]
    next_before: str | None


class AuditQueries:
    def __init__(self, reader: AuditReader, now: Callable[[], datetime] = clock.now):
        self.reader = reader
        self.now = now

    def _window(self, start: date | datetime | None, end: date | datetime | None,
                before: str | None) -> AuditRange:
        if start is not None and end is not None and _as_key(start) > _as_key(end):
            raise field_error("from", "不能晚于结束时间")
        return audit_range(start, end, self.now(), before)

    def for_admin(self, *, actor: str | None, action: str | None, start: date | datetime | None,
                  end: date | datetime | None, limit: int, before: str | None) -> AuditPage:
        """One index Query by actor or by action (the other filter applied to what it
        returns); with neither, the month partitions newest first until the page is full."""
        window = self._window(start, end, before)
        if actor:
            found = [e for e in self.reader.by_actor(actor, window, limit if not action else 4 * limit)
                     if not action or e.action == action]
        elif action:
            found = self.reader.by_action(action, window, limit)
        else:
            found = []
            for month in window.months():
                found += self.reader.by_month(month, window, limit - len(found))
                if len(found) >= limit:
                    break
        return _page(found, limit)

    def for_resident(self, resident_id: str, household_id: str | None, *, limit: int,
                     before: str | None) -> AuditPage:
        """Entries about the resident or their household, merged newest first."""
        window = self._window(None, None, before)
        found = self.reader.by_subject(resident_id, window, limit)
        if household_id:
            found += self.reader.by_subject(household_id, window, limit)
        return _page(sorted(found, key=_sort_key, reverse=True), limit)


def _as_key(value: date | datetime) -> str:
    return value.isoformat()[:10] if not isinstance(value, datetime) else \
        clock.isoformat(value.astimezone(clock.CHINA_TZ))[:10]


def _page(found: list[AuditEntry], limit: int) -> AuditPage:
    items = found[:limit]
    more = len(found) >= limit and items
    return AuditPage(items, _sort_key(items[-1]) if more else None)


class VolunteerRecords:
    def __init__(self, source: VolunteerRecordSource):
        self.source = source

    def between(self, first_day: date, last_day: date) -> Iterable[VolunteerRecord]:
        return self.source.records(first_day.isoformat(), last_day.isoformat())
