"""The matcher use case: rank, record once, notify at most once per (request, volunteer)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from functions.core.clock import CHINA_TZ
from tests.fakes.notifications import InMemoryConsentStore, InMemoryDeliveryStore
from functions.notifications.model import SendResult, SendStatus
from functions.notifications.service import NotificationService
from functions.requests import model as lc
from functions.requests.model import ServiceRequest
from functions.core.events import new_event, parse_event
from functions.requests.model import POSTED_EVENT
from functions.volunteers.matching import Matcher, PoisonMessage, RetryLater
from tests.fakes.volunteers import InMemoryVolunteerStore
from functions.volunteers.model import VolunteerProfile, VolunteerStats

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=CHINA_TZ)
def posted(request_id: str) -> dict:
    """The ``request.posted`` message the relay delivers (what the queue consumer parses)."""
    return new_event(POSTED_EVENT, request_id, NOW, {"category": "pickup"}).message()


POSTED = parse_event(posted("req_1"))


class Requests:
    def __init__(self, *requests):
        self.items = {r.id: r for r in requests}

    def find(self, request_id, consistent=True):
        return self.items.get(request_id)


class Places:
    def building_of(self, household_id):
        return {"hh_req": "3"}.get(household_id, "9")


class Notifier:
    def __init__(self):
        self.sent: list[tuple[str, str, dict, str | None]] = []
        self.transient_for: set[str] = set()

    def send(self, openid, template, data, page=None):
        if openid in self.transient_for:
            self.transient_for.discard(openid)
            return SendResult(SendStatus.RETRY, errcode=-1)
        self.sent.append((openid, template, dict(data), page))
        return SendResult(SendStatus.SENT)


def posted_request(**overrides) -> ServiceRequest:
    values = dict(id="req_1", status=lc.OPEN, category="pickup", title="放学接孩子", description="学校东门",
                  start_at=NOW + timedelta(days=1), duration_minutes=60, requester_id="res_req", household_id="hh_req",
                  payer_account="household:hh_req", hold_transfer_id="tr_1", credits_held=60, created_at=NOW,
                  content_hash="x")
    values.update(overrides)
    return ServiceRequest(**values)


def add_volunteer(store, resident_id, building="9", household_id=None, completed=0):
    profile = VolunteerProfile(resident_id=resident_id, household_id=household_id or f"hh_{resident_id}",
                               building=building, openid=f"openid-{resident_id}", verified=True,
                               categories=("pickup",), accepting=True,
                               stats=VolunteerStats(accepted=completed, completed=completed), version=1)
    assert store.save_profile(profile, None).value == "saved"


@pytest.fixture
def world():
    store = InMemoryVolunteerStore()
    consents, deliveries, notifier = InMemoryConsentStore(), InMemoryDeliveryStore(), Notifier()
    notifications = NotificationService(consents, deliveries, notifier, now=lambda: NOW)
    requests = Requests(posted_request())
    matcher = Matcher(requests, Places(), store, store, notifications, category_name=lambda c: "接送帮",
                      notify_count=3, now=lambda: NOW)
    for resident_id, building, completed in [("v_near", "3", 0), ("v_a", "9", 9), ("v_b", "9", 5),
                                             ("v_c", "9", 1), ("v_d", "9", 0)]:
        add_volunteer(store, resident_id, building, completed=completed)
        notifications.record_consent(f"openid-{resident_id}", "match", accepted=True)
    add_volunteer(store, "v_family", "3", household_id="hh_req", completed=20)
    notifications.record_consent("openid-v_family", "match", accepted=True)
    return matcher, store, notifications, notifier, requests


def recipients(notifier) -> list[str]:
    return [openid for openid, *_ in notifier.sent]


def test_the_best_three_are_notified_at_once_never_the_requesters_household(world):
    matcher, store, _, notifier, _ = world
    report = matcher.handle(POSTED)
    assert report.outcome == "matched" and report.notified == {"sent": 3}
    assert recipients(notifier) == ["openid-v_near", "openid-v_a", "openid-v_b"]
    openid, template, data, page = notifier.sent[0]
    assert template == "match" and page == "pages/requests/detail?id=req_1"
    assert data == {"category": "接送帮", "title": "放学接孩子", "start_at": "2026-12-02 09:00",
                    "note": "您所在楼栋的邻居需要帮助"}
    assert [(m.volunteer_id, m.rank) for m in sorted(store.matches_for("req_1"), key=lambda m: m.rank)] == [
        ("v_near", 1), ("v_a", 2), ("v_b", 3)]


def test_a_duplicate_delivery_has_one_effect_even_if_the_ranking_changed(world):
    matcher, store, _, notifier, _ = world
    matcher.handle(POSTED)
    add_volunteer(store, "v_star", "3", completed=50)      # would now rank first
    report = matcher.handle(POSTED)
    assert report.outcome == "duplicate" and report.notified == {"duplicate": 3}
    assert len(notifier.sent) == 3 and "openid-v_star" not in recipients(notifier)
    assert len(store.matches_for("req_1")) == 3


def test_a_crash_between_recording_and_notifying_is_completed_by_the_retry(world):
    matcher, store, notifications, notifier, _ = world
    real = notifications.deliver_once
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise TimeoutError("Lambda timed out")
        return real(*args, **kwargs)

    notifications.deliver_once = crash_on_second
    with pytest.raises(TimeoutError):
        matcher.handle(POSTED)
    notifications.deliver_once = real
    report = matcher.handle(POSTED)
    assert report.notified == {"duplicate": 1, "sent": 2}
    assert recipients(notifier) == ["openid-v_near", "openid-v_a", "openid-v_b"]


def test_a_transient_failure_fails_the_message_and_the_retry_sends_only_what_is_missing(world):
    matcher, _, _, notifier, _ = world
    notifier.transient_for = {"openid-v_a"}
    with pytest.raises(RetryLater):
        matcher.handle(POSTED)
    assert recipients(notifier) == ["openid-v_near", "openid-v_b"]
    assert matcher.handle(POSTED).notified == {"duplicate": 2, "sent": 1}
    assert sorted(recipients(notifier)) == ["openid-v_a", "openid-v_b", "openid-v_near"]


def test_volunteers_without_consent_are_recorded_as_skipped(world):
    matcher, _, notifications, notifier, _ = world
    notifications.consents.exhaust("openid-v_a", "match", NOW)
    assert matcher.handle(POSTED).notified == {"sent": 2, "skipped": 1}
    assert notifications.deliveries.items["match#req_1#v_a"].status == "skipped"


def test_a_request_no_longer_open_is_acknowledged_without_matching(world):
    matcher, store, _, notifier, requests = world
    requests.items["req_1"] = replace(requests.items["req_1"], status=lc.ACCEPTED)
    assert matcher.handle(POSTED).outcome == "closed"
    assert notifier.sent == [] and store.matches_for("req_1") == []


def test_no_candidates(world):
    matcher, store, _, notifier, requests = world
    requests.items["req_2"] = posted_request(id="req_2", category="pet")
    report = matcher.handle(parse_event(posted("req_2")))
    assert report.outcome == "no_candidates" and notifier.sent == []


@pytest.mark.parametrize("message", [
    None, [], "req_1", {"type": "request.posted", "request_id": "req_1"},
    new_event("request.accepted", "req_1", NOW).message(), {**posted("req_1"), "subject": 42},
    {**posted("req_1"), "subject": "x" * 201}, posted("req_missing"),
])
def test_poison_messages(world, message):
    matcher, *_ = world
    with pytest.raises(PoisonMessage):
        matcher.handle(parse_event(message))


def test_an_eventually_consistent_miss_is_read_again_consistently(world):
    matcher, _, _, notifier, requests = world
    reads = []

    def lagging(request_id, consistent=True):
        reads.append(consistent)
        return requests.items.get(request_id) if consistent else None

    requests.find = lagging
    assert matcher.handle(POSTED).outcome == "matched" and len(notifier.sent) == 3
    assert reads == [False, True]
