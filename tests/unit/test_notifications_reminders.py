"""Reminders before services: one per participant, never twice (pinned clock, in-memory stores)."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from functions.core import clock
from functions.core.clock import CHINA_TZ
from tests.fakes.notifications import InMemoryConsentStore, InMemoryDeliveryStore
from functions.notifications.model import SendResult, SendStatus
from functions.notifications.reminders import ReminderService, reminder_key
from functions.notifications.service import SKIPPED, NotificationService
from functions.requests import model as lc
from functions.requests.model import ServiceRequest

T0 = datetime(2026, 12, 2, 15, 0, tzinfo=CHINA_TZ)
OPENIDS = {"res_req": "openid-req", "res_vol": "openid-vol", "res_req2": "openid-req2", "res_vol2": "openid-vol2"}


class Upcoming:
    """Accepted requests by start time, like ``RequestService.starting_between`` over the by_due index."""

    def __init__(self, *requests: ServiceRequest):
        self.requests = list(requests)

    def starting_between(self, start, end):
        return [r for r in self.requests if start <= r.start_at <= end]


class Contacts:
    def __init__(self, openids=OPENIDS):
        self.openids = dict(openids)

    def openid_of(self, resident_id, household_id):
        return self.openids.get(resident_id)


class Notifier:
    def __init__(self):
        self.sent: list[tuple[str, str, dict]] = []
        self.fail_next: SendStatus | None = None

    def send(self, openid, template, data, page=None):
        if self.fail_next is not None:
            status, self.fail_next = self.fail_next, None
            return SendResult(status)
        self.sent.append((openid, template, dict(data)))
        return SendResult(SendStatus.SENT)


def accepted(request_id="req_1", start=T0 + timedelta(minutes=50), requester="res_req", volunteer="res_vol",
             status=lc.ACCEPTED) -> ServiceRequest:
    return ServiceRequest(
        id=request_id, status=status, category="pickup", title="放学接孩子", description="", start_at=start,
        duration_minutes=60, requester_id=requester, household_id=f"hh_{requester}", payer_account="household:x",
        hold_transfer_id="tr", credits_held=60, created_at=T0 - timedelta(days=1), content_hash="x",
        volunteer_id=volunteer, volunteer_household_id=f"hh_{volunteer}", accepted_at=T0 - timedelta(hours=3))


@pytest.fixture
def pinned():
    current = {"now": T0}
    clock.set_clock(lambda: current["now"])
    yield current
    clock.set_clock(None)


def build(*requests, contacts=None):
    consents, deliveries, notifier = InMemoryConsentStore(), InMemoryDeliveryStore(), Notifier()
    notifications = NotificationService(consents, deliveries, notifier)
    service = ReminderService(Upcoming(*requests), contacts or Contacts(), notifications, lead=timedelta(minutes=60))
    for openid in OPENIDS.values():
        for _ in range(3):
            notifications.record_consent(openid, "reminder", accepted=True)
    return service, notifications, deliveries, notifier


def test_each_participant_gets_one_reminder_and_never_a_second(pinned):
    service, _, _, notifier = build(accepted())
    counts = service.run()
    assert counts["sent"] == 2 and counts["services"] == 1
    assert sorted(openid for openid, _, _ in notifier.sent) == ["openid-req", "openid-vol"]
    assert {data["note"] for _, _, data in notifier.sent} == {"您发布的需求即将开始服务", "您接下的服务即将开始，请准时到达"}
    assert all(data["start_at"] == "2026-12-02 15:50" for _, _, data in notifier.sent)
    for minutes in (5, 10, 45):
        pinned["now"] = T0 + timedelta(minutes=minutes)
        counts = service.run()
        assert counts.get("sent", 0) == 0
    assert len(notifier.sent) == 2


def test_only_services_inside_the_lead_time(pinned):
    later = accepted("req_later", start=T0 + timedelta(minutes=61), requester="res_req2", volunteer="res_vol2")
    started = accepted("req_started", start=T0 - timedelta(minutes=1))
    service, _, _, notifier = build(later, started)
    assert service.run().get("sent", 0) == 0
    pinned["now"] = T0 + timedelta(minutes=5)
    assert service.run()["sent"] == 2
    assert sorted(o for o, _, _ in notifier.sent) == ["openid-req2", "openid-vol2"]


def test_a_request_no_longer_accepted_is_skipped(pinned):
    service, _, _, notifier = build(accepted(status=lc.CANCELLED))
    service.run()
    assert notifier.sent == []


def test_without_consent_the_reminder_is_skipped_once_and_not_retried(pinned):
    service, notifications, deliveries, notifier = build(accepted())
    notifications.consents.exhaust("openid-vol", "reminder", T0)
    counts = service.run()
    assert counts == {"services": 1, "already": 0, "sent": 1, "skipped": 1}
    assert deliveries.items[reminder_key("req_1", "res_vol")].status == SKIPPED
    notifications.record_consent("openid-vol", "reminder", accepted=True)
    pinned["now"] = T0 + timedelta(minutes=5)
    assert service.run() == {"services": 1, "already": 2}
    assert [o for o, _, _ in notifier.sent] == ["openid-req"]


def test_a_transient_failure_is_retried_by_the_next_run(pinned):
    service, _, _, notifier = build(accepted())
    notifier.fail_next = SendStatus.RETRY
    assert service.run() == {"services": 1, "already": 0, "retry": 1, "sent": 1}
    pinned["now"] = T0 + timedelta(minutes=5)
    assert service.run()["sent"] == 1
    assert sorted(o for o, _, _ in notifier.sent) == ["openid-req", "openid-vol"]


def test_an_unknown_recipient_is_counted_and_tried_again_later(pinned):
    contacts = Contacts({"res_req": "openid-req"})
    service, _, deliveries, notifier = build(accepted(), contacts=contacts)
    assert service.run()["no_contact"] == 1
    assert reminder_key("req_1", "res_vol") not in deliveries.items
    contacts.openids["res_vol"] = "openid-vol"
    pinned["now"] = T0 + timedelta(minutes=5)
    assert service.run()["sent"] == 1
    assert len(notifier.sent) == 2
