"""Administration use cases: reading the audit log (admins: by actor, action and time;
residents: the entries about themselves and their household) and the volunteer-record export."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Callable, Iterable

from functions.admin.model import (MAX_EXPORT_ROWS, AuditRange, Engagement, VolunteerRecord, audit_range, export_days,
                                   too_many_rows, volunteer_record)
from functions.admin.ports import AuditReader, EngagementSource, People
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
    """The national volunteer-record export: one row per volunteer per completed service or
    activity of the date range, oldest day first. Sources are read through their date indexes;
    past ``MAX_EXPORT_ROWS`` rows the export is refused (422) rather than cut short."""

    def __init__(self, sources: Iterable[EngagementSource], people: People, community_id: str, organiser: str):
        self.sources = list(sources)
        self.people = people
        self.community_id = community_id
        self.organiser = organiser

    def between(self, first_day: date, last_day: date) -> list[VolunteerRecord]:
        first_day, last_day = export_days(first_day, last_day)
        engagements: list[Engagement] = []
        for source in self.sources:
            for engagement in source.between(first_day, last_day):
                engagements.append(engagement)
                if len(engagements) > MAX_EXPORT_ROWS:
                    raise too_many_rows()
        names = self.people.names({e.volunteer_id for e in engagements})
        rows = [volunteer_record(e, names.get(e.volunteer_id, ""), self.community_id, self.organiser)
                for e in engagements]
        return sorted(rows, key=lambda r: (r.service_date, r.volunteer_number, r.certificate_number))
