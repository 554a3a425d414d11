"""Family rules over HTTP (API.md "Family rules"): roles in the household, 亲情代理 proxies posting
and confirming for dependants and elderly residents, the household balance cap with its
``cap_overflow`` leg, and reputation on the resident. Every refusal changes nothing; every test
ends with the ledger check ok."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from functions.core import clock
from functions.core.clock import CHINA_TZ
from tests.activity_support import ledger_ok
from tests.helpers import (add_dependant, admin_headers, as_json, assert_error, db_snapshot, json_headers,
                           register, verified_resident)
from tests.queues import drain

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA_TZ)
PROXIES = "/v1/households/mine/proxies"


def need(**extra):
    return {"category": "tutoring", "title": "陪老人去医院", "description": "", "start_at":
            (NOW + timedelta(hours=5)).isoformat(), "duration_minutes": 60, **extra}


def post(client, headers, key, **extra):
    return client.http.post("/v1/requests", body=as_json(need(**extra)), headers=json_headers(headers, key))


@pytest.fixture
def family(client, app):
    clock.set_clock(lambda: NOW)
    alice, a = verified_resident(client, "fam-alice", building="9", room="901", birth_year=1980)
    bob, b = verified_resident(client, "fam-bob", building="9", room="901", birth_year=1985)
    grandpa, g = verified_resident(client, "fam-grandpa", building="9", room="901", birth_year=1940)
    pending, p = register(client, "fam-pending", building="9", room="901", birth_year=1990)
    grandma = add_dependant(client, alice, name="外婆", birth_year=1938, relation="grandparent")
    outsider, o = verified_resident(client, "fam-outsider", building="2", room="201")
    return {"client": client, "app": app, "alice": alice, "bob": bob, "grandpa": grandpa, "pending": pending,
            "outsider": outsider, "ids": {"alice": a["id"], "bob": b["id"], "grandpa": g["id"], "pending": p["id"],
                                          "grandma": grandma["id"], "outsider": o["id"]},
            "household": a["household_id"], "admin": admin_headers(client)}


def roles(client, headers):
    return {m["id"]: m["role"] for m in client.http.get("/v1/households/mine", headers=headers).json_body["members"]}


def test_members_have_roles_and_a_verified_member_may_be_named_proxy(family):
    client, ids = family["client"], family["ids"]
    assert roles(client, family["alice"]) == {ids["alice"]: "head", ids["bob"]: "member", ids["grandpa"]: "member",
                                              ids["pending"]: "member", ids["grandma"]: "member"}
    named = client.http.post(PROXIES, headers=family["alice"], body=as_json({"member_id": ids["bob"]}))
    assert named.status_code == 201 and named.json_body["role"] == "proxy" and named.json_body["id"] == ids["bob"]
    again = client.http.post(PROXIES, headers=family["alice"], body=as_json({"member_id": ids["bob"]}))
    assert again.status_code == 200 and again.json_body["proxy_since"] == named.json_body["proxy_since"]
    assert roles(client, family["bob"])[ids["bob"]] == "proxy"
    before = db_snapshot()
    for member, status, code in ((ids["grandma"], 422, "INVALID_PROXY"), (ids["pending"], 422, "INVALID_PROXY"),
                                 (ids["outsider"], 404, "NOT_FOUND"), ("res_nobody", 404, "NOT_FOUND")):
        assert_error(client.http.post(PROXIES, headers=family["alice"], body=as_json({"member_id": member})),
                     status, code)
    assert_error(client.http.post(PROXIES, headers=family["pending"], body=as_json({"member_id": ids["bob"]})),
                 403, "NOT_VERIFIED")
    assert_error(client.http.post(PROXIES, headers=family["alice"], body=as_json({})), 400, "VALIDATION_ERROR")
    assert_error(client.http.delete(f"{PROXIES}/{ids['alice']}", headers=family["alice"]), 404, "NOT_FOUND")
    assert db_snapshot() == before
    assert client.http.delete(f"{PROXIES}/{ids['bob']}", headers=family["alice"]).status_code == 204
    assert roles(client, family["alice"])[ids["bob"]] == "member"
    ledger_ok(client)


def test_a_proxy_posts_and_confirms_for_a_dependant_and_an_elderly_resident(family, caplog):
    client, ids = family["client"], family["ids"]
    assert client.http.post(PROXIES, headers=family["alice"], body=as_json({"member_id": ids["bob"]})).status_code == 201
    caplog.set_level(logging.INFO, logger="timebank")
    posted = post(client, family["bob"], "p-1", on_behalf_of=ids["grandma"])
    assert posted.status_code == 201, posted.body
    request = posted.json_body
    assert (request["beneficiary_member_id"], request["proxy_id"], request["requester_id"], request["household_id"]) \
        == (ids["grandma"], ids["bob"], ids["bob"], family["household"])
    household = client.http.get("/v1/accounts/me", headers=family["alice"]).json_body["household"]["balances"]["service"]
    assert household["available"] == 300 - 60
    audit = [r for r in caplog.records if r.getMessage() == "proxy action"]
    assert [(r.action, r.member_id, r.proxy_id, r.request_id) for r in audit] == \
        [("request.post", ids["grandma"], ids["bob"], request["id"])]
    assert "外婆" not in caplog.text   # ids only
    elderly = post(client, family["bob"], "p-2", on_behalf_of=ids["grandpa"])
    assert elderly.status_code == 201 and elderly.json_body["beneficiary_member_id"] == ids["grandpa"]
    assert post(client, family["bob"], "p-1", on_behalf_of=ids["grandma"]).json_body["id"] == request["id"]  # replay

    before = db_snapshot()
    assert_error(post(client, family["bob"], "p-3", on_behalf_of=ids["alice"]), 403, "FORBIDDEN")      # not elderly
    assert_error(post(client, family["alice"], "p-4", on_behalf_of=ids["grandma"]), 403, "FORBIDDEN")  # no proxy
    assert_error(post(client, family["outsider"], "p-5", on_behalf_of=ids["grandma"]), 400, "VALIDATION_ERROR")
    assert_error(post(client, family["bob"], "p-6", on_behalf_of="dep_nobody"), 400, "VALIDATION_ERROR")
    assert_error(post(client, family["bob"], "p-7", on_behalf_of=ids["bob"]), 400, "VALIDATION_ERROR")
    assert_error(post(client, family["bob"], "p-8", on_behalf_of=ids["grandma"],
                      beneficiary_member_id=ids["grandpa"]), 400, "VALIDATION_ERROR")
    assert db_snapshot() == before

    # the outsider serves; the proxy confirms for grandma
    outsider = family["outsider"]
    assert client.http.post(f"/v1/requests/{request['id']}/accept", headers=outsider).status_code == 200
    assert client.http.post(f"/v1/requests/{request['id']}/check-in", headers=outsider, body="{}").status_code == 200
    assert client.http.post(f"/v1/requests/{request['id']}/complete", headers=outsider,
                            body=as_json({"minutes": 60})).status_code == 200
    before = db_snapshot()
    assert_error(client.http.post(f"/v1/requests/{request['id']}/confirm", headers=family["bob"],
                                  body=as_json({"on_behalf_of": ids["grandpa"]})), 400, "VALIDATION_ERROR")
    assert db_snapshot() == before
    confirmed = client.http.post(f"/v1/requests/{request['id']}/confirm", headers=family["bob"],
                                 body=as_json({"on_behalf_of": ids["grandma"], "rating": 5}))
    assert confirmed.status_code == 200 and confirmed.json_body["status"] == "settled", confirmed.body
    assert [r.action for r in caplog.records if r.getMessage() == "proxy action"][-1] == "request.confirm"
    # no longer a proxy: no longer posts for them
    assert client.http.delete(f"{PROXIES}/{ids['bob']}", headers=family["alice"]).status_code == 204
    assert_error(post(client, family["bob"], "p-9", on_behalf_of=ids["grandma"]), 403, "FORBIDDEN")
    ledger_ok(client)


def test_an_admin_may_post_for_a_dependant_but_not_for_nobody(family):
    client, ids = family["client"], family["ids"]
    admin = family["admin"]
    before = db_snapshot()
    assert_error(post(client, admin, "a-0"), 403, "FORBIDDEN")   # an admin is no household
    assert_error(post(client, admin, "a-1", on_behalf_of=ids["grandma"], **{"from": "resident"}),
                 400, "VALIDATION_ERROR")
    assert db_snapshot() == before
    posted = post(client, admin, "a-2", on_behalf_of=ids["grandma"])
    assert posted.status_code == 201, posted.body
    body = posted.json_body
    assert body["household_id"] == family["household"] and body["beneficiary_member_id"] == ids["grandma"]
    assert body["proxy_id"].startswith("admin:") and "admin-test" not in body["proxy_id"]
    assert body["requester_id"] == ids["alice"]   # no proxy named: the household's head
    elderly = post(client, admin, "a-3", on_behalf_of=ids["grandpa"])
    assert elderly.status_code == 201 and elderly.json_body["requester_id"] == ids["grandpa"]
    assert_error(post(client, admin, "a-4", on_behalf_of=ids["bob"]), 403, "FORBIDDEN")   # not elderly
    ledger_ok(client)


def test_the_household_cap_moves_the_excess_to_the_pool_and_refuses_voluntary_transfers(client, monkeypatch):
    from functions import bootstrap

    monkeypatch.setenv("TIMEBANK_HOUSEHOLD_BALANCE_CAP", "200")
    bootstrap.reset()
    clock.set_clock(lambda: NOW)
    alice, a = verified_resident(client, "cap-alice", building="3", room="301")   # 300 starting credits
    balances = client.http.get("/v1/accounts/me", headers=alice).json_body
    assert balances["household"]["balances"]["service"]["available"] == 200
    statement = client.http.get(f"/v1/accounts/{a['household_id']}/transfers", headers=alice).json_body["items"]
    kinds = sorted((t["kind"], t["amount"], t["credit_account"]) for t in statement)
    assert kinds == [("cap_overflow", 100, "pool"), ("starting_credits", 300, f"household:{a['household_id']}")]
    overflow = next(t for t in statement if t["kind"] == "cap_overflow")
    assert overflow["debit_account"] == f"household:{a['household_id']}"
    # the household at its cap: a member moving credits in is told so, nothing moves
    admin = admin_headers(client)
    report = client.http.get("/v1/admin/ledger/check", headers=admin).json_body
    assert report["ok"] and report["assets"]["service"]["credits_posted"] == 400   # 300 issued + 100 moved on
    bob, _ = verified_resident(client, "cap-bob", building="3", room="301")
    # alice earns 60 serving a neighbour; her household is at its cap
    carol, _ = verified_resident(client, "cap-carol", building="4", room="401")
    need_id = post(client, carol, "cap-need").json_body["id"]
    for step, body in (("accept", None), ("check-in", "{}"), ("complete", as_json({"minutes": 60}))):
        assert client.http.post(f"/v1/requests/{need_id}/{step}", headers=alice, body=body).status_code == 200
    assert client.http.post(f"/v1/requests/{need_id}/confirm", headers=carol, body="{}").status_code == 200
    before = db_snapshot()
    refused = client.http.post("/v1/transfers", headers=json_headers(alice, "in-1"), body=as_json(
        {"to": {"household_id": a["household_id"]}, "amount": 20, "from": "resident"}))
    body = assert_error(refused, 422, "LIMIT_EXCEEDED")
    assert body["details"]["limit"] == "household_cap" and body["details"]["cap"] == 200
    assert db_snapshot() == before
    assert bob  # a second member changes nothing: the household was credited once
    ledger_ok(client)


def test_reputation_is_on_the_resident_fed_once_per_request_and_outcome(family):
    from functions import bootstrap
    from functions.core.events import new_event

    client, ids, app = family["client"], family["ids"], family["app"]
    me = client.http.get("/v1/residents/me", headers=family["outsider"]).json_body
    assert me["reputation"] == 70   # a newcomer
    need_id = post(client, family["alice"], "r-1", category="tutoring").json_body["id"]
    outsider = family["outsider"]
    for step, body in (("accept", None), ("check-in", "{}"), ("complete", as_json({"minutes": 60}))):
        assert client.http.post(f"/v1/requests/{need_id}/{step}", headers=outsider, body=body).status_code == 200
    assert client.http.post(f"/v1/requests/{need_id}/confirm", headers=family["alice"],
                            body=as_json({"rating": 5})).status_code == 200
    assert drain(app, "reputation") == 1
    assert client.http.get("/v1/residents/me", headers=outsider).json_body["reputation"] == 74
    # duplicate deliveries and the no-show outcome of issue 9 (either event shape), once each
    service = bootstrap.identity()
    settled = next(e for e in [new_event("request.settled", need_id, NOW, {
        "volunteer_id": ids["outsider"], "credits_paid": 60, "minutes": 60, "rating": 5})])
    assert service.record_reputation(settled) is False
    no_show = new_event("request.no_show", "req_other", NOW, {"volunteer_id": ids["outsider"]})
    cancelled = new_event("request.cancelled", "req_other", NOW, {"volunteer_id": ids["outsider"], "no_show": True})
    assert service.record_reputation(no_show) is True
    assert service.record_reputation(cancelled) is False   # the same request's no-show, counted already
    assert service.record_reputation(new_event("request.cancelled", "req_third", NOW,
                                               {"volunteer_id": ids["outsider"]})) is False   # a plain cancel
    assert client.http.get("/v1/residents/me", headers=outsider).json_body["reputation"] == 61
    ledger_ok(client)


def test_the_minimum_age_for_redeeming_and_converting(family):
    """The family rule behind ``min_redeem_age`` (the rewards' redeem and convert ask identity):
    below it 422 AGE_RESTRICTED; 0 is no restriction."""
    from functions import bootstrap
    from functions.core.errors import BusinessRuleViolation
    from functions.core.caller import Caller

    client, ids = family["client"], family["ids"]
    teen, t = verified_resident(client, "fam-teen", building="9", room="902", birth_year=2014)
    service = bootstrap.identity()
    as_caller = lambda r, openid: Caller(openid, r["id"], r["household_id"], "verified")  # noqa: E731
    with pytest.raises(BusinessRuleViolation) as refused:
        service.check_age(as_caller(t, "fam-teen"), 14)
    assert (refused.value.status, refused.value.code, refused.value.details) == (422, "AGE_RESTRICTED", {"min_age": 14})
    service.check_age(as_caller(t, "fam-teen"), 12)
    service.check_age(as_caller(t, "fam-teen"), 0)
    me = client.http.get("/v1/residents/me", headers=family["alice"]).json_body
    service.check_age(Caller("fam-alice", me["id"], me["household_id"], "verified"), 18)
    ledger_ok(client)
