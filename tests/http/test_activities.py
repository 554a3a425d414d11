"""Community activities over HTTP (API.md "Community activities"): publish, list, read, sign up
and cancel, the rotating on-site code, check-in and check-out, the close with its one award, and
insurance for participants — every forbidden and bad case the contract names, each ending with
the ledger check ok."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.activity_support import (NOW, START, Clock, activity_body, attend, check, close, code_of, ledger_ok,
                                    publish, sign_up)
from tests.helpers import (admin_headers, as_json, assert_error, db_snapshot, json_headers, login, register,
                           verified_resident)
from tests.queues import drain

END = START + timedelta(hours=2)


@pytest.fixture
def world(client, app):
    times = Clock()
    alice, alice_resident = verified_resident(client, "act-alice", building="5", room="101")
    bob, bob_resident = verified_resident(client, "act-bob", building="5", room="102")
    return {"client": client, "app": app, "clock": times, "alice": alice, "bob": bob,
            "alice_id": alice_resident["id"], "bob_id": bob_resident["id"], "admin": admin_headers(client)}


def volunteer_balance(client, headers):
    return client.http.get("/v1/accounts/me", headers=headers).json_body["resident"]["balances"].get(
        "volunteer", {"available": 0})["available"]


# --- publish ---------------------------------------------------------------------------------------

def test_admin_publishes_an_activity_and_a_retry_with_the_key_returns_it(world):
    client = world["client"]
    first = publish(client, key="act-1", requires_insurance=True)
    assert first["status"] == "published" and first["phase"] == "upcoming"
    assert (first["capacity"], first["signed_up"], first["asset"], first["award"]) == \
        (30, 0, "volunteer", {"mode": "per_hour", "minutes": 60})
    assert first["requires_insurance"] is True and first["start_at"] == START.isoformat()
    assert publish(client, key="act-1", requires_insurance=True)["id"] == first["id"]
    before = db_snapshot()
    other = client.http.post("/v1/admin/activities", body=as_json(activity_body(capacity=31)),
                             headers=json_headers(world["admin"], "act-1"))
    assert_error(other, 409, "IDEMPOTENCY_MISMATCH")
    assert db_snapshot() == before
    assert publish(client)["id"] != first["id"]   # no key: a new activity each time
    ledger_ok(client)


@pytest.mark.parametrize("changes, field", [
    ({"end_at": START.isoformat()}, "end_at"),
    ({"start_at": (NOW - timedelta(minutes=1)).isoformat()}, "start_at"),
    ({"end_at": (START + timedelta(hours=25)).isoformat()}, "end_at"),
    ({"capacity": 0}, "capacity"),
    ({"award": {"mode": "per_day", "minutes": 60}}, "award.mode"),
    ({"award": {"mode": "fixed", "minutes": 0}}, "award.minutes"),
    ({"asset": "reputation"}, "asset"),
    ({"title": ""}, "title"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_activities_are_400_naming_the_field_and_change_nothing(world, changes, field):
    before = db_snapshot()
    response = world["client"].http.post("/v1/admin/activities", body=as_json(activity_body(**changes)),
                                         headers=world["admin"])
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert field in body["details"]["fields"], body
    assert db_snapshot() == before


def test_an_activity_older_than_the_back_dating_window_is_backdated(world):
    """API.md "Risk controls": a time older than the back-dating window (default 48 h) is 422
    BACKDATED, not a malformed body; nothing is written."""
    before = db_snapshot()
    old = NOW - timedelta(hours=49)
    response = world["client"].http.post("/v1/admin/activities", headers=world["admin"], body=as_json(activity_body(
        start_at=old.isoformat(), end_at=(old + timedelta(hours=2)).isoformat())))
    body = assert_error(response, 422, "BACKDATED")
    assert body["details"] == {"limit": "backdating_window", "window_hours": 48}
    assert db_snapshot() == before
    ledger_ok(world["client"])


def test_only_admins_publish_close_and_read_codes(world):
    client = world["client"]
    activity = publish(client)
    pending, _ = register(client, "act-pending", building="5", room="109")
    before = db_snapshot()
    assert_error(client.http.post("/v1/admin/activities", body=as_json(activity_body()), headers=world["alice"]),
                 403, "FORBIDDEN")
    assert_error(client.http.get(f"/v1/admin/activities/{activity['id']}/code", headers=world["alice"]),
                 403, "FORBIDDEN")
    assert_error(client.http.post(f"/v1/admin/activities/{activity['id']}/close", headers=world["alice"]),
                 403, "FORBIDDEN")
    assert_error(client.http.get("/v1/activities"), 401, "UNAUTHENTICATED")
    assert_error(client.http.get("/v1/activities", headers=pending), 403, "NOT_VERIFIED")
    assert_error(sign_up(client, pending, activity["id"]), 403, "NOT_VERIFIED")
    assert db_snapshot() == before


# --- list and read -----------------------------------------------------------------------------------

def test_the_list_by_phase_and_one_activity_with_my_status(world):
    client, times = world["client"], world["clock"]
    later = publish(client, start_at=(START + timedelta(days=1)).isoformat(),
                    end_at=(END + timedelta(days=1)).isoformat(), title="周末义诊")
    soon = publish(client)
    listed = client.http.get("/v1/activities?status=upcoming", headers=world["alice"]).json_body
    assert [a["id"] for a in listed["items"]] == [soon["id"], later["id"]] and listed["next_cursor"] is None
    assert set(listed["items"][0]) >= {"id", "title", "place", "start_at", "end_at", "capacity", "signed_up", "status"}
    paged = client.http.get("/v1/activities?limit=1", headers=world["alice"]).json_body
    assert [a["id"] for a in paged["items"]] == [soon["id"]] and paged["next_cursor"]
    rest = client.http.get(f"/v1/activities?limit=1&cursor={paged['next_cursor']}", headers=world["alice"]).json_body
    assert [a["id"] for a in rest["items"]] == [later["id"]]

    mine = client.http.get(f"/v1/activities/{soon['id']}", headers=world["alice"]).json_body
    assert mine["my_status"] == "none" and mine["description"] == "清理楼道与绿地"
    assert sign_up(client, world["alice"], soon["id"]).status_code == 201
    mine = client.http.get(f"/v1/activities/{soon['id']}", headers=world["alice"]).json_body
    assert (mine["my_status"], mine["signed_up"]) == ("signed_up", 1)
    assert client.http.get(f"/v1/activities/{soon['id']}", headers=world["admin"]).json_body["my_status"] == "none"

    times.at(START + timedelta(minutes=5))
    assert [a["id"] for a in client.http.get("/v1/activities?status=ongoing", headers=world["bob"]).json_body["items"]] \
        == [soon["id"]]
    times.at(END + timedelta(minutes=5))
    assert [a["id"] for a in client.http.get("/v1/activities?status=ended", headers=world["bob"]).json_body["items"]] \
        == [soon["id"]]
    assert close(client, soon["id"]).status_code == 200
    closed = client.http.get("/v1/activities?status=closed", headers=world["bob"]).json_body["items"]
    assert [(a["id"], a["status"], a["phase"]) for a in closed] == [(soon["id"], "closed", "closed")]
    assert_error(client.http.get("/v1/activities?status=soon", headers=world["bob"]), 400, "VALIDATION_ERROR")
    assert_error(client.http.get("/v1/activities/act_nope", headers=world["bob"]), 404, "NOT_FOUND")
    ledger_ok(client)


# --- sign-up -----------------------------------------------------------------------------------------

def test_sign_up_once_within_capacity_and_cancel_before_the_start(world):
    client, times = world["client"], world["clock"]
    activity = publish(client, capacity=1)
    signed = sign_up(client, world["alice"], activity["id"])
    assert signed.status_code == 201 and signed.json_body["status"] == "signed_up"
    before = db_snapshot()
    assert_error(sign_up(client, world["alice"], activity["id"]), 409, "ALREADY_SIGNED_UP")
    assert_error(sign_up(client, world["bob"], activity["id"]), 409, "ACTIVITY_FULL")
    assert_error(sign_up(client, world["bob"], "act_unknown"), 404, "NOT_FOUND")
    assert_error(client.http.delete(f"/v1/activities/{activity['id']}/signup", headers=world["bob"]), 404, "NOT_FOUND")
    assert db_snapshot() == before
    # the place comes back, and the one who gave it up may take it again
    assert client.http.delete(f"/v1/activities/{activity['id']}/signup", headers=world["alice"]).status_code == 204
    assert sign_up(client, world["bob"], activity["id"]).status_code == 201
    assert client.http.delete(f"/v1/activities/{activity['id']}/signup", headers=world["bob"]).status_code == 204
    assert sign_up(client, world["alice"], activity["id"]).status_code == 201
    times.at(START + timedelta(minutes=1))
    before = db_snapshot()
    assert_error(client.http.delete(f"/v1/activities/{activity['id']}/signup", headers=world["alice"]),
                 409, "INVALID_STATE")
    assert db_snapshot() == before
    times.at(END + timedelta(minutes=1))
    assert close(client, activity["id"]).status_code == 200
    before = db_snapshot()
    assert_error(sign_up(client, world["bob"], activity["id"]), 409, "INVALID_STATE")
    assert db_snapshot() == before
    ledger_ok(client)


# --- on site -------------------------------------------------------------------------------------------

def test_check_in_and_out_with_the_rotating_code(world):
    client, times = world["client"], world["clock"]
    activity = publish(client)
    aid = activity["id"]
    assert sign_up(client, world["alice"], aid).status_code == 201
    times.at(START - timedelta(hours=1))   # too early to check in
    early_code = code_of(client, aid)
    before = db_snapshot()
    assert_error(check(client, world["alice"], aid, "check-in", early_code), 409, "INVALID_STATE")
    times.at(START - timedelta(minutes=10))
    shown = client.http.get(f"/v1/admin/activities/{aid}/code", headers=world["admin"]).json_body
    assert len(shown["code"]) == 6 and shown["code"].isdigit()
    # 10:50: the code rotates at 11:00 and is accepted until 11:10
    assert (shown["expires_at"], shown["accepted_until"]) == (START.isoformat(),
                                                              (START + timedelta(minutes=10)).isoformat())
    wrong = "000000" if shown["code"] != "000000" else "111111"
    assert_error(check(client, world["alice"], aid, "check-in", wrong), 422, "INVALID_CODE")
    assert_error(check(client, world["alice"], aid, "check-in", early_code), 422, "INVALID_CODE")   # stale
    assert_error(check(client, world["alice"], aid, "check-in", "12ab"), 422, "INVALID_CODE")
    assert_error(check(client, world["bob"], aid, "check-in", shown["code"]), 403, "FORBIDDEN")     # not signed up
    assert_error(check(client, world["alice"], aid, "check-out", shown["code"]), 409, "INVALID_STATE")
    assert_error(client.http.post(f"/v1/activities/{aid}/check-in", headers=world["alice"], body="{}"),
                 400, "VALIDATION_ERROR")
    assert db_snapshot() == before
    # the code read just before it rotated still works in the next window
    times.advance(minutes=10)
    checked_in = check(client, world["alice"], aid, "check-in", shown["code"])
    assert checked_in.status_code == 200, checked_in.body
    assert checked_in.json_body == {"status": "checked_in", "at": times.now.isoformat(), "activity_id": aid}
    again = check(client, world["alice"], aid, "check-in", wrong)   # a retried tap: the first time stands
    assert again.status_code == 200 and again.json_body["at"] == checked_in.json_body["at"]
    times.at(END - timedelta(minutes=5))
    out = check(client, world["alice"], aid, "check-out", code_of(client, aid))
    assert out.status_code == 200 and out.json_body["status"] == "checked_out"
    assert client.http.get(f"/v1/activities/{aid}", headers=world["alice"]).json_body["my_status"] == "checked_out"
    before = db_snapshot()
    assert_error(check(client, world["alice"], aid, "check-in", code_of(client, aid)), 409, "INVALID_STATE")
    assert db_snapshot() == before
    ledger_ok(client)


# --- close -----------------------------------------------------------------------------------------------

def test_close_pays_attendance_once_from_issuance_to_personal_accounts(world, client):
    times = world["clock"]
    activity = publish(client)
    aid = activity["id"]
    carol, _ = verified_resident(client, "act-carol", building="5", room="103")
    dave, _ = verified_resident(client, "act-dave", building="5", room="104")
    for headers in (world["alice"], world["bob"], carol, dave):
        assert sign_up(client, headers, aid).status_code == 201
    before = db_snapshot()
    assert_error(close(client, aid), 409, "INVALID_STATE")   # not started yet
    assert db_snapshot() == before
    # alice: all of it (early arrival not counted) → 120; bob: 1 h 40 → 1 h 30 → 90; carol: 10 min
    # → 0 (nothing paid); dave: checked in, never out → 0
    attend(client, times, world["alice"], aid, START - timedelta(minutes=20), END + timedelta(minutes=30))
    attend(client, times, world["bob"], aid, START + timedelta(minutes=10), START + timedelta(minutes=110))
    attend(client, times, carol, aid, START + timedelta(minutes=30), START + timedelta(minutes=40))
    times.at(START + timedelta(minutes=5))
    assert check(client, dave, aid, "check-in", code_of(client, aid)).status_code == 200
    times.at(END + timedelta(hours=1))
    closed = close(client, aid)
    assert closed.status_code == 200, closed.body
    assert closed.json_body == {"status": "closed", "awarded": 2, "minutes_total": 210}
    assert [volunteer_balance(client, h) for h in (world["alice"], world["bob"], carol, dave)] == [120, 90, 0, 0]
    statement = client.http.get(f"/v1/accounts/{world['alice_id']}/transfers", headers=world["alice"]).json_body
    award = statement["items"][0]
    assert (award["kind"], award["asset"], award["amount"], award["debit_account"]) == \
        ("activity_award", "volunteer", 120, "issuance")
    mine = client.http.get(f"/v1/activities/{aid}", headers=world["bob"]).json_body
    assert (mine["status"], mine["my_award_minutes"], mine["awarded"], mine["minutes_total"]) == ("closed", 90, 2, 210)
    # closing again returns the same and pays nothing more
    before = db_snapshot()
    assert close(client, aid).json_body == closed.json_body
    assert db_snapshot() == before
    assert_error(check(client, dave, aid, "check-out", "123456"), 409, "INVALID_STATE")
    assert_error(client.http.get(f"/v1/admin/activities/{aid}/code", headers=world["admin"]), 409, "INVALID_STATE")
    assert_error(close(client, "act_unknown"), 404, "NOT_FOUND")
    ledger_ok(client)


def test_a_fixed_award_pays_the_stated_minutes_to_everyone_who_came(world, client):
    times = world["clock"]
    activity = publish(client, award={"mode": "fixed", "minutes": 45}, asset="green")
    for headers in (world["alice"], world["bob"]):
        assert sign_up(client, headers, activity["id"]).status_code == 201
    attend(client, times, world["alice"], activity["id"], START, START + timedelta(minutes=5))
    times.at(END + timedelta(minutes=1))
    assert close(client, activity["id"]).json_body == {"status": "closed", "awarded": 1, "minutes_total": 45}
    balances = client.http.get("/v1/accounts/me", headers=world["alice"]).json_body["resident"]["balances"]
    assert balances["green"]["available"] == 45
    ledger_ok(client)


# --- insurance -----------------------------------------------------------------------------------------------

def test_participants_are_insured_when_the_activity_requires_it(world, client, app):
    activity = publish(client, requires_insurance=True)
    uninsured = publish(client, title="读书会")
    aid = activity["id"]
    assert sign_up(client, world["alice"], aid).status_code == 201
    assert sign_up(client, world["bob"], aid).status_code == 201
    assert sign_up(client, world["bob"], uninsured["id"]).status_code == 201
    assert drain(app, "insurance") == 3
    listed = client.http.get("/v1/admin/insurance-records?from=2026-12-01&to=2026-12-01",
                             headers=world["admin"]).json_body["items"]
    assert sorted((r["activity_id"], r["volunteer_id"], r["status"]) for r in listed) == sorted(
        [(aid, world["alice_id"], "active"), (aid, world["bob_id"], "active")])
    record = next(r for r in listed if r["volunteer_id"] == world["alice_id"])
    assert record["category"] == "activity" and record["duration_minutes"] == 120
    assert (record["covered_from"], record["covered_to"]) == ((START - timedelta(minutes=30)).isoformat(),
                                                              (END + timedelta(minutes=30)).isoformat())
    # a cancelled sign-up is no longer insured; signing up again is insured anew
    assert client.http.delete(f"/v1/activities/{aid}/signup", headers=world["alice"]).status_code == 204
    assert sign_up(client, world["alice"], aid).status_code == 201
    assert drain(app, "insurance") == 2
    listed = client.http.get("/v1/admin/insurance-records?from=2026-12-01&to=2026-12-01",
                             headers=world["admin"]).json_body["items"]
    alice = sorted((r["request_id"], r["status"]) for r in listed if r["volunteer_id"] == world["alice_id"])
    assert alice == [(f"{aid}.{world['alice_id']}.1", "cancelled"), (f"{aid}.{world['alice_id']}.2", "active")]
    assert drain(app, "insurance") == 0
    ledger_ok(client)


def test_login_is_needed_everywhere(world):
    client = world["client"]
    activity = publish(client)
    aid = activity["id"]
    for method, path in (("GET", f"/v1/activities/{aid}"), ("POST", f"/v1/activities/{aid}/signup"),
                         ("DELETE", f"/v1/activities/{aid}/signup"), ("POST", f"/v1/activities/{aid}/check-in"),
                         ("POST", f"/v1/activities/{aid}/check-out"), ("POST", "/v1/admin/activities"),
                         ("GET", f"/v1/admin/activities/{aid}/code"), ("POST", f"/v1/admin/activities/{aid}/close")):
        response = client.http.request(method, path, headers={"Content-Type": "application/json"},
                                       body=as_json({"code": "123456"}))
        assert_error(response, 401, "UNAUTHENTICATED")
    stranger = login(client, "act-stranger")
    assert_error(client.http.get(f"/v1/activities/{aid}", headers=stranger), 403, "NOT_REGISTERED")
    ledger_ok(client)
