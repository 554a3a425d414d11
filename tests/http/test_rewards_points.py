"""API.md "Point kinds and conversion": GET /v1/assets serves the community file's point kinds;
POST /v1/conversions moves two linked legs (both or neither), idempotent by key, rounding down
in the community's favour. Every refusal leaves the database as it was; every test ends with
the ledger check ok."""
from __future__ import annotations

import pytest

from functions.ledger.accounts import household_account, resident_account
from tests.helpers import admin_headers, as_json, assert_error, db_snapshot, json_headers, login, register, verified_resident
from tests.rewards_helpers import available, grant, ledger_ok, use_community

STARTING = 300


@pytest.fixture
def demo(client, monkeypatch):
    use_community(monkeypatch)
    return client


@pytest.fixture
def alice(demo):
    headers, resident = verified_resident(demo, "alice", building="1", unit="1", room="101", birth_year=1980)
    return headers, resident


def convert(client, headers, body, key="cv-1"):
    return client.http.post("/v1/conversions", headers=json_headers(headers, key), body=as_json(body))


def test_assets_are_the_community_files_point_kinds(demo):
    response = demo.http.get("/v1/assets", headers=login(demo, "newcomer"))
    assert response.status_code == 200
    kinds = {kind["id"]: kind for kind in response.json_body["items"]}
    assert list(kinds) == ["service", "volunteer", "skill", "green", "welfare", "contribution"]
    assert "reputation" not in kinds  # a score on the resident, not an asset
    assert kinds["volunteer"] == {"id": "volunteer", "name": "志愿时", "unit": "minute", "transferable": True,
                                  "redeemable": True, "expires_after_days": None,
                                  "convertible_to": {"service": {"rate_num": 1, "rate_den": 1}}}
    assert kinds["green"]["convertible_to"] == {"service": {"rate_num": 1, "rate_den": 10}}
    assert kinds["green"]["expires_after_days"] == 365 and kinds["green"]["unit"] == "point"
    assert (kinds["contribution"]["transferable"], kinds["contribution"]["redeemable"]) == (False, False)
    assert kinds["service"]["convertible_to"] == {}
    assert_error(demo.http.get("/v1/assets"), 401, "UNAUTHENTICATED")


def test_volunteer_minutes_convert_one_to_one_in_two_linked_legs(demo, alice):
    headers, resident = alice
    household = household_account(resident["household_id"])
    grant(household, "volunteer", 90)
    response = convert(demo, headers, {"from_asset": "volunteer", "to_asset": "service", "amount": 60})
    assert response.status_code == 201, response.body
    body = response.json_body
    assert (body["from_asset"], body["to_asset"], body["debited"], body["credited"]) == ("volunteer", "service", 60, 60)
    assert len(body["transfer_ids"]) == 2
    assert (available(household, "volunteer"), available(household)) == (30, STARTING + 60)
    from functions import bootstrap

    out, into = (bootstrap.ledger().get_transfer(tid) for tid in body["transfer_ids"])
    assert (out.debit_account, out.credit_account, out.asset) == (household, "issuance", "volunteer")
    assert (into.debit_account, into.credit_account, into.asset) == ("issuance", household, "service")
    assert out.linked == into.linked == tuple(body["transfer_ids"])
    statement = demo.http.get(f"/v1/accounts/{resident['household_id']}/transfers", headers=headers).json_body
    assert {t["kind"] for t in statement["items"][:2]} == {"conversion"}
    ledger_ok()


def test_amounts_that_do_not_divide_are_rounded_down_and_debited_says_what_was_taken(demo, alice):
    headers, resident = alice
    personal = resident_account(resident["id"])
    grant(personal, "green", 125)
    response = convert(demo, headers, {"from_asset": "green", "to_asset": "service", "amount": 125, "from": "resident"})
    assert response.status_code == 201, response.body
    assert (response.json_body["debited"], response.json_body["credited"]) == (120, 12)
    assert (available(personal, "green"), available(personal)) == (5, 12)  # the 5 that bought nothing stay
    before = db_snapshot()
    too_small = convert(demo, headers, {"from_asset": "green", "to_asset": "service", "amount": 5, "from": "resident"},
                        key="cv-small")
    assert_error(too_small, 400, "VALIDATION_ERROR")
    assert "amount" in too_small.json_body["details"]["fields"]
    assert db_snapshot() == before
    ledger_ok()


def test_a_conversion_is_idempotent_by_key(demo, alice):
    headers, resident = alice
    household = household_account(resident["household_id"])
    grant(household, "volunteer", 100)
    body = {"from_asset": "volunteer", "to_asset": "service", "amount": 40}
    first = convert(demo, headers, body)
    before = db_snapshot()
    again = convert(demo, headers, body)
    assert again.status_code == 201 and again.json_body == first.json_body
    assert db_snapshot() == before
    assert_error(convert(demo, headers, {**body, "amount": 41}), 409, "IDEMPOTENCY_MISMATCH")
    assert db_snapshot() == before
    assert available(household, "volunteer") == 60
    ledger_ok()


@pytest.mark.parametrize("pair", [("service", "green"), ("green", "volunteer"), ("volunteer", "volunteer"),
                                  ("contribution", "service")])
def test_pairs_the_community_does_not_allow_are_not_convertible(demo, alice, pair):
    headers, resident = alice
    for asset in ("green", "volunteer", "contribution"):
        grant(household_account(resident["household_id"]), asset, 100)
    before = db_snapshot()
    response = convert(demo, headers, {"from_asset": pair[0], "to_asset": pair[1], "amount": 50})
    body = assert_error(response, 422, "NOT_CONVERTIBLE")
    assert body["details"] == {"from_asset": pair[0], "to_asset": pair[1]}
    assert db_snapshot() == before
    ledger_ok()


def test_insufficient_credits_move_neither_leg(demo, alice):
    headers, resident = alice
    grant(household_account(resident["household_id"]), "volunteer", 30)
    before = db_snapshot()
    response = convert(demo, headers, {"from_asset": "volunteer", "to_asset": "service", "amount": 31})
    assert_error(response, 422, "INSUFFICIENT_CREDITS")
    assert db_snapshot() == before
    ledger_ok()


def test_below_the_configured_minimum_age_conversion_is_age_restricted(client, monkeypatch):
    use_community(monkeypatch, min_redeem_age=16)
    child_h, child = verified_resident(client, "teen", building="5", unit="1", room="501", birth_year=2015)
    adult_h, adult = verified_resident(client, "mum", building="5", unit="1", room="501", birth_year=1985)
    household = household_account(child["household_id"])
    grant(household, "volunteer", 100)
    before = db_snapshot()
    body = {"from_asset": "volunteer", "to_asset": "service", "amount": 10}
    refused = assert_error(convert(client, child_h, body), 422, "AGE_RESTRICTED")
    assert refused["details"] == {"min_age": 16}
    assert db_snapshot() == before
    assert convert(client, adult_h, body).status_code == 201
    ledger_ok()


def test_bad_bodies_and_callers_are_refused(demo, alice):
    headers, _ = alice
    pending_h, _ = register(demo, "pending-person", building="9", unit="1", room="901")
    admin = admin_headers(demo)
    before = db_snapshot()
    for body, field in (({"from_asset": "gold", "to_asset": "service", "amount": 1}, "from_asset"),
                        ({"from_asset": "green", "to_asset": "service", "amount": 0}, "amount"),
                        ({"from_asset": "green", "to_asset": "service", "amount": 10, "to": "x"}, "to"),
                        ({"from_asset": "green", "amount": 10}, "to_asset")):
        response = convert(demo, headers, body)
        assert_error(response, 400, "VALIDATION_ERROR")
        assert field in response.json_body["details"]["fields"]
    missing_key = demo.http.post("/v1/conversions", headers=headers,
                                 body=as_json({"from_asset": "green", "to_asset": "service", "amount": 10}))
    assert_error(missing_key, 400, "VALIDATION_ERROR")
    assert_error(convert(demo, pending_h, {"from_asset": "green", "to_asset": "service", "amount": 10}), 403,
                 "NOT_VERIFIED")
    assert_error(convert(demo, admin, {"from_asset": "green", "to_asset": "service", "amount": 10}),
                 403, "NOT_REGISTERED")
    assert db_snapshot() == before
    ledger_ok()


def test_only_transferable_assets_may_be_transferred(demo, alice):
    headers, resident = alice
    grant(household_account(resident["household_id"]), "contribution", 50)
    before = db_snapshot()
    response = demo.http.post("/v1/transfers", headers=json_headers(headers, "t-1"),
                              body=as_json({"to": {"pool": True}, "asset": "contribution", "amount": 5}))
    assert_error(response, 400, "VALIDATION_ERROR")
    assert "asset" in response.json_body["details"]["fields"]
    assert db_snapshot() == before
    ledger_ok()
