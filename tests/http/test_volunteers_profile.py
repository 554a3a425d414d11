"""PUT/GET /v1/volunteers/me: the contract, every bad input and every forbidden caller."""
from __future__ import annotations

import pytest

from tests.helpers import as_json, login, register, verified_resident

PROFILE = {"categories": ["pickup", "pet"],
           "availability": [{"weekday": 3, "start": "08:00", "end": "12:00"}], "accepting": True}


def put(client, headers, body):
    raw = body if isinstance(body, str) else as_json(body)
    return client.http.put("/v1/volunteers/me", body=raw, headers=headers)


@pytest.fixture
def volunteer(client):
    headers, _ = verified_resident(client, "vol-1", building="5", room="101")
    return headers


def test_put_then_get_the_profile(client, volunteer):
    response = put(client, volunteer, PROFILE)
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["categories"] == ["pet", "pickup"] and body["accepting"] is True
    assert body["availability"] == [{"weekday": 3, "start": "08:00", "end": "12:00"}]
    assert body["matched_categories"] == ["pet", "pickup"] and body["skills"] == []
    assert body["stats"] == {"accepted": 0, "completed": 0, "failed": 0, "rating": None, "rating_count": 0,
                             "recent_services": 0}
    got = client.http.get("/v1/volunteers/me", headers=volunteer)
    assert got.status_code == 200 and got.json_body == body


def test_put_replaces_and_pausing_empties_the_matched_categories(client, volunteer):
    put(client, volunteer, PROFILE)
    body = put(client, volunteer, {"categories": ["parcel"], "accepting": False}).json_body
    assert body["categories"] == ["parcel"] and body["availability"] == [] and body["matched_categories"] == []


def test_get_before_any_profile_is_404(client, volunteer):
    response = client.http.get("/v1/volunteers/me", headers=volunteer)
    assert response.status_code == 404 and response.json_body["code"] == "NOT_FOUND"


BAD_BODIES = [
    ({"availability": [], "accepting": True}, "categories"),
    ({"categories": None, "accepting": True}, "categories"),
    ({"categories": "pickup", "accepting": True}, "categories"),
    ({"categories": ["pickup", "cooking"], "accepting": True}, "categories[1]"),
    ({"categories": [1], "accepting": True}, "categories[0]"),
    ({"categories": ["pickup"]}, "accepting"),
    ({"categories": ["pickup"], "accepting": "yes"}, "accepting"),
    ({"categories": ["pickup"], "accepting": 1}, "accepting"),
    ({"categories": ["pickup"], "accepting": True, "availability": "weekends"}, "availability"),
    ({"categories": ["pickup"], "accepting": True,
      "availability": [{"weekday": 9, "start": "08:00", "end": "09:00"}]}, "availability[0].weekday"),
    ({"categories": ["pickup"], "accepting": True,
      "availability": [{"weekday": 1, "start": "8am", "end": "09:00"}]}, "availability[0].start"),
    ({"categories": ["pickup"], "accepting": True,
      "availability": [{"weekday": 1, "start": "10:00", "end": "09:00"}]}, "availability[0].end"),
    ({"categories": ["pickup"], "accepting": True,
      "availability": [{"weekday": d, "start": f"{h:02d}:00", "end": f"{h:02d}:30"}
                       for d in range(1, 8) for h in range(4)]}, "availability"),
]


def test_bad_input_is_400_naming_the_field(client, volunteer):
    # One resident for all cases: the moto account is the expensive part of a test.
    for body, field in BAD_BODIES:
        response = put(client, volunteer, body)
        assert response.status_code == 400, (body, response.body)
        assert response.json_body["code"] == "VALIDATION_ERROR"
        assert field in response.json_body["details"]["fields"], (body, response.json_body)
    for raw in ("{not json", "[1, 2]", "\"text\""):
        response = put(client, volunteer, raw)
        assert response.status_code == 400 and response.json_body["code"] == "VALIDATION_ERROR", raw
    assert client.http.get("/v1/volunteers/me", headers=volunteer).status_code == 404   # nothing was saved


def test_anonymous_is_401(client):
    for response in (client.http.get("/v1/volunteers/me"),
                     client.http.put("/v1/volunteers/me", body=as_json(PROFILE),
                                     headers={"Content-Type": "application/json"})):
        assert response.status_code == 401 and response.json_body["code"] == "UNAUTHENTICATED"


def test_unverified_residents_and_unregistered_logins_are_403(client):
    pending, _ = register(client, "pending-1", building="5", room="102")
    unregistered = login(client, "nobody-1")
    for headers in (pending, unregistered):
        assert put(client, headers, PROFILE).status_code == 403
        assert client.http.get("/v1/volunteers/me", headers=headers).status_code == 403
