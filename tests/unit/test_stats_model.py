"""Statistics rules without I/O: percentiles, k-anonymous groups, normalising and clustering
the texts of needs, and the service's event handling on the in-memory store."""
from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from functions.core.clock import CHINA_TZ
from functions.core.errors import NotFound
from functions.core.events import new_event
from functions.core.messaging import PoisonMessage
from functions.stats.model import (OTHER_GROUP, AlreadyAccepted, BuildingMonth, NeedText, checked_range, cluster,
                                   buildings_of, k_anonymous_groups, normalise, percentile, similarity, top10_share)
from functions.stats.service import StatsService
from tests.fakes.stats import InMemoryStatsStore


def test_percentiles_are_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([7], 90) == 7
    values = list(range(1, 11))
    assert percentile(values, 50) == 5 and percentile(values, 90) == 9
    assert percentile([30, 10, 20], 50) == 20 and percentile([30, 10, 20], 90) == 30


def test_top10_share_takes_at_least_one_holder():
    assert top10_share({}) == 0.0
    assert top10_share({"a": 100}) == 1.0
    holders = {f"r{i}": 10 for i in range(19)} | {"big": 810}
    assert top10_share(holders) == round((810 + 10) / 1000, 4)   # 20 holders: the top 2


def test_ranges_are_checked():
    with pytest.raises(Exception) as error:
        checked_range(date(2026, 12, 2), date(2026, 12, 1))
    assert error.value.code == "VALIDATION_ERROR"
    with pytest.raises(Exception):
        checked_range(date(2026, 1, 1), date(2026, 12, 31))
    assert checked_range(date(2026, 12, 1), date(2026, 12, 31)).days == 31


def _building(name, residents, services=0, minutes=0):
    return BuildingMonth("2026-12", name, frozenset(f"{name}-{i}" for i in range(residents)), services, minutes)


def test_small_buildings_are_merged_into_other():
    groups = k_anonymous_groups([_building("1", 5, 3, 180), _building("2", 6), _building("3", 2, 1, 60),
                                 _building("4", 3)])
    assert [g["group"] for g in groups] == ["1", "2", OTHER_GROUP]
    assert groups[-1] == {"group": OTHER_GROUP, "active_residents": 5, "services": 1, "minutes_credited": 60}
    assert all(g["active_residents"] >= 5 for g in groups)


def test_other_too_small_takes_the_smallest_named_group():
    groups = k_anonymous_groups([_building("1", 7), _building("2", 5), _building("3", 2)])
    assert [g["group"] for g in groups] == ["1", OTHER_GROUP]
    assert groups[-1]["active_residents"] == 7


def test_a_community_smaller_than_k_shows_no_group():
    assert k_anonymous_groups([_building("1", 2), _building("2", 1)]) == []


def test_normalise_folds_width_case_punctuation_and_spaces():
    assert normalise("帮忙 修　自行车！！") == normalise("帮忙修自行车!") == "帮忙修自行车"
    assert normalise("ＡＢＣ，abc") == "abcabc"
    assert normalise(None) == "" and normalise("  ，。") == ""


def test_near_identical_texts_cluster_and_others_do_not():
    assert similarity("帮忙修自行车", "帮忙修理自行车") >= 0.5
    assert similarity("帮忙修自行车", "陪老人聊天") == 0.0
    texts = [NeedText("volunteer", normalise(t), t, n) for t, n in
             (("帮忙修自行车", 2), ("帮忙修理自行车", 1), ("修自行车", 1), ("陪老人聊天", 1))]
    clusters = cluster(texts)
    assert clusters[0].text == "帮忙修自行车" and clusters[0].count == 4
    assert set(clusters[0].members) == {"帮忙修自行车", "帮忙修理自行车", "修自行车"}
    assert [(c.text, c.count) for c in clusters[1:]] == [("陪老人聊天", 1)]


def test_clusters_stay_within_their_category():
    texts = [NeedText("volunteer", "修自行车", "修自行车", 2), NeedText("pet", "修自行车", "修自行车", 2)]
    assert sorted((c.category, c.count) for c in cluster(texts)) == [("pet", 2), ("volunteer", 2)]


class _Places:
    def building_of(self, household_id):
        return {"hh1": "1", "hh2": "2"}.get(household_id)


class _Names:
    def names_of(self, ids):
        return {i: f"name-{i}" for i in ids}


class _Ledger:
    def outstanding(self):
        return {"service": 600}


class _Catalog:
    def __init__(self):
        self.made = []

    def make_credit_item(self, name, source_category, actor):
        self.made.append(name)
        return f"cat_{len(self.made)}"


def _service(now=datetime(2026, 12, 14, 9, 0, tzinfo=CHINA_TZ)):
    catalog = _Catalog()
    return StatsService(InMemoryStatsStore(), _Places(), _Names(), _Ledger(), catalog, now=lambda: now), catalog


AT = datetime(2026, 12, 1, 9, 0, tzinfo=CHINA_TZ)


def test_an_event_is_applied_once():
    service, _ = _service()
    event = new_event("request.posted", "req_1", AT, {"category": "tutoring", "household_id": "hh1",
                                                      "requester_id": "r1"})
    assert service.record(event) is True
    assert service.record(event) is False
    figures = service.range_stats(date(2026, 12, 1), date(2026, 12, 1))
    assert figures["by_day"][0]["posted"] == 1 and figures["active_residents"] == 1


def test_unknown_event_types_are_poison():
    service, _ = _service()
    with pytest.raises(PoisonMessage):
        service.record(new_event("exchange.requested", "exc_1", AT, {}))


def test_suggestions_come_from_frequent_need_texts_and_are_accepted_once():
    service, catalog = _service()
    titles = ["帮忙修自行车", "帮忙修自行车！", "帮 忙修自行车", "修自行车", "陪老人聊天"]
    for n, title in enumerate(titles):
        service.record(new_event("request.posted", f"req_{n}", AT + timedelta(days=n), {
            "category": "volunteer", "household_id": "hh1", "requester_id": "r1", "text": title}))
    found = service.find_suggestions()
    assert [(s.text, s.count, s.category, s.window_days) for s in found] == [("帮忙修自行车", 4, "volunteer", 28)]
    accepted = service.accept(found[0].id, "admin")
    assert accepted.status == "accepted" and accepted.accepted_as == "cat_1"
    with pytest.raises(AlreadyAccepted):
        service.accept(found[0].id, "admin")
    with pytest.raises(NotFound):
        service.accept("sug_unknown", "admin")
    assert catalog.made == ["帮忙修自行车"]
    service.find_suggestions()   # the weekly run again: the accepted suggestion stays accepted
    assert [s.status for s in service.suggestions()] == ["accepted"]


def test_texts_older_than_the_window_are_not_counted():
    service, _ = _service(now=datetime(2027, 2, 1, 9, 0, tzinfo=CHINA_TZ))
    for n in range(4):
        service.record(new_event("request.posted", f"req_{n}", AT, {
            "category": "volunteer", "household_id": "hh1", "requester_id": "r1", "text": "帮忙修自行车"}))
    assert service.find_suggestions() == []


def test_an_activity_sign_up_makes_its_participant_active_without_a_service_figure():
    service, _ = _service()
    service.record(new_event("activity.signed_up", "act_1", AT, {"resident_id": "r9", "household_id": "hh2",
                                                                  "seq": 1, "subject": "r9#1"}))
    figures = service.range_stats(date(2026, 12, 1), date(2026, 12, 1))
    assert figures["by_day"] == []
    assert (figures["active_residents"], figures["active_households"]) == (1, 1)
    assert [(g["group"], g["active_residents"]) for g in service.month_stats(2026, 12)["groups"]] == []  # k ≥ 5
    assert [b.building for b in buildings_of("2026-12", service.store.days(date(2026, 12, 1), date(2026, 12, 1)))] \
        == ["2"]
