"""Risk controls over HTTP (API.md "Risk controls"): the limits a settlement must keep — credited
minutes and services per volunteer per day, services per pair of households per day — refused
with 422 LIMIT_EXCEEDED and ``details.limit`` inside the settlement's transaction (nothing
changes); no credit within one household (OWN_REQUEST); and the flags for repeated pairs and
rapid back-and-forth, listed and resolved by admins. Every test ends with the ledger check ok."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from functions.core import clock
from functions.core.clock import CHINA_TZ
from tests.activity_support import ledger_ok
from tests.helpers import admin_headers, as_json, assert_error, db_snapshot, json_headers, verified_resident
from tests.queues import drain

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA_TZ)
FLAGS = "/v1/admin/risk/flags"


@pytest.fixture
def limits(monkeypatch):
    """Community settings for one test (set before anything is built)."""
    from functions import bootstrap

    def configure(**values):
        for name, value in values.items():
            monkeypatch.setenv(f"TIMEBANK_RISK_{name.upper()}", str(value))
        bootstrap.reset()

    return configure


@pytest.fixture
def people(client, app):
    times = {"now": NOW}
    clock.set_clock(lambda: times["now"])
    made = {}
    for name, room in (("ann", "101"), ("ben", "201"), ("cat", "301"), ("dan", "401")):
        headers, resident = verified_resident(client, f"risk-{name}", building=room[0], room=room)
        made[name] = (headers, resident)
    return {"client": client, "app": app, "times": times, **made}


def serve(client, requester, volunteer, key, minutes=60, confirm=True):
    """A tutoring need of ``requester`` served by ``volunteer``; returns (need id, confirm response)."""
    body = {"category": "tutoring", "title": "辅导", "description": "", "duration_minutes": minutes,
            "start_at": (clock.now() + timedelta(hours=2)).isoformat()}
    posted = client.http.post("/v1/requests", body=as_json(body), headers=json_headers(requester, key))
    assert posted.status_code == 201, posted.body
    need_id = posted.json_body["id"]
    for step, payload in (("accept", None), ("check-in", "{}"), ("complete", as_json({"minutes": minutes}))):
        assert client.http.post(f"/v1/requests/{need_id}/{step}", headers=volunteer, body=payload).status_code == 200
    if not confirm:
        return need_id, None
    return need_id, client.http.post(f"/v1/requests/{need_id}/confirm", headers=requester, body="{}")


def refused_with(response, limit):
    body = assert_error(response, 422, "LIMIT_EXCEEDED")
    assert body["details"]["limit"] == limit, body
    return body


def test_services_between_one_pair_of_households_per_day(people, limits):
    limits(pair_daily=2)
    client, (ann, _), (ben, _) = people["client"], people["ann"], people["ben"]
    assert serve(client, ann, ben, "p1")[1].status_code == 200
    assert serve(client, ben, ann, "p2")[1].status_code == 200   # either direction counts for the pair
    need_id, _ = serve(client, ann, ben, "p3", confirm=False)
    before = db_snapshot()
    body = refused_with(client.http.post(f"/v1/requests/{need_id}/confirm", headers=ann, body="{}"), "pair_daily")
    assert body["details"]["max"] == 2
    assert db_snapshot() == before
    assert serve(client, ann, people["cat"][0], "p4")[1].status_code == 200   # another pair is fine
    people["times"]["now"] = NOW + timedelta(days=1)                         # and tomorrow this one again
    confirmed = client.http.post(f"/v1/requests/{need_id}/confirm", headers=ann, body="{}")
    assert confirmed.status_code == 200 and confirmed.json_body["status"] == "settled"
    ledger_ok(client)


def test_credited_minutes_and_services_per_volunteer_per_day(people, limits):
    limits(daily_minutes=150, daily_services=2, pair_daily=0)
    client, ben = people["client"], people["ben"][0]
    assert serve(client, people["ann"][0], ben, "m1", minutes=90)[1].status_code == 200
    need_id, _ = serve(client, people["cat"][0], ben, "m2", minutes=90, confirm=False)
    before = db_snapshot()
    body = refused_with(client.http.post(f"/v1/requests/{need_id}/confirm", headers=people["cat"][0], body="{}"),
                        "daily_minutes")
    assert (body["details"]["max"], body["details"]["used"]) == (150, 90)
    assert db_snapshot() == before
    assert serve(client, people["dan"][0], ben, "m3", minutes=60)[1].status_code == 200   # 150 of 150
    limits(daily_minutes=0, daily_services=2, pair_daily=0)
    body = refused_with(client.http.post(f"/v1/requests/{need_id}/confirm", headers=people["cat"][0], body="{}"),
                        "daily_services")
    assert body["details"]["max"] == 2
    # an admin resolving a dispute is held to the same limits
    assert client.http.post(f"/v1/requests/{need_id}/dispute", headers=people["cat"][0],
                            body=as_json({"reason": "时长有出入"})).status_code == 200
    refused_with(client.http.post(f"/v1/admin/requests/{need_id}/resolve", headers=admin_headers(client),
                                  body=as_json({"outcome": "pay", "minutes": 30, "reason": "按实际"})),
                 "daily_services")
    ledger_ok(client)


def test_one_service_above_the_daily_minutes_is_refused_outright(people, limits):
    limits(daily_minutes=100)
    client = people["client"]
    need_id, _ = serve(client, people["ann"][0], people["ben"][0], "big", minutes=120, confirm=False)
    before = db_snapshot()
    refused_with(client.http.post(f"/v1/requests/{need_id}/confirm", headers=people["ann"][0], body="{}"),
                 "daily_minutes")
    assert db_snapshot() == before
    ledger_ok(client)


def test_rapid_back_and_forth_is_flagged_not_refused_and_resolved_ok(people):
    client, app, admin = people["client"], people["app"], admin_headers(people["client"])
    (ann, a), (ben, b) = people["ann"], people["ben"]
    assert serve(client, ann, ben, "c1")[1].status_code == 200
    people["times"]["now"] = NOW + timedelta(hours=3)
    assert serve(client, ben, ann, "c2")[1].status_code == 200   # B served A, then A served B
    assert drain(app, "risk-flags") == 2
    flags = client.http.get(f"{FLAGS}?status=open", headers=admin).json_body
    (flag,) = flags["items"]
    assert (flag["kind"], sorted(flag["subjects"]), flag["count"], flag["status"], flag["window_days"]) == \
        ("rapid_cycle", sorted([a["household_id"], b["household_id"]]), 2, "open", 1)
    before = db_snapshot()
    assert_error(client.http.get(FLAGS, headers=ann), 403, "FORBIDDEN")
    assert_error(client.http.post(f"{FLAGS}/{flag['id']}/resolve", headers=ann,
                                  body=as_json({"outcome": "ok", "reason": "x"})), 403, "FORBIDDEN")
    assert_error(client.http.post(f"{FLAGS}/flag_nope/resolve", headers=admin,
                                  body=as_json({"outcome": "ok", "reason": "x"})), 404, "NOT_FOUND")
    assert_error(client.http.post(f"{FLAGS}/{flag['id']}/resolve", headers=admin,
                                  body=as_json({"outcome": "forget", "reason": "x"})), 400, "VALIDATION_ERROR")
    assert_error(client.http.get(f"{FLAGS}?status=maybe", headers=admin), 400, "VALIDATION_ERROR")
    assert db_snapshot() == before
    resolved = client.http.post(f"{FLAGS}/{flag['id']}/resolve", headers=admin,
                                body=as_json({"outcome": "ok", "reason": "母女两户互助，核实无异常"}))
    assert resolved.status_code == 200 and resolved.json_body["status"] == "resolved"
    assert resolved.json_body["resolution"]["outcome"] == "ok"
    assert client.http.get(f"{FLAGS}?status=open", headers=admin).json_body["items"] == []
    assert [f["id"] for f in client.http.get(f"{FLAGS}?status=resolved", headers=admin).json_body["items"]] == \
        [flag["id"]]
    again = client.http.post(f"{FLAGS}/{flag['id']}/resolve", headers=admin,
                             body=as_json({"outcome": "ok", "reason": "重复提交"}))
    assert again.status_code == 200 and again.json_body["resolution"]["reason"] == "母女两户互助，核实无异常"
    assert_error(client.http.post(f"{FLAGS}/{flag['id']}/resolve", headers=admin,
                                  body=as_json({"outcome": "reverse", "reason": "改主意"})), 409, "INVALID_STATE")
    # reviewed settlements are not flagged again; a new cycle is
    people["times"]["now"] = NOW + timedelta(hours=5)
    assert serve(client, people["cat"][0], ben, "c3")[1].status_code == 200
    assert drain(app, "risk-flags") == 1
    assert client.http.get(f"{FLAGS}?status=open", headers=admin).json_body["items"] == []
    ledger_ok(client)


def test_repeated_pairs_are_flagged_and_reversing_returns_the_credits(people, limits):
    from functions import bootstrap

    limits(pair_daily=0, repeated_pair_count=3, rapid_cycle_hours=0)
    client, app, admin = people["client"], people["app"], admin_headers(people["client"])
    (ann, a), (ben, b) = people["ann"], people["ben"]

    def balances():
        household = client.http.get("/v1/accounts/me", headers=ann).json_body["household"]["balances"]["service"]
        earned = client.http.get("/v1/accounts/me", headers=ben).json_body["resident"]["balances"]["service"]
        return household["available"], earned["available"]

    start = balances()
    for n in range(3):
        assert serve(client, ann, ben, f"r{n}")[1].status_code == 200
    assert balances() == (start[0] - 180, start[1] + 180)
    assert drain(app, "risk-flags") == 3
    (flag,) = client.http.get(FLAGS, headers=admin).json_body["items"]
    assert (flag["kind"], flag["count"], flag["window_days"]) == ("repeated_pair", 3, 7)
    # a redelivered settlement changes nothing
    service = bootstrap.risk()
    from functions.core.events import new_event
    settled = bootstrap.request_store().get(flag["request_ids"][0])
    event = new_event("request.settled", settled.id, NOW, {"household_id": settled.household_id,
                      "volunteer_household_id": settled.volunteer_household_id, "volunteer_id": settled.volunteer_id,
                      "credits_paid": 60})
    assert [f.count for f in service.record_settlement(event)] == [3]
    reversed_ = client.http.post(f"{FLAGS}/{flag['id']}/resolve", headers=admin,
                                 body=as_json({"outcome": "reverse", "reason": "虚假服务，冲正"}))
    assert reversed_.status_code == 200, reversed_.body
    assert len(reversed_.json_body["resolution"]["reversal_ids"]) == 6
    assert balances() == start
    statement = client.http.get(f"/v1/accounts/{b['id']}/transfers", headers=ben).json_body["items"]
    reversals = [t for t in statement if t["kind"] == "reversal"]
    assert len(reversals) == 3 and all(t["memo"] == "虚假服务，冲正" for t in reversals)
    assert client.http.post(f"{FLAGS}/{flag['id']}/resolve", headers=admin,
                            body=as_json({"outcome": "reverse", "reason": "虚假服务，冲正"})).status_code == 200
    assert balances() == start
    ledger_ok(client)


def test_no_credit_between_members_of_one_household(aws):
    """A settlement whose volunteer belongs to the requester's household (accept already refuses
    it; a household change since must not let it through) is OWN_REQUEST."""
    from functions import bootstrap
    from functions.core.errors import TimebankError
    from functions.requests.model import ServiceRequest

    request = ServiceRequest(id="req_x", status="completed", category="tutoring", title="t", description="",
                             start_at=NOW, duration_minutes=60, requester_id="res_a", household_id="hh_same",
                             payer_account="household:hh_same", hold_transfer_id="tr_h", credits_held=60,
                             created_at=NOW, content_hash="x", volunteer_id="res_b", volunteer_household_id="hh_same")
    with pytest.raises(TimebankError) as refused:
        bootstrap.risk().settlement_writes(request, 60, NOW)
    assert (refused.value.status, refused.value.code) == (422, "OWN_REQUEST")
