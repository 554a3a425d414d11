"""In-memory twin of the statistics store: the same sums and unions as the DynamoDB adapter,
and the same rule (the item an event adds to keeps its id and refuses it again; a need's text
item keeps its own)."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Iterable

from functions.stats.model import (ACCEPTED_STATUS, COUNTERS, OPEN, BuildingMonth, Contribution, DayCategory,
                                   DayItem, DayPeople, NeedText, Suggestion, normalise)


class InMemoryStatsStore:
    def __init__(self) -> None:
        self.day_ids: dict[tuple[str, str], set[str]] = {}
        self.text_ids: dict[tuple[str, str, str], set[str]] = {}
        self.day_items: dict[tuple[str, str], DayItem] = {}
        self.texts: dict[tuple[str, str, str], NeedText] = {}
        self.saved: dict[str, Suggestion] = {}

    def apply(self, c: Contribution) -> bool:
        added = False
        if c.need_text:
            key = (c.week, c.category or "", normalise(c.need_text))
            if c.event_id not in self.text_ids.setdefault(key, set()):
                self.text_ids[key].add(c.event_id)
                found = self.texts.get(key)
                self.texts[key] = NeedText(key[1], key[2], found.text if found else c.need_text,
                                           (found.count if found else 0) + 1)
                added = True
        key2 = (c.day, c.item_category)
        if c.event_id in self.day_ids.setdefault(key2, set()):
            return added
        self.day_ids[key2].add(c.event_id)
        item = self.day_items.get(key2, DayItem(c.day, c.item_category))
        counts = item.counts
        if any(n in COUNTERS for n in c.counts) or c.accept_minutes is not None:
            counts = counts or DayCategory(c.day, c.item_category)
            changes = {n: getattr(counts, n) + v for n, v in c.counts.items() if n in COUNTERS}
            if c.accept_minutes is not None:
                changes["accept_minutes"] = counts.accept_minutes + (c.accept_minutes,)
            counts = replace(counts, **changes)
        self.day_items[key2] = replace(item, counts=counts, active=item.active | c.active,
                                       households=item.households | c.households,
                                       settlements=item.settlements + ((c.settlement,) if c.settlement else ()))
        return True

    def days(self, start: date, end: date) -> list[DayItem]:
        return sorted((d for (day, _), d in self.day_items.items() if start.isoformat() <= day <= end.isoformat()),
                      key=lambda d: (d.day, d.category))

    def earlier_people(self, start: date, end: date) -> list[DayPeople]:
        return []  # the former layout never existed here

    def earlier_buildings(self, month: str) -> list[BuildingMonth]:
        return []

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
        def order_free(item: DayItem) -> DayItem:
            counts = item.counts and replace(item.counts, accept_minutes=tuple(sorted(item.counts.accept_minutes)))
            return replace(item, counts=counts, settlements=tuple(sorted(item.settlements)))

        return (sorted((k, sorted(v)) for k, v in self.day_ids.items()),
                sorted((k, sorted(v)) for k, v in self.text_ids.items()),
                sorted((k, order_free(v)) for k, v in self.day_items.items()), sorted(self.texts.items()))
