"""In-memory twin of the statistics store: the same sums and unions as the DynamoDB adapter,
and the same all-or-nothing rule (an event whose marker exists adds nothing)."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Iterable

from functions.stats.model import (ACCEPTED_STATUS, COUNTERS, OPEN, BuildingMonth, Contribution, DayCategory,
                                   DayPeople, NeedText, Suggestion, normalise)


class InMemoryStatsStore:
    def __init__(self) -> None:
        self.applied: set[str] = set()
        self.day_items: dict[tuple[str, str], DayCategory] = {}
        self.people_items: dict[str, DayPeople] = {}
        self.building_items: dict[tuple[str, str], BuildingMonth] = {}
        self.texts: dict[tuple[str, str, str], NeedText] = {}
        self.saved: dict[str, Suggestion] = {}

    def apply(self, c: Contribution) -> bool:
        if c.event_id in self.applied:
            return False
        self.applied.add(c.event_id)
        if c.category and (c.counts or c.accept_minutes is not None):
            item = self.day_items.get((c.day, c.category), DayCategory(c.day, c.category))
            changes = {n: getattr(item, n) + v for n, v in c.counts.items() if n in COUNTERS}
            if c.accept_minutes is not None:
                changes["accept_minutes"] = item.accept_minutes + (c.accept_minutes,)
            self.day_items[(c.day, c.category)] = replace(item, **changes)
        if c.residents or c.households or c.credit:
            item = self.people_items.get(c.day, DayPeople(c.day))
            self.people_items[c.day] = replace(item, residents=item.residents | c.residents,
                                               households=item.households | c.households,
                                               credits=item.credits + ((c.credit,) if c.credit else ()))
        for building, residents in c.building_residents.items():
            item = self.building_items.get((c.month, building), BuildingMonth(c.month, building))
            self.building_items[(c.month, building)] = replace(item, residents=item.residents | residents)
        if c.building_services:
            building, minutes = c.building_services
            item = self.building_items.get((c.month, building), BuildingMonth(c.month, building))
            self.building_items[(c.month, building)] = replace(item, services=item.services + 1,
                                                               minutes_credited=item.minutes_credited + minutes)
        if c.need_text:
            key = (c.week, c.category or "", normalise(c.need_text))
            found = self.texts.get(key)
            self.texts[key] = NeedText(key[1], key[2], found.text if found else c.need_text,
                                       (found.count if found else 0) + 1)
        return True

    def days(self, start: date, end: date) -> list[DayCategory]:
        return sorted((d for (day, _), d in self.day_items.items() if start.isoformat() <= day <= end.isoformat()),
                      key=lambda d: (d.day, d.category))

    def people(self, start: date, end: date) -> list[DayPeople]:
        return [p for day, p in sorted(self.people_items.items()) if start.isoformat() <= day <= end.isoformat()]

    def buildings(self, month: str) -> list[BuildingMonth]:
        return [b for (m, _), b in sorted(self.building_items.items()) if m == month]

    def need_texts(self, weeks: Iterable[str]) -> list[NeedText]:
        wanted = set(weeks)
        return [t for (week, _, _), t in sorted(self.texts.items()) if week in wanted]

    def save_suggestion(self, suggestion: Suggestion) -> None:
        current = self.saved.get(suggestion.id)
        if current is None or current.status == OPEN:
            self.saved[suggestion.id] = suggestion

    def suggestions(self) -> list[Suggestion]:
        return sorted(self.saved.values(), key=lambda s: (s.status != OPEN, -s.count, s.id))

    def get_suggestion(self, suggestion_id: str) -> Suggestion | None:
        return self.saved.get(suggestion_id)

    def mark_accepted(self, suggestion_id: str, accepted_as: str) -> bool:
        current = self.saved.get(suggestion_id)
        if current is None or current.status != OPEN:
            return False
        self.saved[suggestion_id] = replace(current, status=ACCEPTED_STATUS, accepted_as=accepted_as)
        return True

    def state(self) -> tuple:
        """Everything the store holds, order-free: what two deliveries must agree on."""
        return (sorted(self.applied),
                sorted((k, replace(v, accept_minutes=tuple(sorted(v.accept_minutes))))
                       for k, v in self.day_items.items()),
                sorted((k, replace(v, credits=tuple(sorted(v.credits)))) for k, v in self.people_items.items()),
                sorted(self.building_items.items()), sorted(self.texts.items()))
