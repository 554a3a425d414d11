"""DynamoDB adapter of statistics: one table, ``stats-aggregates`` (pk, sk).

| pk                 | sk                     | what                                                      |
|--------------------|------------------------|-----------------------------------------------------------|
| ``day``            | ``<date>#<category>``  | posted, accepted, completed, cancelled, minutes credited (``ADD``) and the exact accept minutes (``list_append``) |
| ``people``         | ``<date>``             | residents, households active that day (string sets), the day's credits ``<resident>:<minutes>`` |
| ``month#<YYYY-MM>``| ``bld#<building>``     | residents active in the building, services and minutes credited to them (open data) |
| ``texts#<week>``   | ``<category>#<key>``   | a need that is not a credit item, normalised, with its first text and count |
| ``suggestions``    | suggestion id          | the high-frequency needs found by the weekly schedule      |
| ``applied#<event>``| ``-``                  | the marker that an event was applied (TTL 30 days; SQS keeps a message 14 at most) |

An event's additions and its marker are one ``TransactWriteItems`` (at most 6 items) whose
marker is written under ``attribute_not_exists``: a redelivered event cancels the whole
transaction and adds nothing. A range is read with one Query per partition (``day``, ``people``)
between two sort keys: items per day (at most one per category, one for the people), never per
order. Every event writes the ``day`` and ``people`` partitions: one community's events are far
below a partition's 1,000 writes per second.
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Iterable

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.models import Model

from functions.adapters.dynamo import (cancelled_by_condition, condition_failed, epoch, make_meta, new_transaction,
                                       retry_on_conflict, table)
from functions.core import clock
from functions.stats.model import (COUNTERS, OPEN, BuildingMonth, Contribution, DayCategory, DayPeople, NeedText,
                                   Suggestion, ACCEPTED_STATUS)

MARKER_RETENTION = timedelta(days=30)
_HIGH = "\uffff"


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
    residents = UnicodeSetAttribute(null=True)
    households = UnicodeSetAttribute(null=True)
    credits = ListAttribute(of=UnicodeAttribute, null=True)
    services = NumberAttribute(null=True)
    text = UnicodeAttribute(null=True)
    count = NumberAttribute(null=True)
    category = UnicodeAttribute(null=True)
    key = UnicodeAttribute(null=True)
    window_days = NumberAttribute(null=True)
    status = UnicodeAttribute(null=True)
    accepted_as = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)


def _append(attribute: Any, values: list[Any]) -> Any:
    return attribute.set((attribute | []).append(values))


def _writes(c: Contribution) -> dict[tuple[str, str], list[Any]]:
    """The update actions of one contribution, by item."""
    writes: dict[tuple[str, str], list[Any]] = {}
    if c.category and (c.counts or c.accept_minutes is not None):
        actions = [getattr(StatsItem, name).add(value) for name, value in c.counts.items() if name in COUNTERS]
        if c.accept_minutes is not None:
            actions.append(_append(StatsItem.accept_minutes, [c.accept_minutes]))
        writes[("day", f"{c.day}#{c.category}")] = actions
    people: list[Any] = []
    if c.residents:
        people.append(StatsItem.residents.add(set(c.residents)))
    if c.households:
        people.append(StatsItem.households.add(set(c.households)))
    if c.credit:
        people.append(_append(StatsItem.credits, [f"{c.credit[0]}:{c.credit[1]}"]))
    if people:
        writes[("people", c.day)] = people
    for building, residents in c.building_residents.items():
        writes.setdefault((f"month#{c.month}", f"bld#{building}"), []).append(StatsItem.residents.add(set(residents)))
    if c.building_services:
        building, minutes = c.building_services
        actions = writes.setdefault((f"month#{c.month}", f"bld#{building}"), [])
        actions.append(StatsItem.services.add(1))
        if minutes:
            actions.append(StatsItem.minutes_credited.add(minutes))
    if c.need_text:
        from functions.stats.model import normalise

        writes[(f"texts#{c.week}", f"{c.category}#{normalise(c.need_text)}")] = [
            StatsItem.count.add(1), StatsItem.text.set(StatsItem.text | c.need_text),
            StatsItem.category.set(c.category or "")]
    return writes


def _day(item: StatsItem) -> DayCategory:
    day, category = item.sk.split("#", 1)
    return DayCategory(day, category, posted=int(item.posted or 0), accepted=int(item.accepted or 0),
                       completed=int(item.completed or 0), cancelled=int(item.cancelled or 0),
                       minutes_credited=int(item.minutes_credited or 0),
                       accept_minutes=tuple(int(m) for m in item.accept_minutes or ()))


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
        writes = _writes(contribution)
        marker = StatsItem(f"applied#{contribution.event_id}", "-",
                           expires_at=epoch(clock.now() + MARKER_RETENTION))

        def attempt() -> bool:
            with new_transaction() as transaction:
                transaction.save(marker, condition=StatsItem.pk.does_not_exist())
                for (pk, sk), actions in writes.items():
                    transaction.update(StatsItem(pk, sk), actions=actions)
            return True

        try:
            return retry_on_conflict(attempt)
        except TransactWriteError as error:
            if cancelled_by_condition(error):
                return False  # applied before: a redelivery
            raise

    def days(self, start: date, end: date) -> list[DayCategory]:
        return [_day(i) for i in StatsItem.query("day", StatsItem.sk.between(start.isoformat(), f"{end}#{_HIGH}"))]

    def people(self, start: date, end: date) -> list[DayPeople]:
        return [_people(i) for i in StatsItem.query("people", StatsItem.sk.between(start.isoformat(), end.isoformat()))]

    def buildings(self, month: str) -> list[BuildingMonth]:
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
