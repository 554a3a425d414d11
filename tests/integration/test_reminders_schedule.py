"""The reminders schedule on moto with a pinned clock: the app's handler, the by_due index,
identity for openids, consents, delivery claims and the local outbox."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from botocore.client import BaseClient

from functions.core import clock
from functions.core.clock import CHINA_TZ
from functions.core.caller import Caller
from functions.notifications.dynamo import DynamoDeliveryStore, outbox_page
from functions.notifications.reminders import reminder_key
from functions.requests import model as lc
from functions.requests.model import ServiceRequest
from local.lambda_events import lambda_context

EVENT = json.loads((Path(__file__).resolve().parents[2] / "events" / "send-reminders.json").read_text())
T0 = datetime(2026, 12, 2, 15, 0, tzinfo=CHINA_TZ)


def resident(openid: str, building: str, room: str) -> Caller:
    from functions import bootstrap

    registered = bootstrap.identity().register(Caller(openid=openid), name="测试居民", phone="13900002222",
                                                 building=building, unit="1", room=room, birth_year=1975)
    return Caller(openid=openid, resident_id=registered.id, household_id=registered.household_id, status="verified")


def service_request(request_id: str, requester: Caller, volunteer: Caller, start: datetime,
                    status: str = lc.ACCEPTED) -> ServiceRequest:
    return ServiceRequest(
        id=request_id, status=status, category="companion", title="陪老人散步", description="小区花园",
        start_at=start, duration_minutes=60, requester_id=requester.resident_id, household_id=requester.household_id,
        payer_account=f"household:{requester.household_id}", hold_transfer_id=f"tr_{request_id}", credits_held=60,
        created_at=T0 - timedelta(days=1), content_hash="x", volunteer_id=volunteer.resident_id,
        volunteer_household_id=volunteer.household_id, accepted_at=T0 - timedelta(hours=2))


@pytest.fixture
def pinned():
    current = {"now": T0}
    clock.set_clock(lambda: current["now"])
    yield current
    clock.set_clock(None)


@pytest.fixture
def people(aws, pinned):
    from functions import bootstrap

    requester, volunteer = resident("openid-elder-son", "2", "301"), resident("openid-helper", "4", "101")
    for caller in (requester, volunteer):
        for _ in range(2):  # one consent per message: two services, two reminders each
            bootstrap.notifications().record_consent(caller.openid, "reminder", accepted=True)
    return requester, volunteer


def save(request: ServiceRequest) -> None:
    from functions import bootstrap

    bootstrap.request_store().record_for(request).save()


def run() -> dict:
    from functions.app import app

    send_reminders = app.handler_map["send-reminders"]

    return send_reminders(EVENT, lambda_context("send-reminders", 60))


def outbox() -> list[tuple[str, str]]:
    items, _ = outbox_page(100, None)
    return sorted((i["openid"], i["data"]["note"]) for i in items)


def test_each_participant_is_reminded_once_within_the_lead_time(people, pinned):
    requester, volunteer = people
    save(service_request("req_soon", requester, volunteer, T0 + timedelta(minutes=45)))
    save(service_request("req_later", requester, volunteer, T0 + timedelta(minutes=75)))
    save(service_request("req_open", requester, volunteer, T0 + timedelta(minutes=30), status=lc.OPEN))
    assert run()["sent"] == 2
    assert outbox() == [("openid-elder-son", "您发布的需求即将开始服务"),
                        ("openid-helper", "您接下的服务即将开始，请准时到达")]
    assert run().get("sent", 0) == 0
    pinned["now"] = T0 + timedelta(minutes=20)        # req_later now inside the hour: its own reminders only
    assert run() == {"services": 2, "already": 2, "sent": 2}
    assert len(outbox()) == 4
    # A message that went out keeps its claim as the record (no second write to say "sent").
    assert DynamoDeliveryStore().get(reminder_key("req_soon", volunteer.resident_id)).status == "claimed"


def test_without_consent_the_reminder_is_recorded_as_skipped(people, pinned):
    requester, volunteer = people
    from functions import bootstrap

    bootstrap.notifications().consents.exhaust(requester.openid, "reminder", T0)
    save(service_request("req_1", requester, volunteer, T0 + timedelta(minutes=10)))
    assert run() == {"services": 1, "already": 0, "skipped": 1, "sent": 1}
    assert [o for o, _ in outbox()] == ["openid-helper"]
    assert DynamoDeliveryStore().get(reminder_key("req_1", requester.resident_id)).status == "skipped"


def test_dynamodb_calls_of_a_run_with_nothing_left_to_send(people, pinned):
    requester, volunteer = people
    save(service_request("req_1", requester, volunteer, T0 + timedelta(minutes=10)))
    run()
    calls: Counter = Counter()
    real_call = BaseClient._make_api_call

    def counting(self, operation, params):
        if self.meta.service_model.service_name == "dynamodb":
            calls[operation] += 1
        return real_call(self, operation, params)

    with mock.patch.object(BaseClient, "_make_api_call", counting):
        assert run() == {"services": 1, "already": 2}
    from functions.requests.dynamo import DUE_SHARDS

    # One Query per shard of the keys-only due index, one BatchGet of the requests it named,
    # one of the claims: still nothing written, and a constant number of calls.
    assert calls == {"Query": DUE_SHARDS, "BatchGetItem": 2}
