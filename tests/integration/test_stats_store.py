"""The statistics store on moto at the edges of its idempotency: each event is one conditional
UpdateItem of its (day, category) item, which keeps the ids it took.

- the same event twice, and events either side of a community-day boundary (16:00 UTC), each
  counted once in its own day's item;
- a posted need that is not a credit item writes two items (its day's, its week's text): a crash
  between the two writes is repaired by the redelivery, nothing counted twice;
- items written by the former layout (before issue 14: a marker item per event, counters without
  ids): an event the old code applied and redelivered after the upgrade adds nothing, a new event
  into such an item is counted once;
- one event is one UpdateItem (and a redelivery one refused UpdateItem): what the bench prices."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from functions.core.clock import CHINA_TZ
from functions.core.events import new_event
from functions.stats.model import buildings_of, contribution

BUILDINGS = {"hh1": "1", "hh2": "2"}


def _store():
    from functions.stats.dynamo import DynamoStatsStore

    return DynamoStatsStore()


def _posted(n: int, at: datetime, category: str = "tutoring", **extra):
    return new_event("request.posted", f"req_{n}", at, {"category": category, "household_id": "hh1",
                                                        "requester_id": f"r{n}", **extra})


def _settled(n: int, at: datetime, minutes: int = 60):
    return new_event("request.settled", f"req_{n}", at, {
        "category": "tutoring", "household_id": "hh1", "requester_id": "r1", "volunteer_id": "v1",
        "volunteer_household_id": "hh2", "credits_paid": minutes})


def _apply(store, event) -> bool:
    return store.apply(contribution(event, BUILDINGS))


def _counts(store, day: date) -> dict[str, tuple[int, ...]]:
    return {i.category: (i.counts.posted, i.counts.completed, i.counts.minutes_credited)
            for i in store.days(day, day) if i.counts is not None}


def test_each_copy_of_an_event_meets_its_id_in_its_own_day_whatever_side_of_midnight(aws):
    store = _store()
    # 15:59:59 UTC is 23:59:59 in Shanghai (1 Dec); one second later it is 2 Dec there.
    before = _posted(1, datetime(2026, 12, 1, 15, 59, 59, tzinfo=timezone.utc))
    after = _posted(2, datetime(2026, 12, 1, 16, 0, 0, tzinfo=timezone.utc))
    settled = _settled(1, datetime(2026, 12, 1, 16, 0, 0, tzinfo=timezone.utc))
    for event in (before, after, settled):
        assert _apply(store, event) is True
    for event in (after, before, settled, before):
        assert _apply(store, event) is False
    assert _counts(store, date(2026, 12, 1)) == {"tutoring": (1, 0, 0)}
    assert _counts(store, date(2026, 12, 2)) == {"tutoring": (1, 1, 60)}
    second_day = {i.category: i for i in store.days(date(2026, 12, 2), date(2026, 12, 2))}["tutoring"]
    assert second_day.settlements == (("2", "v1", 60),)
    assert second_day.people.residents == {"r2", "r1", "v1"} and second_day.households == {"hh1", "hh2"}


def test_a_crash_between_the_day_item_and_the_text_item_is_repaired_by_the_redelivery(aws, monkeypatch):
    from functions.stats import dynamo

    store = _store()
    at = datetime(2026, 12, 3, 9, 0, tzinfo=CHINA_TZ)
    event = _posted(7, at, category="volunteer", text="帮忙修自行车")
    real_update = dynamo.StatsItem.update
    calls = []

    def dies_on_the_second_write(self, *args, **kwargs):
        calls.append(self.pk)
        if len(calls) == 2:
            raise RuntimeError("the function timed out between the two writes")
        return real_update(self, *args, **kwargs)

    monkeypatch.setattr(dynamo.StatsItem, "update", dies_on_the_second_write)
    with pytest.raises(RuntimeError):
        _apply(store, event)
    monkeypatch.setattr(dynamo.StatsItem, "update", real_update)
    assert calls[0] == "day" or calls[0].startswith("texts#")
    assert _apply(store, event) is True    # the item without the id takes it
    assert _apply(store, event) is False   # and now both refuse it
    assert _counts(store, at.date()) == {"volunteer": (1, 0, 0)}
    week = contribution(event, BUILDINGS).week
    assert [(t.key, t.count) for t in store.need_texts([week])] == [("帮忙修自行车", 1)]


def _old_layout(event, *, marker: bool) -> None:
    """What the code before issue 14 left for ``event``: its counters in the day item (no ids)
    and, in the same transaction, its marker."""
    from functions.stats.dynamo import StatsItem

    c = contribution(event, BUILDINGS)
    StatsItem("day", f"{c.day}#{c.category}").update(
        actions=[getattr(StatsItem, name).add(value) for name, value in c.counts.items()])
    if marker:
        StatsItem(f"applied#{event.id}", "-", expires_at=2_000_000_000).save()


def test_an_event_the_former_layout_applied_is_not_added_again_after_the_upgrade(aws):
    store = _store()
    at = datetime(2026, 12, 4, 9, 0, tzinfo=CHINA_TZ)
    old = _posted(1, at)
    _old_layout(old, marker=True)
    assert _counts(store, at.date()) == {"tutoring": (1, 0, 0)}

    assert _apply(store, old) is False                     # applied by the old code: its marker
    new = _posted(2, at + timedelta(hours=1))
    assert _apply(store, new) is True                      # into the old item, counted
    assert _apply(store, old) is False and _apply(store, new) is False
    third = _posted(3, at + timedelta(hours=2))
    assert _apply(store, third) is True and _apply(store, third) is False
    assert _counts(store, at.date()) == {"tutoring": (3, 0, 0)}


def test_the_former_people_and_building_items_are_still_read(aws):
    from functions import bootstrap
    from functions.stats.dynamo import StatsItem

    StatsItem("people", "2026-12-05", residents={"r_old"}, households={"hh_old"}, credits=["r_old:30"]).save()
    StatsItem("month#2026-12", "bld#1", residents={f"o{i}" for i in range(5)}, services=2,
              minutes_credited=90).save()
    store = bootstrap.stats().store
    _apply(store, _settled(9, datetime(2026, 12, 5, 10, 0, tzinfo=CHINA_TZ), minutes=45))
    figures = bootstrap.stats().range_stats(date(2026, 12, 5), date(2026, 12, 5))
    assert figures["active_residents"] == 3 and figures["active_households"] == 3
    assert {t["resident_id"]: t["minutes"] for t in figures["top_volunteers"]} == {"r_old": 30, "v1": 45}
    merged = buildings_of("2026-12", store.days(date(2026, 12, 1), date(2026, 12, 31)),
                          store.earlier_buildings("2026-12"))
    assert [(b.building, len(b.residents), b.services, b.minutes_credited) for b in merged] == [
        ("1", 6, 2, 90), ("2", 1, 1, 45)]   # r1 joins r0..r4; the settlement goes to the volunteer's


def test_one_event_is_one_update_and_a_redelivery_one_refused_update(aws):
    from bench.ddb_counter import counting_dynamodb, forget_cached_clients

    event = _settled(5, datetime(2026, 12, 6, 10, 0, tzinfo=CHINA_TZ))
    with counting_dynamodb() as counter:
        forget_cached_clients()
        store = _store()
        with counter.measure() as first:
            assert _apply(store, event) is True
        with counter.measure() as again:
            assert _apply(store, event) is False
    assert dict(first.calls) == {"UpdateItem": 1} and first.wru_base == 1
    assert dict(again.calls) == {"UpdateItem": 1, "GetItem": 1} and dict(again.errors) == {"UpdateItem": 1}
