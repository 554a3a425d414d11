"""Every forbidden transition and caller is refused with API.md's code, and nothing changes."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest

from functions.core import clock
from functions.core.clock import CHINA_TZ
from functions.requests.dynamo import DynamoRequestStore as RequestStore
from tests.helpers import admin_headers, as_json, json_headers, login, register, verified_resident
from tests.queues import drain

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA_TZ)
START = (NOW + timedelta(hours=3)).isoformat()
NEED = {"category": "tutoring", "title": "辅导", "description": "", "start_at": START, "duration_minutes": 60}


@pytest.fixture
def world(client, app):
    clock.set_clock(lambda: NOW)
    requester, req = verified_resident(client, "req", building="1", room="101")
    spouse, _ = verified_resident(client, "spouse", building="1", room="101")
    volunteer, vol = verified_resident(client, "vol", building="2", room="201")
    stranger, _ = verified_resident(client, "stranger", building="3", room="301")
    need = client.http.post("/v1/requests", body=as_json(NEED),
                            headers=json_headers(requester, "need-1")).json_body
    return dict(client=client, app=app, requester=requester, spouse=spouse, volunteer=volunteer,
                volunteer_id=vol["id"], stranger=stranger, need=need)


def snapshot(client, need_id, headers):
    request = client.http.get(f"/v1/requests/{need_id}", headers=headers).json_body
    accounts = client.http.get("/v1/accounts/me", headers=headers).json_body
    return request, accounts


def refused(response, status, code):
    assert response.status_code == status, response.body
    body = response.json_body
    assert body["code"] == code and isinstance(body["message"], str) and "details" in body


def act(client, need_id, action, headers, body=None):
    return client.http.post(f"/v1/requests/{need_id}/{action}", headers=headers,
                            body=as_json(body if body is not None else {}))


def test_own_household_cannot_accept(world):
    client, need = world["client"], world["need"]
    before = snapshot(client, need["id"], world["requester"])
    for who in ("requester", "spouse"):
        refused(act(client, need["id"], "accept", world[who]), 422, "OWN_REQUEST")
    assert snapshot(client, need["id"], world["requester"]) == before


def test_second_acceptor_gets_already_accepted(world):
    client, need = world["client"], world["need"]
    assert act(client, need["id"], "accept", world["volunteer"]).status_code == 200
    refused(act(client, need["id"], "accept", world["stranger"]), 409, "ALREADY_ACCEPTED")
    assert client.http.get(f"/v1/requests/{need['id']}", headers=world["requester"]).json_body[
        "volunteer_id"] == world["volunteer_id"]
    # Taken, it is no longer in the feed: the stranger is told it does not exist.
    refused(client.http.get(f"/v1/requests/{need['id']}", headers=world["stranger"]), 404, "NOT_FOUND")


def test_a_stranger_cannot_check_in_complete_confirm_or_cancel(world):
    client, need = world["client"], world["need"]
    act(client, need["id"], "accept", world["volunteer"])
    before = snapshot(client, need["id"], world["requester"])
    refused(act(client, need["id"], "check-in", world["stranger"]), 403, "FORBIDDEN")
    refused(act(client, need["id"], "check-in", world["requester"]), 403, "FORBIDDEN")
    refused(act(client, need["id"], "cancel", world["stranger"], {"reason": "x"}), 403, "FORBIDDEN")
    refused(act(client, need["id"], "complete", world["volunteer"], {"minutes": 60}), 409, "INVALID_STATE")
    refused(act(client, need["id"], "confirm", world["requester"]), 409, "INVALID_STATE")
    assert snapshot(client, need["id"], world["requester"]) == before


def test_the_requester_cannot_cancel_after_check_in_but_an_admin_can(world):
    client, need = world["client"], world["need"]
    act(client, need["id"], "accept", world["volunteer"])
    act(client, need["id"], "check-in", world["volunteer"])
    before = snapshot(client, need["id"], world["requester"])
    refused(act(client, need["id"], "cancel", world["requester"], {"reason": "算了"}), 409, "INVALID_STATE")
    assert snapshot(client, need["id"], world["requester"]) == before
    # Outside testing: a service in progress could never be closed. An admin ends it.
    cancelled = act(client, need["id"], "cancel", admin_headers(client), {"reason": "志愿者联系不上"})
    assert cancelled.status_code == 200 and cancelled.json_body["status"] == "cancelled"


def test_volunteer_cannot_confirm_own_service_and_stranger_cannot_dispute(world):
    client, need = world["client"], world["need"]
    act(client, need["id"], "accept", world["volunteer"])
    act(client, need["id"], "check-in", world["volunteer"])
    act(client, need["id"], "complete", world["volunteer"], {"minutes": 60})
    before = snapshot(client, need["id"], world["requester"])
    refused(act(client, need["id"], "confirm", world["volunteer"]), 403, "FORBIDDEN")
    refused(act(client, need["id"], "dispute", world["stranger"], {"reason": "x"}), 403, "FORBIDDEN")
    refused(client.http.post(f"/v1/admin/requests/{need['id']}/resolve", headers=world["requester"],
                             body=as_json({"outcome": "pay", "reason": "x"})), 403, "FORBIDDEN")
    refused(client.http.post(f"/v1/admin/requests/{need['id']}/resolve", headers=admin_headers(client),
                             body=as_json({"outcome": "pay", "reason": "x"})), 409, "INVALID_STATE")
    assert snapshot(client, need["id"], world["requester"]) == before
    assert act(client, need["id"], "confirm", world["spouse"]).status_code == 200
    refused(act(client, need["id"], "confirm", world["requester"]), 409, "INVALID_STATE")


def test_unverified_and_anonymous_callers(world):
    client, need = world["client"], world["need"]
    pending, _ = register(client, "newcomer", building="9", room="901")
    refused(client.http.post("/v1/requests", body=as_json(NEED), headers=json_headers(pending, "p-1")),
            403, "NOT_VERIFIED")
    refused(act(client, need["id"], "accept", pending), 403, "NOT_VERIFIED")
    refused(client.http.post("/v1/requests", body=as_json(NEED), headers=json_headers({}, "p-2")),
            401, "UNAUTHENTICATED")
    refused(client.http.get("/v1/requests", headers={}), 401, "UNAUTHENTICATED")
    not_registered = login(client, "just-logged-in")
    assert client.http.get("/v1/requests", headers=not_registered).status_code == 403


@pytest.mark.parametrize("change, field", [
    ({"category": "spaceflight"}, None),
    ({"category": 7}, "category"),
    ({"title": ""}, "title"),
    ({"title": "长" * 61}, "title"),
    ({"description": "x" * 1001}, "description"),
    ({"start_at": "tomorrow"}, "start_at"),
    ({"start_at": "2026-12-01T11:00:00"}, "start_at"),  # no offset
    ({"start_at": (NOW - timedelta(hours=1)).isoformat()}, "start_at"),
    ({"duration_minutes": 0}, "duration_minutes"),
    ({"duration_minutes": -30}, "duration_minutes"),
    ({"duration_minutes": 10**9}, "duration_minutes"),
    ({"duration_minutes": "60"}, "duration_minutes"),
    ({"duration_minutes": 60.5}, "duration_minutes"),
    ({"duration_minutes": 181}, "duration_minutes"),   # above tutoring's max_minutes
    ({"beneficiary_member_id": "mem_not_ours"}, "beneficiary_member_id"),
    ({"from": "neighbour"}, "from"),
])
def test_bad_posts_are_400_and_hold_nothing(world, change, field):
    client, requester = world["client"], world["requester"]
    before = client.http.get("/v1/accounts/me", headers=requester).json_body
    response = client.http.post("/v1/requests", body=as_json({**NEED, **change}),
                                headers=json_headers(requester, f"bad-{field}-{len(json.dumps(change))}"))
    if field is None:
        refused(response, 404, "NOT_FOUND")
    else:
        refused(response, 400, "VALIDATION_ERROR")
        assert field in response.json_body["details"]["fields"]
    assert client.http.get("/v1/accounts/me", headers=requester).json_body == before


@pytest.mark.parametrize("body", ["{not json", "[]", "null", '"text"'])
def test_malformed_bodies(world, body):
    client, requester = world["client"], world["requester"]
    response = client.http.post("/v1/requests", body=body, headers=json_headers(requester, "malformed"))
    refused(response, 400, "VALIDATION_ERROR")


def test_missing_idempotency_key_and_unknown_request(world):
    client, requester = world["client"], world["requester"]
    refused(client.http.post("/v1/requests", body=as_json(NEED), headers=requester), 400, "VALIDATION_ERROR")
    refused(client.http.get("/v1/requests/req_doesnotexist", headers=requester), 404, "NOT_FOUND")
    refused(act(client, "req_doesnotexist", "accept", world["volunteer"]), 404, "NOT_FOUND")
    refused(act(client, world["need"]["id"], "complete", world["volunteer"], {"minutes": "sixty"}),
            400, "VALIDATION_ERROR")
    refused(act(client, world["need"]["id"], "confirm", world["requester"], {"rating": 6}), 400, "VALIDATION_ERROR")
    refused(act(client, world["need"]["id"], "cancel", world["requester"], {}), 400, "VALIDATION_ERROR")


def test_twenty_concurrent_accepts_have_exactly_one_winner(world, monkeypatch):
    """All twenty read the open request before any of them writes (forced by a barrier), so the
    conditional write alone decides. moto calls are serialized (moto is not thread-safe), and the
    race runs through the service, because Chalice keeps ``current_request`` on the app object,
    which threads of one in-process test client would overwrite."""
    import botocore.client

    from functions.core.errors import TimebankError
    from functions.core.caller import Caller
    from functions import bootstrap

    client, need = world["client"], world["need"]
    racers = []
    for i in range(20):
        _, resident = verified_resident(client, f"racer-{i}", building="7", room=str(700 + i))
        racers.append(Caller(f"racer-{i}", resident["id"], resident["household_id"], "verified",
                             frozenset({"resident"})))
    lock = threading.RLock()
    original_call = botocore.client.BaseClient._make_api_call

    def serialized(self, operation, params):
        with lock:
            return original_call(self, operation, params)

    barrier = threading.Barrier(20, timeout=30)
    seen = threading.local()
    original_get = RequestStore.get

    def get_then_wait(self, request_id):
        result = original_get(self, request_id)
        if not getattr(seen, "waited", False):
            seen.waited = True
            barrier.wait()
        return result

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", serialized)
    monkeypatch.setattr(RequestStore, "get", get_then_wait)
    results: list[tuple[int, str]] = []
    service = bootstrap.requests()

    def accept(caller):
        try:
            service.accept(caller, need["id"])
            results.append((200, caller.resident_id))
        except TimebankError as error:
            results.append((error.status, error.code))

    threads = [threading.Thread(target=accept, args=(c,)) for c in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    monkeypatch.undo()
    winners = [who for status, who in results if status == 200]
    assert len(winners) == 1
    assert sorted(r for r in results if r[0] != 200) == [(409, "ALREADY_ACCEPTED")] * 19
    stored = client.http.get(f"/v1/requests/{need['id']}", headers=world["requester"]).json_body
    assert stored["status"] == "accepted" and stored["volunteer_id"] == winners[0]
    assert drain(world["app"], "insurance") == 1
