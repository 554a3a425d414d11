"""Statistics use cases: apply one event (the ``stats`` queue), read a range (admins), read a
month (open data), find high-frequency needs (the weekly schedule) and accept one."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from typing import Any, Callable

from functions.core import clock
from functions.core.errors import NotFound
from functions.core.events import DomainEvent
from functions.core.ids import derived_id
from functions.core.messaging import PoisonMessage
from functions.core.observability import count, logger
from functions.stats.model import (ACCEPTED_STATUS, EVENT_TYPES, OPEN, SUGGESTION_WINDOW_DAYS, AlreadyAccepted,
                                   Range, Suggestion, buildings_of, checked_range, cluster, contribution, frequent,
                                   households_of, month_range, open_data, read_window, summarise, weeks_back)
from functions.stats.ports import CreditItems, Liabilities, Names, Places, StatsStore


class StatsService:
    def __init__(self, store: StatsStore, places: Places, names: Names, ledger: Liabilities,
                 credit_items: CreditItems, now: Callable[[], datetime] = clock.now):
        self.store, self.places, self.names, self.ledger = store, places, names, ledger
        self.credit_items, self.now = credit_items, now

    # --- events (the ``stats`` queue) -------------------------------------------------------------
    def record(self, event: DomainEvent) -> bool:
        """Apply one event once; a redelivery (or the same event out of order) adds nothing."""
        if event.type not in EVENT_TYPES:
            raise PoisonMessage(f"stats does not handle {event.type}")
        buildings = {h: b for h in households_of(event) if (b := self.places.building_of(h))}
        applied = self.store.apply(contribution(event, buildings))
        if applied:
            count("StatsEventApplied")
        return applied

    # --- reads ------------------------------------------------------------------------------------
    def range_stats(self, start: date, end: date) -> dict[str, Any]:
        wanted = checked_range(start, end)
        window = read_window(wanted)
        items = self.store.days(window.start, window.end)
        days = [i.counts for i in items if i.counts is not None]
        people = [i.people for i in items] + self.store.earlier_people(window.start, window.end)
        figures = summarise(wanted, days, people, dict(self.ledger.outstanding()))
        top = figures["top_volunteers"]
        names = self.names.names_of([t["resident_id"] for t in top]) if top else {}
        figures["top_volunteers"] = [{"resident_id": t["resident_id"], "name": names.get(t["resident_id"], ""),
                                      "minutes": t["minutes"]} for t in top]
        return figures

    def month_stats(self, year: int, month: int) -> dict[str, Any]:
        span: Range = month_range(year, month)
        label = f"{year:04d}-{month:02d}"
        items = self.store.days(span.start, span.end)
        return open_data(label, [i.counts for i in items if i.counts is not None],
                         buildings_of(label, items, self.store.earlier_buildings(label)))

    # --- high-frequency needs (the weekly schedule) ---------------------------------------------------
    def find_suggestions(self, window_days: int = SUGGESTION_WINDOW_DAYS) -> list[Suggestion]:
        today = self.now().astimezone(clock.CHINA_TZ).date()
        texts = self.store.need_texts(weeks_back(today, window_days))
        found = []
        for c in frequent(cluster(texts)):
            suggestion = Suggestion(id=derived_id("sug", c.category, c.key), text=c.text, category=c.category,
                                    count=c.count, window_days=window_days, status=OPEN, key=c.key)
            self.store.save_suggestion(suggestion)
            found.append(suggestion)
        logger.info("suggestions", extra={"texts": len(texts), "frequent": len(found)})
        return found

    def suggestions(self) -> list[Suggestion]:
        return self.store.suggestions()

    def accept(self, suggestion_id: str, actor: str) -> Suggestion:
        suggestion = self.store.get_suggestion(suggestion_id)
        if suggestion is None:
            raise NotFound("没有这条建议", {"suggestion_id": suggestion_id})
        if suggestion.status == ACCEPTED_STATUS:
            raise AlreadyAccepted(details={"suggestion_id": suggestion_id, "accepted_as": suggestion.accepted_as})
        item = self.credit_items.make_credit_item(suggestion.text, suggestion.category, actor)
        if not self.store.mark_accepted(suggestion_id, item):
            raise AlreadyAccepted(details={"suggestion_id": suggestion_id})
        return replace(suggestion, status=ACCEPTED_STATUS, accepted_as=item)

