"""The activity reminder schedule on moto with a fake clock: the app's handler, the activities'
start index, notifications' one-time consents and delivery claims, and the local outbox.

Lead time honoured (nothing earlier than ``reminder_lead_minutes`` before the start), one message
per consenting participant, none without consent, none twice — however often the schedule
fires, even two runs at once."""
from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import botocore.client
import pytest

from functions.activities.model import Award, NewActivity
from functions.activities.reminders import reminder_key
from functions.core.caller import Caller
from functions.notifications.dynamo import DynamoDeliveryStore, outbox_page
from tests.activity_support import START, Clock
from local.lambda_events import lambda_context

EVENT = json.loads((Path(__file__).resolve().parents[2] / "events" / "activity-reminders.json").read_text())
ADMIN = Caller("admin-test", roles=frozenset({"admin"}))


def resident(openid: str, room: str) -> Caller:
    from functions import bootstrap

    registered = bootstrap.identity().register(Caller(openid=openid), name="居民", phone="13900004444",
                                                 building="6", unit="1", room=room, birth_year=1970)
    bootstrap.identity().verify("admin-test", registered.id)
    return Caller(openid, registered.id, registered.household_id, "verified", frozenset({"resident"}))


def messages(openid: str) -> list[dict]:
    return outbox_page(100, None, openid)[0]


@pytest.fixture
def world(aws, app):
    from functions import bootstrap

    times = Clock()
    eager, silent, leaver = resident("eager", "1"), resident("silent", "2"), resident("leaver", "3")
    for consents in range(2):   # two consents: still one reminder for one activity
        bootstrap.notifications().record_consent("eager", "reminder", accepted=True)
    bootstrap.notifications().record_consent("leaver", "reminder", accepted=True)
    new = NewActivity(title="重阳节敬老活动", description="", place="社区活动室", start_at=START,
                      end_at=START + timedelta(hours=2), capacity=10, asset="volunteer", award=Award("fixed", 30))
    service = bootstrap.activities()
    activity = service.publish(ADMIN, new, None)[0]
    later = service.publish(ADMIN, NewActivity(**{**new.__dict__, "title": "下周的活动",
                                                  "start_at": START + timedelta(days=7),
                                                  "end_at": START + timedelta(days=7, hours=2)}), None)[0]
    for person in (eager, silent, leaver):
        service.sign_up(person, activity.id)
    service.sign_up(eager, later.id)
    service.cancel_signup(leaver, activity.id)
    return {"clock": times, "app": app, "activity": activity, "later": later, "eager": eager, "silent": silent,
            "leaver": leaver}


def fire(app) -> dict:
    return app.handler_map["activity-reminders"](EVENT, lambda_context("activity-reminders", 60))


def test_lead_time_consent_and_once_per_participant(world):
    from functions import bootstrap

    times, app, activity = world["clock"], world["app"], world["activity"]
    lead = timedelta(minutes=bootstrap.activity_reminders().lead.total_seconds() / 60)
    times.at(START - lead - timedelta(minutes=1))
    assert fire(app)["activities"] == 0
    assert messages("eager") == []

    times.at(START - lead + timedelta(minutes=1))
    first = fire(app)
    assert (first["activities"], first.get("sent"), first.get("skipped")) == (1, 1, 1)
    (message,) = messages("eager")
    assert message["template"] == "reminder" and message["data"]["title"] == "重阳节敬老活动"
    assert message["data"]["start_at"] == "2026-12-01 11:00" and "社区活动室" in message["data"]["note"]
    assert message["page"] == f"pages/activities/detail?id={activity.id}"
    assert messages("silent") == [] and messages("leaver") == []   # no consent; cancelled
    deliveries = DynamoDeliveryStore()
    assert deliveries.get(reminder_key(activity.id, world["silent"].resident_id)).status == "skipped"
    assert deliveries.get(reminder_key(activity.id, world["leaver"].resident_id)) is None

    # the schedule fires again, and again later within the lead time: nothing more
    assert fire(app)["already"] == 2
    times.advance(minutes=20)
    bootstrap.notifications().record_consent("silent", "reminder", accepted=True)
    again = fire(app)
    assert (again["already"], again.get("sent", 0)) == (2, 0)
    assert len(messages("eager")) == 1 and messages("silent") == []
    # the week-later activity is not due; the eager resident's second consent is still there for it
    assert bootstrap.notifications().consents_of("eager")[1].available == 1
    times.at(world["later"].start_at - timedelta(minutes=5))
    assert fire(app).get("sent") == 1 and len(messages("eager")) == 2
    # once started, no reminder any more
    times.at(START + timedelta(minutes=1))
    assert fire(app)["activities"] == 0


def test_two_runs_at_once_send_one_message(world, monkeypatch):
    from functions import bootstrap

    times = world["clock"]
    times.at(START - timedelta(minutes=30))
    lock = threading.RLock()
    original = botocore.client.BaseClient._make_api_call

    def serialized(self, operation, params):
        with lock:
            return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", serialized)
    barrier = threading.Barrier(2, timeout=30)
    channel = bootstrap.activity_reminders().channel
    real_already = channel.already_sent

    def both_read_first(keys):
        seen = real_already(keys)
        barrier.wait()   # both runs saw nothing claimed yet
        return seen

    monkeypatch.setattr(channel, "already_sent", both_read_first)
    results = []
    runs = [threading.Thread(target=lambda: results.append(bootstrap.activity_reminders().run())) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    monkeypatch.undo()
    # Both read nothing claimed; the conditional claim decided: one message, one skip (no
    # consent), and the other run found both claimed when it tried.
    totals = {k: sum(r.get(k, 0) for r in results) for k in ("sent", "skipped", "already")}
    assert totals == {"sent": 1, "skipped": 1, "already": 2}
    assert len(messages("eager")) == 1
    assert bootstrap.notifications().consents_of("eager")[1].available == 1
