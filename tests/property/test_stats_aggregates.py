"""Statistics under SQS's delivery: any order, any duplicates, give the figures of one delivery
of each event in order (hypothesis)."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from functions.core.clock import CHINA_TZ
from functions.core.events import new_event
from functions.stats.service import StatsService
from tests.fakes.stats import InMemoryStatsStore
from tests.unit.test_stats_model import _Catalog, _Ledger, _Names, _Places

START = datetime(2026, 12, 1, 0, 0, tzinfo=CHINA_TZ)
TYPES = ("request.posted", "request.accepted", "request.settled", "request.cancelled", "request.released")


@st.composite
def events(draw):
    count = draw(st.integers(min_value=1, max_value=30))
    out = []
    for n in range(count):
        kind = draw(st.sampled_from(TYPES))
        at = START + timedelta(minutes=draw(st.integers(min_value=0, max_value=40 * 24 * 60)))
        resident, volunteer = draw(st.sampled_from(["r1", "r2", "r3"])), draw(st.sampled_from(["v1", "v2"]))
        data = {"category": draw(st.sampled_from(["tutoring", "parcel", "volunteer"])),
                "household_id": draw(st.sampled_from(["hh1", "hh2", "hh3"])), "requester_id": resident,
                "volunteer_id": volunteer, "volunteer_household_id": "hh9",
                "posted_at": (at - timedelta(minutes=draw(st.integers(0, 600)))).isoformat(),
                "credits_paid": draw(st.integers(0, 240))}
        if kind == "request.posted" and draw(st.booleans()):
            data["text"] = draw(st.sampled_from(["修自行车", "帮忙修自行车", "遛狗"]))
        out.append(new_event(kind, f"req_{n}", at, data, discriminator=str(n)))
    return out


def _figures(deliveries):
    store = InMemoryStatsStore()
    service = StatsService(store, _Places(), _Names(), _Ledger(), _Catalog(),
                           now=lambda: START + timedelta(days=20))
    applied = sum(service.record(e) for e in deliveries)
    return applied, store.state(), service.range_stats(date(2026, 12, 1), date(2027, 1, 9)), \
        service.month_stats(2026, 12), [(s.id, s.count) for s in service.find_suggestions()]


@settings(max_examples=60, deadline=None)
@given(events(), st.data())
def test_duplicates_and_order_do_not_change_the_figures(original, data):
    redelivered = data.draw(st.lists(st.sampled_from(original), max_size=len(original) * 2))
    shuffled = data.draw(st.permutations(original + redelivered))
    once = _figures(original)
    assert once[0] == len(original)
    again = _figures(shuffled)
    assert again[0] == len(original)   # each event applied once, however often it came
    assert again[1:] == once[1:]
