"""GET /v1/accounts/me, GET /v1/accounts/{id}/transfers and GET /v1/admin/ledger/check."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import admin_headers, as_json, json_headers, login, register, verified_resident


@pytest.fixture
def people(client):
    """alice and bob share a household; carol lives elsewhere; erin is not verified yet."""
    alice_h, alice = verified_resident(client, "alice", building="1", unit="1", room="101")
    bob_h, bob = verified_resident(client, "bob", building="1", unit="1", room="101")
    carol_h, carol = verified_resident(client, "carol", building="2", unit="1", room="201")
    erin_h, erin = register(client, "erin", building="4", unit="1", room="401")
    return {"alice": (alice_h, alice), "bob": (bob_h, bob), "carol": (carol_h, carol), "erin": (erin_h, erin)}


def pay(client, headers, to, amount, key, **extra):
    response = client.http.post("/v1/transfers", body=as_json({"to": to, "amount": amount, **extra}),
                                headers=json_headers(headers, key))
    assert response.status_code == 201, response.body
    return response.json_body


def statement(client, headers, account_id, query=""):
    return client.http.get(f"/v1/accounts/{account_id}/transfers{query}", headers=headers)


# --- GET /v1/accounts/me ---------------------------------------------------------------------

def test_my_accounts_show_available_posted_and_pending(client, people):
    from functions.ledger.accounts import ESCROW, household_account
    from functions import bootstrap

    alice_h, alice = people["alice"]
    bootstrap.ledger().hold("hold-1", household_account(alice["household_id"]), ESCROW, "service", 50)
    bootstrap.ledger().transfer("vol-1", "issuance", f"resident:{alice['id']}", "volunteer", 90, kind="grant")
    response = client.http.get("/v1/accounts/me", headers=alice_h)
    assert response.status_code == 200
    body = response.json_body
    assert body["resident"]["id"] == alice["id"]
    assert body["household"]["id"] == alice["household_id"]
    assert body["household"]["balances"]["service"] == {"available": 250, "posted": 300, "pending": 50}
    assert body["resident"]["balances"] == {"service": {"available": 0, "posted": 0, "pending": 0},
                                            "volunteer": {"available": 90, "posted": 90, "pending": 0}}


def test_my_accounts_need_a_verified_resident(client, people):
    erin_h, _ = people["erin"]
    assert client.http.get("/v1/accounts/me").status_code == 401
    assert client.http.get("/v1/accounts/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    unverified = client.http.get("/v1/accounts/me", headers=erin_h)
    assert (unverified.status_code, unverified.json_body["code"]) == (403, "NOT_VERIFIED")
    unregistered = client.http.get("/v1/accounts/me", headers=login(client, "frank"))
    assert (unregistered.status_code, unregistered.json_body["code"]) == (403, "NOT_REGISTERED")


# --- GET /v1/accounts/{id}/transfers -----------------------------------------------------------

def test_a_statement_is_newest_first_with_current_status(client, people):
    from functions.ledger.accounts import ESCROW, household_account
    from functions import bootstrap

    alice_h, alice = people["alice"]
    _, bob = people["bob"]
    household = household_account(alice["household_id"])
    pay(client, alice_h, {"resident_id": bob["id"]}, 40, "k-1", memo="零花钱")
    bootstrap.ledger().hold("hold-1", household, ESCROW, "service", 50, request_id="req_1")
    bootstrap.ledger().void_pending("void-1", "hold-1", reason="cancelled")
    response = statement(client, alice_h, alice["household_id"])
    assert response.status_code == 200
    items = response.json_body["items"]
    assert [i["kind"] for i in items] == ["release", "hold", "transfer", "starting_credits"]
    assert items[1]["status"] == "voided" and items[1]["request_id"] == "req_1"
    assert set(items[2]) >= {"id", "amount", "asset", "debit_account", "credit_account", "kind", "status", "memo",
                             "created_at"}
    assert (items[2]["amount"], items[2]["memo"], items[2]["credit_account"]) == (40, "零花钱", f"resident:{bob['id']}")
    assert response.json_body["next_cursor"] is None


def test_a_statement_pages_with_a_cursor(client, people):
    alice_h, alice = people["alice"]
    for i in range(5):
        pay(client, alice_h, {"pool": True}, 1 + i, f"k-{i}")
    seen, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = statement(client, alice_h, alice["household_id"], query).json_body
        assert len(body["items"]) <= 2
        seen.extend(i["amount"] for i in body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == [5, 4, 3, 2, 1, 300]


@pytest.mark.parametrize("query", ["?limit=0", "?limit=101", "?limit=abc", "?limit=-1", "?cursor=%%%",
                                   "?cursor=bm90LWpzb24", "?cursor=WzFd", "?cursor=eyJhZnRlciI6MX0"])
def test_bad_paging_is_400(client, people, query):
    alice_h, alice = people["alice"]
    response = statement(client, alice_h, alice["household_id"], query)
    assert (response.status_code, response.json_body["code"]) == (400, "VALIDATION_ERROR")


def test_who_may_read_which_statement(client, people):
    alice_h, alice = people["alice"]
    bob_h, bob = people["bob"]
    carol_h, carol = people["carol"]
    household = alice["household_id"]
    # the owner: by resident id, household id or typed account id
    for account_id in (alice["id"], household, f"resident:{alice['id']}", f"household:{household}"):
        assert statement(client, alice_h, account_id).status_code == 200, account_id
    # household members (API.md): the household account and each other's personal accounts
    assert statement(client, bob_h, household).status_code == 200
    for account_id in (alice["id"], f"resident:{alice['id']}"):
        assert statement(client, bob_h, account_id).status_code == 200, account_id
    # strangers, and system accounts, are forbidden to residents — existing or not
    for account_id in (household, alice["id"], "pool", "issuance", "hh_does_not_exist", "res_does_not_exist"):
        denied = statement(client, carol_h, account_id)
        assert (denied.status_code, denied.json_body["code"]) == (403, "FORBIDDEN"), account_id
    # admins read any account that exists
    admin = admin_headers(client)
    for account_id in (household, alice["id"], "pool", "issuance", f"resident:{carol['id']}"):
        assert statement(client, admin, account_id).status_code == 200, account_id


@pytest.mark.parametrize("account_id", ["hh_does_not_exist", "res_does_not_exist", "household:hh_nope",
                                        "resident:res_nope", "merchant:m_never", "someone", "pool%233",
                                        "resident:a%20b", "x" * 150])
def test_unknown_accounts_are_404(client, people, account_id):
    response = statement(client, admin_headers(client), account_id)
    assert (response.status_code, response.json_body["code"]) == (404, "NOT_FOUND")


def test_statements_need_a_login_and_verification(client, people):
    _, alice = people["alice"]
    erin_h, erin = people["erin"]
    assert statement(client, {}, alice["household_id"]).status_code == 401
    unverified = statement(client, erin_h, erin["household_id"])
    assert (unverified.status_code, unverified.json_body["code"]) == (403, "NOT_VERIFIED")


# --- GET /v1/admin/ledger/check -------------------------------------------------------------------

def run_scheduled_check(app):
    event = json.loads((Path(__file__).resolve().parents[2] / "events" / "ledger-check.json").read_text())
    return app.handler_map["ledger-check"](event, None)


def test_the_admin_reconciliation_report(client, app, people):
    alice_h, _ = people["alice"]
    pay(client, alice_h, {"pool": True}, 20, "k-1")
    run_scheduled_check(app)
    response = client.http.get("/v1/admin/ledger/check", headers=admin_headers(client))
    assert response.status_code == 200
    body = response.json_body
    assert body["ok"] is True and body["violations"] == [] and body["checked_at"]
    assert body["assets"]["service"] == {"debits_posted": 2 * 300 + 20, "credits_posted": 2 * 300 + 20,
                                         "debits_pending": 0, "credits_pending": 0}


def test_the_endpoint_reads_the_latest_report_and_never_scans(client, app, people, dynamo_calls):
    """Outside testing: two full-table Scans ran inside the request (API Gateway's 29 s)."""
    run_scheduled_check(app)
    headers = admin_headers(client)
    calls = dynamo_calls.during(lambda: client.http.get("/v1/admin/ledger/check", headers=headers))
    assert "Scan" not in calls and calls.get("GetItem", 0) <= 2


@pytest.mark.ledger_tampered
def test_the_report_shows_a_tampered_balance(client, app, people):
    from functions.ledger.dynamo import LedgerBalanceItem

    _, alice = people["alice"]
    LedgerBalanceItem(f"household:{alice['household_id']}", "service").update(
        actions=[LedgerBalanceItem.credits_posted.add(1), LedgerBalanceItem.available.add(1)])
    assert run_scheduled_check(app) == {"ok": False, "violations": 2}
    body = client.http.get("/v1/admin/ledger/check", headers=admin_headers(client)).json_body
    assert body["ok"] is False
    assert {v["type"] for v in body["violations"]} == {"balance_mismatch", "unbalanced_posted"}


def test_only_admins_run_the_check(client, people):
    alice_h, _ = people["alice"]
    assert client.http.get("/v1/admin/ledger/check").status_code == 401
    denied = client.http.get("/v1/admin/ledger/check", headers=alice_h)
    assert (denied.status_code, denied.json_body["code"]) == (403, "FORBIDDEN")
