"""DynamoDB adapter of statistics: one table, ``stats-aggregates`` (pk, sk).

| pk                 | sk                     | what                                                      |
|--------------------|------------------------|-----------------------------------------------------------|
| ``day``            | ``<date>#<category>``  | the one item an event adds to: posted, accepted, completed, cancelled, minutes credited (``ADD``), the exact accept minutes, the residents active (``<building>|<resident>``), households, settlements (``<building>|<volunteer>|<minutes>``) and ``ev``, the ids of the events it took. Category ``-``: activity sign-ups |
| ``texts#<week>``   | ``<category>#<key>``   | a need that is not a credit item, normalised, with its first text, count and ``ev`` |
| ``suggestions``    | suggestion id          | the high-frequency needs found by the weekly schedule      |
| ``people``, ``month#<YYYY-MM>``, ``applied#<event>`` | | the former layout (before issue 14): read, never written |

Each event is one conditional ``UpdateItem`` of its (day, category) item — the additions and
the event's id in the same item, under ``NOT contains(ev, :id)`` — not a transaction of a
marker and four aggregates: 1 WRU per KB instead of 2 per KB per item. A redelivery fails the
condition and adds nothing. A posted need that is not a credit item also adds to its week's text
item, which keeps its own ids: a crash between the two writes is repaired by the redelivery
(the item that has the id refuses it, the other takes it). The item an event adds to is a
function of the event (its community day and category), so every copy of an event meets the
same ``ev``; an id is kept as 12 bytes of its SHA-256 (a collision among the ≤ 10⁴ events of
one item: ~10⁻²⁰). A range is read with one Query of the ``day`` partition between two sort keys
(items per day and category, never per order), plus one of the former ``people`` partition.

Items written before issue 14 (the marker in ``applied#<event>``, counters without ``ev``) are
told apart by the condition ``attribute_exists(ev) OR attribute_not_exists(pk)``: the first event
into such an item after the upgrade, and every later one (the item keeps ``legacy``), asks the
old marker first, so an event applied by the old code and redelivered after the upgrade is not
added twice. Only the items of the upgrade's day (and redeliveries older than it) pay that read.
"""
from __future__ import annotations

import hashlib
from datetime import date
from typing import Any, Iterable

from pynamodb.attributes import (BinarySetAttribute, ListAttribute, NumberAttribute, UnicodeAttribute,
                                 UnicodeSetAttribute)
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.models import Model

from functions.adapters.dynamo import condition_failed, make_meta, table
from functions.core import clock
from functions.stats.model import (COUNTERS, OPEN, BuildingMonth, Contribution, DayCategory, DayItem, DayPeople,
                                   NeedText, Suggestion, ACCEPTED_STATUS, normalise)

_HIGH = "\uffff"
_SEP = "|"


@table
class StatsItem(Model):
    Meta = make_meta("stats-aggregates", ttl_attribute="expires_at")
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    posted = NumberAttribute(null=True)
    accepted = NumberAttribute(null=True)
    completed = NumberAttribute(null=True)
    cancelled = NumberAttribute(null=True)
    minutes_credited = NumberAttribute(null=True)
    accept_minutes = ListAttribute(of=NumberAttribute, null=True)
    active = UnicodeSetAttribute(null=True)
    settled = ListAttribute(of=UnicodeAttribute, null=True)
    ev = BinarySetAttribute(null=True, legacy_encoding=False)
    legacy = NumberAttribute(null=True)
    # the former layout (people, month#<m>), read only
    residents = UnicodeSetAttribute(null=True)
    households = UnicodeSetAttribute(null=True)
    credits = ListAttribute(of=UnicodeAttribute, null=True)
    services = NumberAttribute(null=True)
    # texts, suggestions
    text = UnicodeAttribute(null=True)
    count = NumberAttribute(null=True)
    category = UnicodeAttribute(null=True)
    key = UnicodeAttribute(null=True)
    window_days = NumberAttribute(null=True)
    status = UnicodeAttribute(null=True)
    accepted_as = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)


def event_key(event_id: str) -> bytes:
    return hashlib.sha256(event_id.encode()).digest()[:12]


def _append(attribute: Any, values: list[Any]) -> Any:
    return attribute.set((attribute | []).append(values))


def _writes(c: Contribution) -> dict[tuple[str, str], list[Any]]:
    """The update actions of one contribution, by item: its (day, category) item, always (even
    with nothing to add, so a redelivery is told apart), and its week's text item."""
    actions = [getattr(StatsItem, name).add(value) for name, value in c.counts.items() if name in COUNTERS]
    if c.accept_minutes is not None:
        actions.append(_append(StatsItem.accept_minutes, [c.accept_minutes]))
    if c.active:
        actions.append(StatsItem.active.add({f"{b}{_SEP}{r}" for b, r in c.active}))
    if c.households:
        actions.append(StatsItem.households.add(set(c.households)))
    if c.settlement:
        building, volunteer, minutes = c.settlement
        actions.append(_append(StatsItem.settled, [f"{building}{_SEP}{volunteer}{_SEP}{minutes}"]))
    writes = {("day", f"{c.day}#{c.item_category}"): actions}
    if c.need_text:
        writes[(f"texts#{c.week}", f"{c.category}#{normalise(c.need_text)}")] = [
            StatsItem.count.add(1), StatsItem.text.set(StatsItem.text | c.need_text),
            StatsItem.category.set(c.category or "")]
    return writes


def _day(item: StatsItem) -> DayItem:
    day, category = item.sk.split("#", 1)
    counted = any(getattr(item, name) is not None for name in COUNTERS)
    counts = DayCategory(day, category, posted=int(item.posted or 0), accepted=int(item.accepted or 0),
                         completed=int(item.completed or 0), cancelled=int(item.cancelled or 0),
                         minutes_credited=int(item.minutes_credited or 0),
                         accept_minutes=tuple(int(m) for m in item.accept_minutes or ())) if counted else None
    active = frozenset(tuple(entry.rsplit(_SEP, 1)) for entry in item.active or ())
    settled = []
    for entry in item.settled or ():
        building, volunteer, minutes = entry.rsplit(_SEP, 2)
        settled.append((building, volunteer, int(minutes)))
    return DayItem(day, category, counts, active, frozenset(item.households or ()), tuple(settled))  # type: ignore[arg-type]


def _people(item: StatsItem) -> DayPeople:
    credits = []
    for entry in item.credits or ():
        resident, _, minutes = entry.rpartition(":")
        credits.append((resident, int(minutes)))
    return DayPeople(item.sk, frozenset(item.residents or ()), frozenset(item.households or ()), tuple(credits))


def _suggestion(item: StatsItem) -> Suggestion:
    return Suggestion(id=item.sk, text=item.text or "", category=item.category or "", count=int(item.count or 0),
                      window_days=int(item.window_days or 0), status=item.status or OPEN, key=item.key or "",
                      accepted_as=item.accepted_as)


class DynamoStatsStore:
    def apply(self, contribution: Contribution) -> bool:
        key = event_key(contribution.event_id)
        added = False
        for (pk, sk), actions in _writes(contribution).items():
            added = self._add(pk, sk, actions, key, contribution.event_id) or added
        return added

    def _add(self, pk: str, sk: str, actions: list[Any], key: bytes, event_id: str) -> bool:
        """One item takes the event once: False when it holds the id (or, written before issue
        14, the event's old marker exists)."""
        item = StatsItem(pk, sk)
        took = StatsItem.ev.add({key})
        fresh = ~StatsItem.ev.contains(key) & StatsItem.legacy.does_not_exist() & (
            StatsItem.ev.exists() | StatsItem.pk.does_not_exist())
        try:
            item.update(actions=[*actions, took], condition=fresh)
            return True
        except UpdateError as error:
            if not condition_failed(error):
                raise
        # Refused: the id is there (a redelivery), or the item is of the former layout.
        try:
            current = StatsItem.get(pk, sk, consistent_read=True)
        except DoesNotExist:
            current = None
        if current is not None and key in (current.ev or set()):
            return False
        if self._old_marker(event_id):
            return False
        try:
            item.update(actions=[*actions, took, StatsItem.legacy.set(1)], condition=~StatsItem.ev.contains(key))
            return True
        except UpdateError as error:
            if condition_failed(error):
                return False  # taken meanwhile by a concurrent copy
            raise

    @staticmethod
    def _old_marker(event_id: str) -> bool:
        try:
            StatsItem.get(f"applied#{event_id}", "-", consistent_read=True)
            return True
        except DoesNotExist:
            return False

    def days(self, start: date, end: date) -> list[DayItem]:
        return [_day(i) for i in StatsItem.query("day", StatsItem.sk.between(start.isoformat(), f"{end}#{_HIGH}"))]

    def earlier_people(self, start: date, end: date) -> list[DayPeople]:
        return [_people(i) for i in StatsItem.query("people", StatsItem.sk.between(start.isoformat(), end.isoformat()))]

    def earlier_buildings(self, month: str) -> list[BuildingMonth]:
        return [BuildingMonth(month, i.sk[len("bld#"):], frozenset(i.residents or ()), int(i.services or 0),
                              int(i.minutes_credited or 0)) for i in StatsItem.query(f"month#{month}")]

    def need_texts(self, weeks: Iterable[str]) -> list[NeedText]:
        out = []
        for week in weeks:
            for item in StatsItem.query(f"texts#{week}"):
                category, _, key = item.sk.partition("#")
                out.append(NeedText(category, key, item.text or key, int(item.count or 0)))
        return out

    def save_suggestion(self, suggestion: Suggestion) -> None:
        try:
            StatsItem("suggestions", suggestion.id).update(actions=[
                StatsItem.text.set(suggestion.text), StatsItem.category.set(suggestion.category),
                StatsItem.count.set(suggestion.count), StatsItem.window_days.set(suggestion.window_days),
                StatsItem.key.set(suggestion.key), StatsItem.status.set(StatsItem.status | OPEN),
                StatsItem.updated_at.set(clock.isoformat(clock.now()))],
                condition=StatsItem.status.does_not_exist() | (StatsItem.status == OPEN))
        except UpdateError as error:
            if not condition_failed(error):
                raise  # accepted already: its figures stay as they were when accepted

    def suggestions(self) -> list[Suggestion]:
        items = [_suggestion(i) for i in StatsItem.query("suggestions", limit=200)]
        return sorted(items, key=lambda s: (s.status != OPEN, -s.count, s.id))

    def get_suggestion(self, suggestion_id: str) -> Suggestion | None:
        try:
            return _suggestion(StatsItem.get("suggestions", suggestion_id, consistent_read=True))
        except DoesNotExist:
            return None

    def mark_accepted(self, suggestion_id: str, accepted_as: str) -> bool:
        try:
            StatsItem("suggestions", suggestion_id).update(
                actions=[StatsItem.status.set(ACCEPTED_STATUS), StatsItem.accepted_as.set(accepted_as),
                         StatsItem.updated_at.set(clock.isoformat(clock.now()))],
                condition=StatsItem.status == OPEN)
        except UpdateError as error:
            if condition_failed(error):
                return False
            raise
        return True
