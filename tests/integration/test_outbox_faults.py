"""Domain events are written in the transaction of the change and relayed at least once: a
failed publish, or a process that dies between the commit and the relay (or between the
publish and forgetting the event), loses nothing and doubles nothing downstream.

For post, accept and cancel, each fault is injected at the point it names; afterwards the
relay's schedule runs and the queues are drained, and the test counts what the consumers did:
one match run per posted request, one insurance record per accepted service, that record
cancelled when the service is cancelled."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from functions import bootstrap
from functions.adapters.outbox import Relay, pending_events
from functions.core import clock
from functions.core.clock import CHINA_TZ
from functions.ledger.model import SimulatedCrash
from functions.safety.dynamo import InsuranceRecordItem
from functions.volunteers.dynamo import MatchItem
from tests.helpers import as_json, json_headers, verified_resident
from tests.queues import drain

EVENTS = Path(__file__).resolve().parents[2] / "events"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA_TZ)
QUEUES_OF = ("matching", "insurance", "volunteer-stats")


class DownPublisher:
    """SQS unreachable: every send fails."""

    def publish(self, *args, **kwargs):
        raise ConnectionError("sqs unreachable")


class DiesAfterPublishing(Relay):
    """The message went out, then the process died before the event left the outbox."""

    def _send(self, event):
        message = event.message()
        from functions.core.messaging import subscribers

        for queue in subscribers(event.type):
            self.publisher.publish(queue, message, deduplication_id=event.id)
        raise SimulatedCrash("died before deleting the outbox item")


class DiesBeforeRelaying(Relay):
    def dispatch(self, events):
        raise SimulatedCrash("died between the commit and the relay")


@pytest.fixture
def world(client, app):
    clock.set_clock(lambda: NOW)
    requester, _ = verified_resident(client, "req-a", building="3", unit="1", room="502")
    volunteer, vol = verified_resident(client, "vol-b", building="3", unit="2", room="101")
    assert client.http.put("/v1/volunteers/me", headers=volunteer, body=as_json(
        {"categories": ["companion"], "availability": [], "accepting": True})).status_code == 200
    for _ in range(2):  # two consents: a duplicate delivery could be sent, if anything let it through
        assert client.http.post("/v1/notifications/consents", headers=volunteer,
                                body=as_json({"template": "match", "accepted": True})).status_code == 200
    return {"client": client, "app": app, "requester": requester, "volunteer": volunteer, "vol": vol}


def use_relay(relay: Relay) -> None:
    """Hand the request service this relay (it keeps the one it was built with)."""
    bootstrap.use("relay", relay)
    bootstrap.requests().relay = relay


def faulty(kind: str) -> Relay:
    real = bootstrap.publisher()
    return {"publish_fails": Relay(DownPublisher()), "dies_before_relay": DiesBeforeRelaying(real),
            "dies_after_publish": DiesAfterPublishing(real)}[kind]


def sweep_and_drain(app) -> dict[str, int]:
    """A minute later: the relay schedule fires, then every consumer runs."""
    clock.set_clock(lambda: NOW + timedelta(minutes=1))
    event = json.loads((EVENTS / "relay-events.json").read_text())
    swept = app.handler_map["relay-events"](event, None)
    handled = {queue: drain(app, queue) for queue in QUEUES_OF}
    clock.set_clock(lambda: NOW)
    return {"swept": swept["sent"], **handled}


def post(client, headers, key="need-1"):
    body = {"category": "companion", "title": "陪老人散步", "description": "", "duration_minutes": 60,
            "start_at": (NOW + timedelta(hours=5)).isoformat()}
    return client.http.post("/v1/requests", body=as_json(body), headers=json_headers(headers, key))


def matches(request_id: str) -> list:
    return list(MatchItem.query(request_id))


def insurance(request_id: str) -> list:
    return [item.status for item in InsuranceRecordItem.scan() if item.request_id == request_id]


FAULTS = ("publish_fails", "dies_before_relay", "dies_after_publish")


@pytest.mark.parametrize("fault", FAULTS)
def test_post(world, fault):
    client, app = world["client"], world["app"]
    use_relay(faulty(fault))
    response = post(client, world["requester"])
    if fault == "dies_before_relay":
        assert response.status_code == 500  # the client saw a failure …
        use_relay(Relay(bootstrap.publisher()))
        response = post(client, world["requester"])  # … and retries with its key: the same request
    assert response.status_code == 201, response.body
    request_id = response.json_body["id"]
    assert [e.type for e in pending_events()] == ["request.posted"]  # kept until sent
    use_relay(Relay(bootstrap.publisher()))
    counts = sweep_and_drain(app)
    assert counts["swept"] == 1 and counts["matching"] == (2 if fault == "dies_after_publish" else 1)
    assert pending_events() == []
    assert [m.volunteer_id for m in matches(request_id)] == [world["vol"]["id"]]  # one match run
    # Even delivered twice, the volunteer was notified once.
    outbox = client.http.get("/v1/admin/outbox", headers=json_headers({"Authorization": admin_token(client)}))
    assert [m["template"] for m in outbox.json_body["items"]].count("match") == 1


def admin_token(client) -> str:
    from tests.helpers import token_for

    return f"Bearer {token_for(client, 'admin-test')}"


def accepted_request(world) -> str:
    client, app = world["client"], world["app"]
    request_id = post(client, world["requester"]).json_body["id"]
    drain(app, "matching")
    return request_id


@pytest.mark.parametrize("fault", FAULTS)
def test_accept(world, fault):
    client, app = world["client"], world["app"]
    request_id = accepted_request(world)
    use_relay(faulty(fault))
    response = client.http.post(f"/v1/requests/{request_id}/accept", headers=world["volunteer"])
    assert response.status_code == (500 if fault == "dies_before_relay" else 200), response.body
    assert client.http.get(f"/v1/requests/{request_id}", headers=world["volunteer"]).json_body["status"] == "accepted"
    assert insurance(request_id) == ["active"]  # written by the accept's own transaction
    use_relay(Relay(bootstrap.publisher()))
    counts = sweep_and_drain(app)
    assert counts["swept"] == 1 and counts["insurance"] == (2 if fault == "dies_after_publish" else 1)
    assert insurance(request_id) == ["active"]  # exactly one record
    assert pending_events() == []


@pytest.mark.parametrize("fault", FAULTS)
def test_cancel(world, fault):
    client, app = world["client"], world["app"]
    request_id = accepted_request(world)
    assert client.http.post(f"/v1/requests/{request_id}/accept", headers=world["volunteer"]).status_code == 200
    drain(app, "insurance")
    assert insurance(request_id) == ["active"]
    use_relay(faulty(fault))
    response = client.http.post(f"/v1/requests/{request_id}/cancel", headers=world["requester"],
                                body=as_json({"reason": "家里有事"}))
    assert response.status_code == (500 if fault == "dies_before_relay" else 200), response.body
    assert insurance(request_id) == ["active"]
    use_relay(Relay(bootstrap.publisher()))
    counts = sweep_and_drain(app)
    assert counts["swept"] == 1
    assert insurance(request_id) == ["cancelled"]
    assert pending_events() == []


def test_events_are_written_in_the_same_transaction_as_the_state(world, monkeypatch):
    """A refused change writes no event: the accept that loses the race leaves none behind."""
    client, app = world["client"], world["app"]
    request_id = accepted_request(world)
    other, _ = verified_resident(client, "vol-c", building="5", unit="1", room="303")
    assert client.http.post(f"/v1/requests/{request_id}/accept", headers=world["volunteer"]).status_code == 200
    drain(app, "insurance")
    drain(app, "volunteer-stats")
    late = client.http.post(f"/v1/requests/{request_id}/accept", headers=other)
    assert late.status_code == 409 and late.json_body["code"] == "ALREADY_ACCEPTED"
    assert pending_events() == []
