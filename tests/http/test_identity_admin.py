"""Admin review of residents: listing, verification (with starting credits), rejection."""

import pytest

from functions.core.settings import get_settings

from functions.identity.service import starting_credits_transfer_id
from functions.ledger.accounts import household_account
from functions import bootstrap
from tests.helpers import (
    admin_headers, as_json, assert_error, db_snapshot, login, register, verified_resident, verify,
)


def household_balance(household_id):
    totals = bootstrap.ledger().balances(household_account(household_id)).get("service")
    return totals.available if totals else 0


def list_page(client, query=""):
    return client.http.get(f"/v1/admin/residents{query}", headers=admin_headers(client))


# --- listing --------------------------------------------------------------------------------------


def test_pending_residents_are_listed_oldest_first_with_pages(client):
    ids = [register(client, f"u{i}", room=str(100 + i))[1]["id"] for i in range(5)]
    verify(client, ids[1])
    seen, cursor, pages = [], None, 0
    while True:
        response = list_page(client, "?status=pending&limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert response.status_code == 200
        body = response.json_body
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [ids[0], ids[2], ids[3], ids[4]]
    assert pages == 2
    verified = list_page(client, "?status=verified").json_body
    assert [item["id"] for item in verified["items"]] == [ids[1]]
    assert verified["next_cursor"] is None


def test_status_defaults_to_pending(client):
    _, resident = register(client, "alice")
    assert [i["id"] for i in list_page(client).json_body["items"]] == [resident["id"]]


INVALID_QUERIES = [
    ("?status=archived", "status"), ("?limit=0", "limit"), ("?limit=101", "limit"), ("?limit=x", "limit"),
    ("?cursor=not-a-cursor", "cursor"), ("?cursor=eyJ4IjoxfQ", "cursor"),  # {"x":1}
]


def test_invalid_list_queries_are_400(client, subtests):
    for query, field in INVALID_QUERIES:
        with subtests.test(query=query):
            error = assert_error(list_page(client, query), 400, "VALIDATION_ERROR")
            assert field in error["details"]["fields"]


def test_listing_is_admin_only(client):
    pending, _ = register(client, "pending")
    verified, _ = verified_resident(client, "verified", room="2")
    assert_error(client.http.get("/v1/admin/residents"), 401, "UNAUTHENTICATED")
    for headers in (login(client, "nobody"), pending, verified):
        assert_error(client.http.get("/v1/admin/residents", headers=headers), 403, "FORBIDDEN")


# --- verification ---------------------------------------------------------------------------------


def test_verify_answers_the_verified_resident(client):
    _, resident = register(client, "alice")
    response = client.http.post(f"/v1/admin/residents/{resident['id']}/verify", headers=admin_headers(client))
    assert response.status_code == 200
    body = response.json_body
    assert body["id"] == resident["id"] and body["status"] == "verified"
    assert body["reviewed_at"] is not None
    assert body["phone"] == resident["phone"]


def test_first_verified_member_brings_the_starting_credits_once(client):
    _, alice = register(client, "alice")
    _, bob = register(client, "bob")
    household = alice["household_id"]
    assert household_balance(household) == 0
    verify(client, alice["id"])
    assert household_balance(household) == get_settings().starting_credits == 300
    verify(client, alice["id"])  # idempotent re-verify
    verify(client, bob["id"])    # second member of the same household
    assert household_balance(household) == 300
    transfer = bootstrap.ledger().get_transfer(starting_credits_transfer_id(household))
    assert (transfer.kind, transfer.amount, transfer.credit_account) == \
        ("starting_credits", 300, household_account(household))


def test_each_household_gets_its_own_starting_credits(client):
    _, a = verified_resident(client, "alice", room="101")
    _, b = verified_resident(client, "bob", room="102")
    assert household_balance(a["household_id"]) == household_balance(b["household_id"]) == 300


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_around_the_verification_commit_never_leaves_a_verified_household_without_credits(
        client, monkeypatch, when):
    """Outside testing: the status change, the grant and the household's mark were three writes;
    a crash after the first left a verified household with 0 credits. Now they are one."""
    from functions.ledger.model import CommitHooks, SimulatedCrash

    _, alice = register(client, "alice")
    ledger = bootstrap.ledger()

    class Crash(CommitHooks):
        def before_commit(self, plan):
            if when == "before":
                raise SimulatedCrash("lambda timed out before the commit")

        def after_commit(self, plan):
            if when == "after":
                raise SimulatedCrash("lambda timed out after the commit")

    monkeypatch.setattr(ledger.store, "hooks", Crash())
    response = client.http.post(f"/v1/admin/residents/{alice['id']}/verify", headers=admin_headers(client))
    assert response.status_code == 500
    status = client.http.get(f"/v1/admin/residents/{alice['id']}", headers=admin_headers(client)).json_body["status"]
    # All or nothing: pending with no credits, or verified with them.
    assert (status, household_balance(alice["household_id"])) == (
        ("pending", 0) if when == "before" else ("verified", 300))
    monkeypatch.setattr(ledger.store, "hooks", CommitHooks())
    assert verify(client, alice["id"])["status"] == "verified"  # the admin's retry
    assert household_balance(alice["household_id"]) == 300
    view = client.http.get("/v1/households/mine", headers=login(client, "alice")).json_body
    assert view["starting_credits_granted"] is True


def test_verify_unknown_or_dependant_is_404_and_changes_nothing(client):
    alice, _ = verified_resident(client, "alice")
    dependant = client.http.post("/v1/households/mine/members", headers=alice,
                                 body=as_json({"name": "奶奶", "birth_year": 1940, "relation": "parent"})).json_body
    before = db_snapshot()
    for rid in ("res_unknown", dependant["id"], "x" * 300):
        assert_error(client.http.post(f"/v1/admin/residents/{rid}/verify", headers=admin_headers(client)),
                     404, "NOT_FOUND")
        assert_error(client.http.post(f"/v1/admin/residents/{rid}/reject", headers=admin_headers(client),
                                      body=as_json({"reason": "x"})), 404, "NOT_FOUND")
    assert db_snapshot() == before


def test_verify_and_reject_are_admin_only(client):
    pending, resident = register(client, "pending")
    verified, _ = verified_resident(client, "verified", room="2")
    before = db_snapshot()
    for action, body in (("verify", None), ("reject", as_json({"reason": "x"}))):
        path = f"/v1/admin/residents/{resident['id']}/{action}"
        assert_error(client.http.post(path, body=body), 401, "UNAUTHENTICATED")
        assert_error(client.http.post(path, body=body, headers={"Authorization": "Bearer forged"}),
                     401, "UNAUTHENTICATED")
        for headers in (login(client, "nobody"), pending, verified):
            assert_error(client.http.post(path, headers=headers, body=body), 403, "FORBIDDEN")
    assert db_snapshot() == before


# --- rejection ------------------------------------------------------------------------------------


def test_reject_then_verify_and_no_rejection_after_verification(client):
    headers, resident = register(client, "alice")
    admin = admin_headers(client)
    rid = resident["id"]
    rejected = client.http.post(f"/v1/admin/residents/{rid}/reject", headers=admin,
                                body=as_json({"reason": "门牌号不符"}))
    assert rejected.status_code == 200
    assert (rejected.json_body["status"], rejected.json_body["rejection_reason"]) == ("rejected", "门牌号不符")
    me = client.http.get("/v1/residents/me", headers=headers).json_body
    assert me["status"] == "rejected" and me["rejection_reason"] == "门牌号不符"
    again = client.http.post(f"/v1/admin/residents/{rid}/reject", headers=admin, body=as_json({"reason": "其他"}))
    assert again.status_code == 200 and again.json_body["rejection_reason"] == "门牌号不符"
    assert household_balance(resident["household_id"]) == 0
    assert verify(client, rid)["status"] == "verified"
    assert household_balance(resident["household_id"]) == 300
    before = db_snapshot()
    assert_error(client.http.post(f"/v1/admin/residents/{rid}/reject", headers=admin,
                                  body=as_json({"reason": "改主意"})), 409, "INVALID_STATE")
    assert db_snapshot() == before


def test_reject_needs_a_reason(client, subtests):
    _, resident = register(client, "alice")
    before = db_snapshot()
    for body in (None, "{}", as_json({"reason": ""}), as_json({"reason": "理" * 201}), as_json({"reason": 5}),
                 "{bad json"):
        with subtests.test(body=body):
            error = assert_error(client.http.post(f"/v1/admin/residents/{resident['id']}/reject",
                                                  headers=admin_headers(client), body=body), 400, "VALIDATION_ERROR")
            assert set(error["details"]["fields"]) & {"reason", "body"}
    assert db_snapshot() == before


def test_admin_reads_one_resident(client):
    _, resident = register(client, "alice")
    response = client.http.get(f"/v1/admin/residents/{resident['id']}", headers=admin_headers(client))
    assert response.status_code == 200 and response.json_body == resident
    assert_error(client.http.get("/v1/admin/residents/res_nobody", headers=admin_headers(client)), 404, "NOT_FOUND")
    assert_error(client.http.get(f"/v1/admin/residents/{resident['id']}", headers=login(client, "alice")),
                 403, "FORBIDDEN")


# --- roles ----------------------------------------------------------------------------------------


def test_admin_grants_and_removes_roles(client):
    headers, resident = verified_resident(client, "shopkeeper")
    path = f"/v1/admin/residents/{resident['id']}/roles"
    response = client.http.put(path, headers=admin_headers(client), body=as_json({"roles": ["merchant"]}))
    assert response.status_code == 200
    assert response.json_body["roles"] == ["merchant", "resident"]
    assert client.http.get("/v1/residents/me", headers=headers).json_body["roles"] == ["merchant", "resident"]
    # An appointed admin reaches admin routes with the token it already has.
    assert_error(client.http.get("/v1/admin/residents", headers=headers), 403, "FORBIDDEN")
    client.http.put(path, headers=admin_headers(client), body=as_json({"roles": ["admin"]}))
    assert client.http.get("/v1/admin/residents", headers=headers).status_code == 200
    cleared = client.http.put(path, headers=admin_headers(client), body=as_json({"roles": []}))
    assert cleared.json_body["roles"] == ["resident"]
    assert_error(client.http.get("/v1/admin/residents", headers=headers), 403, "FORBIDDEN")


def test_invalid_roles_are_400(client, subtests):
    _, resident = register(client, "alice")
    before = db_snapshot()
    for body in ("{}", as_json({"roles": "merchant"}), as_json({"roles": ["king"]}), as_json({"roles": [1]}),
                 as_json({"roles": ["merchant"] * 4}), "[]", "{x"):
        with subtests.test(body=body):
            assert_error(client.http.put(f"/v1/admin/residents/{resident['id']}/roles",
                                         headers=admin_headers(client), body=body), 400, "VALIDATION_ERROR")
    assert db_snapshot() == before


def test_roles_are_admin_only_and_need_a_known_resident(client):
    headers, resident = verified_resident(client, "alice")
    body = as_json({"roles": ["admin"]})
    before = db_snapshot()
    assert_error(client.http.put(f"/v1/admin/residents/{resident['id']}/roles", body=body), 401, "UNAUTHENTICATED")
    assert_error(client.http.put(f"/v1/admin/residents/{resident['id']}/roles", headers=headers, body=body),
                 403, "FORBIDDEN")
    assert_error(client.http.put("/v1/admin/residents/res_nobody/roles", headers=admin_headers(client), body=body),
                 404, "NOT_FOUND")
    assert db_snapshot() == before
