"""POST /v1/transfers: who may pay whom, idempotency, and every bad input — each refusal
answers the documented code AND leaves the ledger exactly as it was."""
from __future__ import annotations

import pytest

from functions.core.validation import MAX_AMOUNT_MINUTES
from tests.helpers import (as_json, declare_relatives, json_headers, login, register, verified_resident)

STARTING = 300


def ledger_state():
    """Every transfer (id, status) and every balance item: what "nothing changed" compares."""
    from functions import bootstrap

    store = bootstrap.ledger().store
    return (sorted((t.id, t.status) for t in store.scan_transfers()),
            sorted((r.physical, r.asset, r.totals) for r in store.scan_balances()))


@pytest.fixture
def people(client):
    """alice and bob share household A; dave's household D and A declared each other
    relatives; carol (household C) is a stranger; erin is registered but not verified."""
    alice_h, alice = verified_resident(client, "alice", building="1", unit="1", room="101")
    bob_h, bob = verified_resident(client, "bob", building="1", unit="1", room="101")
    carol_h, carol = verified_resident(client, "carol", building="2", unit="1", room="201")
    dave_h, dave = verified_resident(client, "dave", building="3", unit="1", room="301")
    declare_relatives(client, alice_h, alice["household_id"], dave_h, dave["household_id"])
    erin_h, erin = register(client, "erin", building="4", unit="1", room="401")
    return {"alice": (alice_h, alice), "bob": (bob_h, bob), "carol": (carol_h, carol), "dave": (dave_h, dave),
            "erin": (erin_h, erin)}


def post(client, headers, body, key="k-1"):
    raw = body if isinstance(body, str) else as_json(body)
    return client.http.post("/v1/transfers", body=raw, headers=json_headers(headers, key))


def balances(client, headers):
    body = client.http.get("/v1/accounts/me", headers=headers).json_body
    return body["household"]["balances"]["service"]["available"], body["resident"]["balances"]["service"]["available"]


def test_pay_a_member_of_ones_household(client, people):
    alice_h, alice = people["alice"]
    bob_h, bob = people["bob"]
    response = post(client, alice_h, {"to": {"resident_id": bob["id"]}, "asset": "service", "amount": 45,
                                      "memo": "买菜"})
    assert response.status_code == 201
    body = response.json_body
    assert (body["amount"], body["asset"], body["kind"], body["status"], body["memo"]) == \
        (45, "service", "transfer", "posted", "买菜")
    assert body["debit_account"] == f"household:{alice['household_id']}"
    assert body["credit_account"] == f"resident:{bob['id']}"
    assert body["created_at"].endswith("+08:00")
    assert balances(client, bob_h) == (STARTING - 45, 45)


def test_pay_a_relative_household_and_donate_to_the_pool(client, people):
    alice_h, _ = people["alice"]
    dave_h, dave = people["dave"]
    assert post(client, alice_h, {"to": {"household_id": dave["household_id"]}, "amount": 60}, "k-1").status_code == 201
    donation = post(client, alice_h, {"to": {"pool": True}, "amount": 30, "memo": "公益"}, "k-2")
    assert donation.status_code == 201
    assert (donation.json_body["kind"], donation.json_body["credit_account"]) == ("donation", "pool")
    assert balances(client, alice_h)[0] == STARTING - 90
    assert balances(client, dave_h)[0] == STARTING + 60


def test_pay_from_ones_personal_account(client, people):
    alice_h, alice = people["alice"]
    bob_h, bob = people["bob"]
    post(client, alice_h, {"to": {"resident_id": bob["id"]}, "amount": 50}, "k-1")
    moved = post(client, bob_h, {"to": {"household_id": bob["household_id"]}, "amount": 20, "from": "resident"},
                 "k-1")
    assert moved.status_code == 201
    assert moved.json_body["debit_account"] == f"resident:{bob['id']}"
    assert balances(client, bob_h) == (STARTING - 50 + 20, 30)


def test_the_same_key_and_body_returns_the_first_transfer_once(client, people):
    alice_h, _ = people["alice"]
    body = {"to": {"pool": True}, "amount": 25, "memo": "捐赠"}
    first = post(client, alice_h, body, "same")
    state = ledger_state()
    again = post(client, alice_h, body, "same")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json_body == first.json_body
    assert ledger_state() == state
    assert balances(client, alice_h)[0] == STARTING - 25


@pytest.mark.parametrize("changed", [{"amount": 26}, {"memo": "另一个"}, {"to": {"household_id": "hh_x"}},
                                     {"from": "resident"}])
def test_the_same_key_with_another_body_is_a_conflict(client, people, changed):
    alice_h, _ = people["alice"]
    body = {"to": {"pool": True}, "amount": 25, "memo": "捐赠"}
    post(client, alice_h, body, "same")
    state = ledger_state()
    response = post(client, alice_h, {**body, **changed}, "same")
    assert response.status_code in (409, 422)  # an unknown target is refused before the ledger
    if "to" not in changed:
        assert response.json_body["code"] == "IDEMPOTENCY_MISMATCH"
    assert ledger_state() == state


def test_keys_are_per_caller(client, people):
    alice_h, _ = people["alice"]
    bob_h, _ = people["bob"]
    body = {"to": {"pool": True}, "amount": 10}
    a = post(client, alice_h, body, "shared-key")
    b = post(client, bob_h, body, "shared-key")
    assert (a.status_code, b.status_code) == (201, 201) and a.json_body["id"] != b.json_body["id"]
    assert balances(client, alice_h)[0] == STARTING - 20


BAD_BODIES = [
    ("{not json", "body"),
    ("[1, 2]", "body"),
    ({"amount": 10}, "to"),
    ({"to": "pool", "amount": 10}, "to"),
    ({"to": {}, "amount": 10}, "to"),
    ({"to": {"pool": True, "household_id": "hh_x"}, "amount": 10}, "to"),
    ({"to": {"pool": False}, "amount": 10}, "to"),
    ({"to": {"pool": "yes"}, "amount": 10}, "to"),
    ({"to": {"resident_id": 42}, "amount": 10}, "to"),
    ({"to": {"resident_id": "r" * 101}, "amount": 10}, "to"),
    ({"to": {"pool": True}}, "amount"),
    ({"to": {"pool": True}, "amount": "10"}, "amount"),
    ({"to": {"pool": True}, "amount": 10.5}, "amount"),
    ({"to": {"pool": True}, "amount": True}, "amount"),
    ({"to": {"pool": True}, "amount": 0}, "amount"),
    ({"to": {"pool": True}, "amount": -5}, "amount"),
    ({"to": {"pool": True}, "amount": MAX_AMOUNT_MINUTES + 1}, "amount"),
    ({"to": {"pool": True}, "amount": 10**30}, "amount"),
    ({"to": {"pool": True}, "amount": 10, "asset": "gold"}, "asset"),
    ({"to": {"pool": True}, "amount": 10, "asset": 5}, "asset"),
    ({"to": {"pool": True}, "amount": 10, "asset": "reputation"}, "asset"),
    ({"to": {"pool": True}, "amount": 10, "memo": "长" * 201}, "memo"),
    ({"to": {"pool": True}, "amount": 10, "memo": 5}, "memo"),
    ({"to": {"pool": True}, "amount": 10, "from": "neighbour"}, "from"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES)
def test_bad_bodies_are_400_and_change_nothing(client, people, body, field):
    alice_h, _ = people["alice"]
    state = ledger_state()
    response = post(client, alice_h, body)
    assert response.status_code == 400, response.body
    assert response.json_body["code"] == "VALIDATION_ERROR"
    assert any(name == field or name.startswith(f"{field}.") for name in response.json_body["details"]["fields"])
    assert ledger_state() == state


@pytest.mark.parametrize("key", [None, "", "has space", "k" * 129, "键"])
def test_a_missing_or_bad_idempotency_key_is_400(client, people, key):
    alice_h, _ = people["alice"]
    state = ledger_state()
    headers = json_headers(alice_h)
    if key is not None:
        headers["Idempotency-Key"] = key
    response = client.http.post("/v1/transfers", body=as_json({"to": {"pool": True}, "amount": 10}), headers=headers)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json_body["details"]["fields"]
    assert ledger_state() == state


def test_paying_ones_own_household_account_from_itself_is_400(client, people):
    alice_h, alice = people["alice"]
    state = ledger_state()
    response = post(client, alice_h, {"to": {"household_id": alice["household_id"]}, "amount": 10})
    assert response.status_code == 400
    assert ledger_state() == state


@pytest.mark.parametrize("target,status,code", [
    ({"resident_id": "res_nobody"}, 404, "NOT_FOUND"),
    # Answered like an unrelated household: nothing tells which ids are registered households.
    ({"household_id": "hh_nobody"}, 422, "NOT_RELATIVE"),
    ("carol-resident", 422, "NOT_RELATIVE"),
    ("carol-household", 422, "NOT_RELATIVE"),
])
def test_only_relatives_or_the_pool_may_receive(client, people, target, status, code):
    alice_h, _ = people["alice"]
    _, carol = people["carol"]
    if target == "carol-resident":
        to = {"resident_id": carol["id"]}
    elif target == "carol-household":
        to = {"household_id": carol["household_id"]}
    else:
        to = target
    state = ledger_state()
    response = post(client, alice_h, {"to": to, "amount": 10})
    assert (response.status_code, response.json_body["code"]) == (status, code)
    assert ledger_state() == state


def test_insufficient_credits_is_422_and_changes_nothing(client, people):
    alice_h, _ = people["alice"]
    state = ledger_state()
    response = post(client, alice_h, {"to": {"pool": True}, "amount": STARTING + 1})
    assert (response.status_code, response.json_body["code"]) == (422, "INSUFFICIENT_CREDITS")
    personal = post(client, alice_h, {"to": {"pool": True}, "amount": 1, "from": "resident"}, "k-2")
    assert (personal.status_code, personal.json_body["code"]) == (422, "INSUFFICIENT_CREDITS")
    assert ledger_state() == state
    # the same key may be used again once the refusal is fixed: a refusal was never stored
    assert post(client, alice_h, {"to": {"pool": True}, "amount": STARTING}).status_code == 201


def test_callers_who_may_not_transfer(client, people):
    erin_h, _ = people["erin"]
    state = ledger_state()
    body = as_json({"to": {"pool": True}, "amount": 10})
    anonymous = client.http.post("/v1/transfers", body=body, headers=json_headers(None, "k"))
    assert (anonymous.status_code, anonymous.json_body["code"]) == (401, "UNAUTHENTICATED")
    bad_token = client.http.post("/v1/transfers", body=body,
                                 headers=json_headers({"Authorization": "Bearer forged"}, "k"))
    assert bad_token.status_code == 401
    unverified = client.http.post("/v1/transfers", body=body, headers=json_headers(erin_h, "k"))
    assert (unverified.status_code, unverified.json_body["code"]) == (403, "NOT_VERIFIED")
    unregistered = client.http.post("/v1/transfers", body=body, headers=json_headers(login(client, "frank"), "k"))
    assert (unregistered.status_code, unregistered.json_body["code"]) == (403, "NOT_REGISTERED")
    assert ledger_state() == state
