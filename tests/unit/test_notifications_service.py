"""One-time consents and at-most-once delivery (in-memory stores, a scripted notifier)."""
from __future__ import annotations

from datetime import datetime

import pytest

from functions.core.clock import CHINA_TZ
from functions.core.errors import ValidationError
from tests.fakes.notifications import InMemoryConsentStore, InMemoryDeliveryStore
from functions.notifications.model import CLAIMED, FAILED, REFUSED, SKIPPED, SendResult, SendStatus
from functions.notifications.service import DeliveryOutcome, NotificationService

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=CHINA_TZ)


class ScriptedNotifier:
    """Answers with the scripted statuses in turn (then SENT) and records every call."""

    def __init__(self, *script: SendStatus | Exception):
        self.script = list(script)
        self.calls: list[tuple[str, str, dict, str | None]] = []

    def send(self, openid, template, data, page=None):
        self.calls.append((openid, template, dict(data), page))
        outcome = self.script.pop(0) if self.script else SendStatus.SENT
        if isinstance(outcome, Exception):
            raise outcome
        return SendResult(outcome, errcode=43101 if outcome is SendStatus.REFUSED else None)


def build(*script):
    consents, deliveries, notifier = InMemoryConsentStore(), InMemoryDeliveryStore(), ScriptedNotifier(*script)
    return NotificationService(consents, deliveries, notifier, now=lambda: NOW), consents, deliveries, notifier


def deliver(service, key="match#req_1#res_v", openid="openid-v", template="match"):
    return service.deliver_once(key, openid=openid, template=template, data={"title": "接孩子"},
                                page="pages/requests/detail?id=req_1", recipient_id="res_v", request_id="req_1")


def available(service, openid="openid-v", template="match") -> int:
    return {c.template: c.available for c in service.consents_of(openid)}[template]


def test_without_consent_nothing_is_sent_and_the_skip_is_recorded():
    service, _, deliveries, notifier = build()
    assert deliver(service) is DeliveryOutcome.SKIPPED
    assert notifier.calls == []
    assert deliveries.items["match#req_1#res_v"].status == SKIPPED
    assert deliveries.items["match#req_1#res_v"].recipient_id == "res_v"


def test_one_consent_one_message():
    service, _, _, notifier = build()
    service.record_consent("openid-v", "match", accepted=True)
    assert available(service) == 1
    assert deliver(service, key="k1") is DeliveryOutcome.SENT
    assert deliver(service, key="k2") is DeliveryOutcome.SKIPPED
    assert len(notifier.calls) == 1 and available(service) == 0


def test_a_sent_message_keeps_its_claim_as_the_record_and_writes_nothing_more():
    service, _, deliveries, _ = build()
    service.record_consent("openid-v", "match", accepted=True)
    finished = []
    deliveries.finish = lambda *args: finished.append(args)  # type: ignore[method-assign]
    assert deliver(service) is DeliveryOutcome.SENT
    assert deliveries.items["match#req_1#res_v"].status == CLAIMED and finished == []
    assert deliver(service) is DeliveryOutcome.DUPLICATE


def test_consents_are_per_template_and_refusals_add_nothing():
    service, _, _, _ = build()
    service.record_consent("openid-v", "reminder", accepted=True)
    service.record_consent("openid-v", "match", accepted=False)
    assert deliver(service, template="match") is DeliveryOutcome.SKIPPED
    assert deliver(service, key="r1", template="reminder") is DeliveryOutcome.SENT
    consent = {c.template: c for c in service.consents_of("openid-v")}["match"]
    assert consent.refused_total == 1 and consent.available == 0


def test_the_same_delivery_key_is_never_sent_twice():
    service, _, _, notifier = build()
    for _ in range(3):
        service.record_consent("openid-v", "match", accepted=True)
    assert deliver(service) is DeliveryOutcome.SENT
    assert deliver(service) is DeliveryOutcome.DUPLICATE
    assert len(notifier.calls) == 1 and available(service) == 2


def test_refusal_by_wechat_uses_up_the_recorded_consent_without_retry():
    service, _, deliveries, notifier = build(SendStatus.REFUSED)
    for _ in range(3):
        service.record_consent("openid-v", "match", accepted=True)
    assert deliver(service) is DeliveryOutcome.REFUSED
    assert available(service) == 0
    assert deliveries.items["match#req_1#res_v"].status == REFUSED
    assert deliver(service) is DeliveryOutcome.DUPLICATE and len(notifier.calls) == 1


def test_a_permanent_failure_is_recorded_and_the_consent_kept():
    service, _, deliveries, _ = build(SendStatus.FAILED)
    service.record_consent("openid-v", "match", accepted=True)
    assert deliver(service) is DeliveryOutcome.FAILED
    assert deliveries.items["match#req_1#res_v"].status == FAILED
    assert available(service) == 1


@pytest.mark.parametrize("transient", [SendStatus.RETRY, ConnectionError("socket closed")])
def test_a_transient_failure_releases_the_claim_and_the_consent_so_a_retry_sends(transient):
    service, _, deliveries, notifier = build(transient)
    service.record_consent("openid-v", "match", accepted=True)
    assert deliver(service) is DeliveryOutcome.RETRY
    assert "match#req_1#res_v" not in deliveries.items and available(service) == 1
    assert deliver(service) is DeliveryOutcome.SENT
    assert deliveries.items["match#req_1#res_v"].status == CLAIMED
    assert len(notifier.calls) == 2 and available(service) == 0


def test_unknown_templates_are_refused():
    service, _, _, _ = build()
    with pytest.raises(ValidationError):
        service.record_consent("openid-v", "marketing", accepted=True)
    with pytest.raises(ValidationError):
        deliver(service, template="marketing")


def test_consents_of_lists_every_template():
    service, _, _, _ = build()
    service.record_consent("openid-v", "match", accepted=True)
    assert [(c.template, c.available) for c in service.consents_of("openid-v")] == [("match", 1), ("reminder", 0)]
    assert [c.available for c in service.consents_of("someone-else")] == [0, 0]
