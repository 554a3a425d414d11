"""API.md "Exchange with 志愿汇": the request holds the credits to the clearing account and
queues the exchange (outbox); the consumer asks the partner (the local fake: ``reject-…``
refused, ``timeout-…`` never answers) and posts or voids the hold; the timeout schedule voids
what got no answer; the owner or an admin reads it; the daily reconciliation compares our side
with the partner's statement. The partner's signed notifications are answers too. Every test
ends with the ledger check ok."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from functions import bootstrap
from functions.core import clock
from functions.core.clock import CHINA_TZ
from functions.ledger.accounts import clearing_account, household_account
from functions.rewards.zyh import signed_headers
from tests.helpers import admin_headers, as_json, assert_error, db_snapshot, json_headers, login, verified_resident
from tests.queues import drain
from tests.rewards_helpers import available, grant, ledger_ok, pending, use_community

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=CHINA_TZ)
CLEARING = clearing_account("zyh")
SAMPLES = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture
def world(client, app, monkeypatch):
    use_community(monkeypatch)
    now = {"at": NOW}
    clock.set_clock(lambda: now["at"])
    headers, resident = verified_resident(client, "alice", building="1", unit="1", room="101")
    household = household_account(resident["household_id"])
    grant(household, "volunteer", 200)
    yield {"client": client, "app": app, "now": now, "headers": headers, "resident": resident, "household": household}
    clock.set_clock(None)


def request(client, headers, user="zyh-10086", amount=60, key="zx-1", **extra):
    body = {"asset": "volunteer", "amount": amount, "zyh_user_id": user, **extra}
    return client.http.post("/v1/exchanges/zyh", headers=json_headers(headers, key), body=as_json(body))


def status_of(client, headers, exchange_id):
    return client.http.get(f"/v1/exchanges/{exchange_id}", headers=headers).json_body


def test_an_accepted_exchange_is_held_then_posted_to_the_clearing_account(world):
    client, headers, household = world["client"], world["headers"], world["household"]
    response = request(client, headers)
    assert response.status_code == 202, response.body
    exchange = response.json_body
    assert (exchange["status"], exchange["amount"], exchange["coins"]) == ("pending", 60, 60)
    assert (available(household, "volunteer"), pending(household, "volunteer")) == (140, 60)
    before = db_snapshot()
    again = request(client, headers)
    assert again.status_code == 202 and again.json_body == exchange
    assert db_snapshot() == before
    assert_error(request(client, headers, amount=61), 409, "IDEMPOTENCY_MISMATCH")
    assert drain(world["app"], "zyh-exchanges") == 1
    done = status_of(client, headers, exchange["id"])
    assert done["status"] == "confirmed" and done["partner_ref"]
    assert (available(household, "volunteer"), pending(household, "volunteer")) == (140, 0)
    assert bootstrap.ledger().balances(CLEARING)["volunteer"].credits_posted == 60
    assert status_of(client, admin_headers(client), exchange["id"])["status"] == "confirmed"
    ledger_ok()


def test_a_refused_exchange_fails_and_the_credits_come_back(world):
    client, headers, household = world["client"], world["headers"], world["household"]
    exchange = request(client, headers, user="reject-me").json_body
    drain(world["app"], "zyh-exchanges")
    failed = status_of(client, headers, exchange["id"])
    assert (failed["status"], failed["failure_reason"], failed["partner_ref"]) == ("failed", "refused", None)
    assert (available(household, "volunteer"), pending(household, "volunteer")) == (200, 0)
    ledger_ok()


def test_no_answer_before_the_timeout_fails_the_exchange_by_the_schedule(world):
    client, headers, household, app = world["client"], world["headers"], world["household"], world["app"]
    exchange = request(client, headers, user="timeout-me").json_body
    drain(app, "zyh-exchanges")
    assert status_of(client, headers, exchange["id"])["status"] == "pending"
    schedule = json.loads((SAMPLES / "expire-exchanges.json").read_text())
    world["now"]["at"] = NOW + timedelta(minutes=14)
    assert app.handler_map["expire-exchanges"](schedule, None) == {"failed": 0}
    world["now"]["at"] = NOW + timedelta(minutes=15)
    assert app.handler_map["expire-exchanges"](schedule, None) == {"failed": 1}
    assert app.handler_map["expire-exchanges"](schedule, None) == {"failed": 0}
    failed = status_of(client, headers, exchange["id"])
    assert (failed["status"], failed["failure_reason"]) == ("failed", "timeout")
    assert (available(household, "volunteer"), pending(household, "volunteer")) == (200, 0)
    ledger_ok()


def test_refusals_someone_elses_exchange_and_bad_input(world):
    client, headers = world["client"], world["headers"]
    exchange = request(client, headers).json_body
    mallory_h, _ = verified_resident(client, "mallory", building="2", unit="1", room="201")
    before = db_snapshot()
    assert_error(client.http.get(f"/v1/exchanges/{exchange['id']}", headers=mallory_h), 404, "NOT_FOUND")
    assert_error(request(client, headers, amount=1000, key="too-much"), 422, "INSUFFICIENT_CREDITS")
    assert_error(request(client, mallory_h, key="m-1"), 422, "INSUFFICIENT_CREDITS")
    bad = client.http.post("/v1/exchanges/zyh", headers=json_headers(headers, "bad"),
                           body=as_json({"asset": "service", "amount": 10, "zyh_user_id": "x"}))
    assert_error(bad, 400, "VALIDATION_ERROR")
    assert "asset" in bad.json_body["details"]["fields"]
    assert db_snapshot() == before
    ledger_ok()


def test_reconciliation_of_a_day_lists_every_mismatch(world):
    client, headers, app = world["client"], world["headers"], world["app"]
    accepted = request(client, headers, key="a").json_body
    request(client, headers, user="reject-me", key="b")
    late = request(client, headers, user="timeout-late", key="c").json_body
    drain(app, "zyh-exchanges")
    world["now"]["at"] = NOW + timedelta(minutes=20)
    bootstrap.exchanges().expire_due()
    # The partner did credit the one that timed out, and says so after our timeout voided it.
    partner = bootstrap.zyh_partner()
    stored = bootstrap.rewards_store().get_exchange(late["id"])
    answer = partner.credit(stored)
    assert bootstrap.exchanges().apply_answer(answer) == "late"
    admin = admin_headers(client)
    report = client.http.get("/v1/admin/exchanges/reconcile?date=2026-12-01", headers=admin)
    assert report.status_code == 200, report.body
    body = report.json_body
    assert body["ok"] is False
    assert body["ours"] == {"count": 1, "amount": 60} and body["theirs"] == {"count": 2, "amount": 120}
    (mismatch,) = body["mismatches"]
    assert (mismatch["kind"], mismatch["exchange_id"], mismatch["our_status"], mismatch["late_answer"]) == \
        ("missing_here", late["id"], "failed", "accepted")
    assert [entry["exchange_id"] for entry in body["late_answers"]] == [late["id"]]
    assert accepted["id"] not in {m["exchange_id"] for m in body["mismatches"]}
    quiet = client.http.get("/v1/admin/exchanges/reconcile?date=2026-11-30", headers=admin).json_body
    assert quiet["ok"] is True and quiet["mismatches"] == []
    assert_error(client.http.get("/v1/admin/exchanges/reconcile?date=2026-13-01", headers=admin), 400,
                 "VALIDATION_ERROR")
    assert_error(client.http.get("/v1/admin/exchanges/reconcile?date=2026-12-01", headers=headers), 403, "FORBIDDEN")
    ledger_ok()


def notify(client, body, key=None):
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json",
               **signed_headers(key or bootstrap.get_settings().zyh_key, "POST", "/v1/partners/zyh/answers", raw,
                                time.time())}
    return client.http.post("/v1/partners/zyh/answers", headers=headers, body=raw)


def test_the_partners_signed_notification_answers_an_exchange_once(world):
    client, headers, household, app = world["client"], world["headers"], world["household"], world["app"]
    exchange = request(client, headers, user="timeout-slow").json_body
    drain(app, "zyh-exchanges")
    before = db_snapshot()
    forged = notify(client, {"exchange_id": exchange["id"], "status": "accepted", "ref": "zyh-1"}, key="wrong-key")
    assert_error(forged, 401, "UNAUTHENTICATED")
    unsigned = client.http.post("/v1/partners/zyh/answers", headers=json_headers(),
                                body=as_json({"exchange_id": exchange["id"], "status": "accepted", "ref": "zyh-1"}))
    assert_error(unsigned, 401, "UNAUTHENTICATED")
    assert db_snapshot() == before
    answer = {"exchange_id": exchange["id"], "status": "accepted", "ref": "zyh-1"}
    assert notify(client, answer).json_body == {"exchange_id": exchange["id"], "effect": "applied"}
    assert notify(client, answer).json_body["effect"] == "duplicate"
    assert notify(client, {**answer, "status": "refused", "ref": None}).json_body["effect"] == "late"
    assert status_of(client, headers, exchange["id"])["status"] == "confirmed"
    assert (available(household, "volunteer"), pending(household, "volunteer")) == (140, 0)
    ledger_ok()


def test_without_the_partner_configured_a_deployed_community_has_no_exchange(world, monkeypatch):
    client = world["client"]
    monkeypatch.setenv("TIMEBANK_STAGE", "prod")
    bootstrap.reset()
    service = bootstrap.exchanges()
    assert service.available is False
    monkeypatch.setenv("TIMEBANK_STAGE", "test")
    bootstrap.reset()
    bootstrap.use("exchanges", service)
    before = db_snapshot()
    assert_error(request(client, login(client, "alice")), 422, "EXCHANGE_UNAVAILABLE")
    assert db_snapshot() == before
    ledger_ok()
