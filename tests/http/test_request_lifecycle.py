"""The heart of the product, end to end over HTTP: a need is posted with a hold, a neighbour
is found and accepts, the service is insured, evidenced and confirmed, and credits settle once."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from functions.core import clock
from functions.core.clock import CHINA_TZ
from tests.helpers import admin_headers, as_json, json_headers, verified_resident
from tests.queues import drain

EVENTS = Path(__file__).resolve().parents[2] / "events"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA_TZ)


@pytest.fixture
def world(client, app):
    clock.set_clock(lambda: NOW)
    requester, req_resident = verified_resident(client, "req-a", building="3", unit="1", room="502")
    volunteer, vol_resident = verified_resident(client, "vol-b", building="3", unit="2", room="101")
    drain(app, "matching")
    return {"client": client, "app": app, "requester": requester, "req": req_resident,
            "volunteer": volunteer, "vol": vol_resident}


def fire(app, schedule):
    """Invoke a schedule handler with the sample EventBridge event from events/."""
    event = json.loads((EVENTS / f"{schedule}.json").read_text())
    return app.handler_map[schedule](event, None)


def post_need(client, headers, key, category="tutoring", minutes=60, start=NOW + timedelta(hours=3), **extra):
    body = {"category": category, "title": "帮忙辅导数学", "description": "三年级", "start_at": start.isoformat(),
            "duration_minutes": minutes, **extra}
    return client.http.post("/v1/requests", body=as_json(body), headers=json_headers(headers, key))


def balances(client, headers):
    body = client.http.get("/v1/accounts/me", headers=headers).json_body
    return body["household"]["balances"]["service"], body["resident"]["balances"]["service"]


def ledger_ok(client):
    report = client.http.get("/v1/admin/ledger/check", headers=admin_headers(client)).json_body
    assert report["ok"], report["violations"]
    return report


def test_whole_lifecycle_with_matching_insurance_and_evidence(world):
    client, app = world["client"], world["app"]
    requester, volunteer = world["requester"], world["volunteer"]
    # The volunteer declares companion care so the matcher can find them.
    assert client.http.put("/v1/volunteers/me", headers=volunteer, body=as_json(
        {"categories": ["companion"], "availability": [], "accepting": True})).status_code == 200
    # WeChat subscribe messages are one-time: the volunteer consents to one "match" message.
    assert client.http.post("/v1/notifications/consents", headers=volunteer, body=as_json(
        {"template": "match", "accepted": True})).status_code == 200

    posted = post_need(client, requester, "k-1", category="companion", minutes=90)
    assert posted.status_code == 201, posted.body
    need = posted.json_body
    assert need["status"] == "open" and need["credits_held"] == 90
    household, _ = balances(client, requester)
    assert household["available"] == 300 - 90

    # Matching notification, within the same drain of the queue.
    assert drain(app, "matching") == 1
    outbox = client.http.get("/v1/admin/outbox?openid=vol-b", headers=admin_headers(client)).json_body["items"]
    assert len(outbox) == 1 and need["id"] in as_json(outbox[0])

    accepted = client.http.post(f"/v1/requests/{need['id']}/accept", headers=volunteer)
    assert accepted.status_code == 200 and accepted.json_body["volunteer_id"] == world["vol"]["id"]

    # Companion care needs insurance: the record was written by the accept itself (outside
    # testing: check-in right after accept answered 422 INSURANCE_PENDING until a queue caught up).
    from functions.safety.dynamo import InsuranceRecordItem

    assert [r.request_id for r in InsuranceRecordItem.scan()] == [need["id"]]
    assert drain(app, "insurance") == 1  # the accepted event: the record is there, nothing more

    # The photo goes straight to S3 with the pre-signed PUT; check-in names its key.
    photo = b"\xff\xd8\xff\xe0" + b"\x00" * 2048
    upload = client.http.post(f"/v1/requests/{need['id']}/evidence", headers=volunteer,
                              body=as_json({"content_type": "image/jpeg", "size": len(photo)}))
    assert upload.status_code == 200 and upload.json_body["method"] == "PUT", upload.body
    key = upload.json_body["key"]
    put = requests.put(upload.json_body["upload_url"], data=photo, headers=upload.json_body["headers"])
    assert put.status_code == 200, put.text
    checked_in = client.http.post(f"/v1/requests/{need['id']}/check-in", headers=volunteer,
                                  body=as_json({"evidence_key": key}))
    assert checked_in.status_code == 200 and checked_in.json_body["status"] == "in_service"
    done = client.http.post(f"/v1/requests/{need['id']}/complete", headers=volunteer,
                            body=as_json({"minutes": 80}))
    assert done.status_code == 200 and done.json_body["status"] == "completed"

    confirmed = client.http.post(f"/v1/requests/{need['id']}/confirm", headers=requester,
                                 body=as_json({"rating": 5, "comment": "谢谢"}))
    assert confirmed.status_code == 200, confirmed.body
    assert confirmed.json_body["status"] == "settled"
    # 80 minutes: one hour + 20 min rounded to half an hour = 90, capped by the 90 held.
    assert confirmed.json_body["credits_paid"] == 90
    household, _ = balances(client, requester)
    assert household == {**household, "available": 210, "posted": 210}
    _, earned = balances(client, volunteer)
    assert earned["available"] == 90
    ledger_ok(client)

    again = client.http.post(f"/v1/requests/{need['id']}/confirm", headers=requester, body="{}")
    assert again.status_code == 409 and again.json_body["code"] == "INVALID_STATE"
    assert balances(client, volunteer)[1]["available"] == 90

    # Settlement feeds what matching ranks by, through the lifecycle's events: acceptance,
    # completion and rating.
    from functions import bootstrap
    assert drain(app, "volunteer-stats") == 2
    stats = bootstrap.volunteer_store().get_profile(world["vol"]["id"]).stats
    assert (stats.accepted, stats.completed, stats.rating_count, stats.rating_sum) == (1, 1, 1, 5)


def test_partial_payment_releases_the_rest_of_the_hold(world):
    client, requester, volunteer = world["client"], world["requester"], world["volunteer"]
    need = post_need(client, requester, "k-partial", minutes=120).json_body
    assert need["credits_held"] == 120
    client.http.post(f"/v1/requests/{need['id']}/accept", headers=volunteer)
    client.http.post(f"/v1/requests/{need['id']}/check-in", headers=volunteer, body="{}")
    client.http.post(f"/v1/requests/{need['id']}/complete", headers=volunteer, body=as_json({"minutes": 50}))
    settled = client.http.post(f"/v1/requests/{need['id']}/confirm", headers=requester, body="{}").json_body
    assert settled["credits_paid"] == 60
    household, _ = balances(client, requester)
    assert household["available"] == 240 and household["pending"] == 0
    ledger_ok(client)


def test_posting_is_idempotent_and_refuses_a_changed_replay(world):
    client, requester = world["client"], world["requester"]
    first = post_need(client, requester, "k-same")
    second = post_need(client, requester, "k-same")
    assert first.status_code == second.status_code == 201
    assert first.json_body["id"] == second.json_body["id"]
    assert balances(client, requester)[0]["available"] == 240
    changed = post_need(client, requester, "k-same", minutes=30)
    assert changed.status_code == 409 and changed.json_body["code"] == "IDEMPOTENCY_MISMATCH"
    assert balances(client, requester)[0]["available"] == 240


def test_insufficient_credits_is_422_and_holds_nothing(world):
    client, requester = world["client"], world["requester"]
    for index in range(2):
        assert post_need(client, requester, f"k-big-{index}", category="childcare", minutes=120).status_code == 201
    third = post_need(client, requester, "k-big-2", category="childcare", minutes=120)
    assert third.status_code == 422 and third.json_body["code"] == "INSUFFICIENT_CREDITS"
    assert balances(client, requester)[0]["available"] == 60
    ledger_ok(client)


def test_feed_hides_own_household_and_paginates(world):
    client, requester, volunteer = world["client"], world["requester"], world["volunteer"]
    ids = []
    for i in range(5):
        clock.set_clock(lambda i=i: NOW + timedelta(microseconds=i))  # several posts in one second
        ids.append(post_need(client, requester, f"k-feed-{i}", minutes=15 + i).json_body["id"])
    own = client.http.get("/v1/requests?status=open", headers=requester).json_body
    assert own["items"] == []
    page = client.http.get("/v1/requests?status=open&limit=2", headers=volunteer).json_body
    seen = [r["id"] for r in page["items"]]
    while page["next_cursor"]:
        page = client.http.get(f"/v1/requests?status=open&limit=2&cursor={page['next_cursor']}",
                               headers=volunteer).json_body
        seen += [r["id"] for r in page["items"]]
    assert seen == list(reversed(ids))
    by_category = client.http.get("/v1/requests?category=pet", headers=volunteer).json_body
    assert by_category["items"] == []


def test_cancel_releases_the_hold(world):
    client, requester = world["client"], world["requester"]
    need = post_need(client, requester, "k-cancel").json_body
    cancelled = client.http.post(f"/v1/requests/{need['id']}/cancel", headers=requester,
                                 body=as_json({"reason": "不需要了"}))
    assert cancelled.status_code == 200 and cancelled.json_body["status"] == "cancelled"
    assert balances(client, requester)[0]["available"] == 300
    ledger_ok(client)


def test_expiry_and_auto_confirm_schedules(world):
    client, app, requester, volunteer = world["client"], world["app"], world["requester"], world["volunteer"]
    lonely = post_need(client, requester, "k-lonely", start=NOW + timedelta(hours=1)).json_body
    served = post_need(client, requester, "k-served", start=NOW + timedelta(hours=2)).json_body
    client.http.post(f"/v1/requests/{served['id']}/accept", headers=volunteer)
    client.http.post(f"/v1/requests/{served['id']}/check-in", headers=volunteer, body="{}")
    client.http.post(f"/v1/requests/{served['id']}/complete", headers=volunteer, body=as_json({"minutes": 60}))

    clock.set_clock(lambda: NOW + timedelta(hours=2))
    assert fire(app, "expire-requests") == {"expired": 1}
    assert client.http.get(f"/v1/requests/{lonely['id']}", headers=requester).json_body["status"] == "expired"
    assert fire(app, "auto-confirm") == {"settled": 0}  # not yet 48 h

    clock.set_clock(lambda: NOW + timedelta(hours=51))
    assert fire(app, "auto-confirm") == {"settled": 1}
    settled = client.http.get(f"/v1/requests/{served['id']}", headers=requester).json_body
    assert settled["status"] == "settled" and settled["credits_paid"] == 60
    assert fire(app, "auto-confirm") == {"settled": 0}  # once only
    assert balances(client, volunteer)[1]["available"] == 60
    assert balances(client, requester)[0]["available"] == 240
    ledger_ok(client)


@pytest.mark.parametrize("outcome, paid, status", [("pay", 30, "settled"), ("refund", 0, "cancelled")])
def test_dispute_and_admin_resolution(world, outcome, paid, status):
    client, requester, volunteer = world["client"], world["requester"], world["volunteer"]
    need = post_need(client, requester, f"k-dispute-{outcome}").json_body
    client.http.post(f"/v1/requests/{need['id']}/accept", headers=volunteer)
    client.http.post(f"/v1/requests/{need['id']}/check-in", headers=volunteer, body="{}")
    client.http.post(f"/v1/requests/{need['id']}/complete", headers=volunteer, body=as_json({"minutes": 60}))
    disputed = client.http.post(f"/v1/requests/{need['id']}/dispute", headers=requester,
                                body=as_json({"reason": "只来了半小时"}))
    assert disputed.status_code == 200 and disputed.json_body["status"] == "disputed"
    # While disputed nobody can confirm.
    assert client.http.post(f"/v1/requests/{need['id']}/confirm", headers=requester,
                            body="{}").status_code == 409
    resolved = client.http.post(f"/v1/admin/requests/{need['id']}/resolve", headers=admin_headers(client),
                                body=as_json({"outcome": outcome, "minutes": 30, "reason": "核实后半小时"}))
    assert resolved.status_code == 200, resolved.body
    assert resolved.json_body["status"] == status
    assert balances(client, volunteer)[1]["available"] == paid
    assert balances(client, requester)[0]["available"] == 300 - paid
    ledger_ok(client)


def test_cancelling_an_accepted_service_cancels_its_insurance_record(world):
    from functions import bootstrap

    client, app, requester, volunteer = world["client"], world["app"], world["requester"], world["volunteer"]
    need = post_need(client, requester, "k-insured", category="companion").json_body
    client.http.post(f"/v1/requests/{need['id']}/accept", headers=volunteer)
    assert drain(app, "insurance") == 1
    assert bootstrap.insurance().store.get(need["id"]).status == "active"
    cancelled = client.http.post(f"/v1/requests/{need['id']}/cancel", headers=requester,
                                 body=as_json({"reason": "老人住院了"}))
    assert cancelled.status_code == 200
    assert drain(app, "insurance") == 1
    assert bootstrap.insurance().store.get(need["id"]).status == "cancelled"
    assert balances(client, requester)[0]["available"] == 300
