"""Reversals over HTTP (API.md "Administration and data"): an admin reverses a posted transfer
with a reason; a settlement's two legs go together; never twice; refused when the receiver can no
longer cover it; both parties see it in their statements; each one is an audit entry."""
from __future__ import annotations

from datetime import timedelta

import pytest

from functions.core import clock
from tests.activity_support import NOW, Clock
from tests.helpers import admin_headers, as_json, assert_error, db_snapshot, json_headers, verified_resident


@pytest.fixture
def world(client):
    Clock(NOW)
    ann_h, ann = verified_resident(client, "rev-ann", building="1", room="101")
    ben_h, ben = verified_resident(client, "rev-ben", building="2", room="201")
    body = {"category": "tutoring", "title": "辅导", "description": "", "duration_minutes": 60,
            "start_at": (clock.now() + timedelta(hours=2)).isoformat()}
    need = client.http.post("/v1/requests", body=as_json(body), headers=json_headers(ann_h, "rev-1")).json_body["id"]
    for step, payload in (("accept", None), ("check-in", "{}"), ("complete", as_json({"minutes": 60})),):
        assert client.http.post(f"/v1/requests/{need}/{step}", headers=ben_h, body=payload).status_code == 200
    assert client.http.post(f"/v1/requests/{need}/confirm", headers=ann_h, body="{}").status_code == 200
    statement = statement_of(client, ben["id"])
    (payout,) = [t for t in statement if t["kind"] == "settlement" and t["credit_account"].startswith("resident:")] or \
        [t for t in statement if t["request_id"] == need]
    return {"client": client, "ann_h": ann_h, "ann": ann, "ben_h": ben_h, "ben": ben, "payout": payout, "need": need}


def statement_of(client, owner_id):
    response = client.http.get(f"/v1/accounts/{owner_id}/transfers?limit=100", headers=admin_headers(client))
    assert response.status_code == 200, response.body
    return response.json_body["items"]


def balances(client, headers):
    body = client.http.get("/v1/accounts/me", headers=headers).json_body
    return body["household"]["balances"]["service"]["available"], body["resident"]["balances"]["service"]["available"]


def reverse(client, transfer_id, reason="重复结算", headers=None):
    return client.http.post(f"/v1/admin/transfers/{transfer_id}/reverse", body=as_json({"reason": reason}),
                            headers=headers or admin_headers(client))


def test_a_settlement_is_reversed_once_and_both_parties_see_it(world):
    client, payout = world["client"], world["payout"]
    assert balances(client, world["ann_h"])[0] == 240 and balances(client, world["ben_h"])[1] == 60
    response = reverse(client, payout["id"])
    assert response.status_code == 201, response.body
    reversal = response.json_body
    assert reversal["reverses"] == payout["id"] and reversal["reversal_of"] == payout["id"]
    assert (reversal["debit_account"], reversal["credit_account"], reversal["amount"]) == \
        (payout["credit_account"], payout["debit_account"], payout["amount"])
    assert reversal["kind"] == "reversal" and reversal["memo"] == "重复结算"
    # the payer has their credits back, the volunteer gives them back; escrow keeps nothing
    assert balances(client, world["ann_h"])[0] == 300 and balances(client, world["ben_h"])[1] == 0
    ben_statement = statement_of(client, world["ben"]["id"])
    assert reversal["id"] in [t["id"] for t in ben_statement]   # (one fake-clock second: order by kind)
    assert next(t for t in ben_statement if t["id"] == payout["id"])["reversed_by"] == reversal["id"]
    ann_statement = statement_of(client, world["ann"]["household_id"])
    (post_reversal,) = [t for t in ann_statement if t["kind"] == "reversal"]
    assert post_reversal["reverses"].endswith(".post")
    # never twice: 409, nothing written, and the other leg cannot be reversed on its own
    before = db_snapshot(audit=True)
    assert_error(reverse(client, payout["id"]), 409, "ALREADY_REVERSED")
    assert_error(reverse(client, post_reversal["reverses"]), 409, "ALREADY_REVERSED")
    assert db_snapshot(audit=True) == before
    entries = client.http.get("/v1/admin/audit?action=transfer.reverse", headers=admin_headers(client)).json_body
    (entry,) = entries["items"]
    assert entry["target"] == {"transfer_id": payout["id"]} and entry["reason"] == "重复结算"


def test_a_reversal_the_receiver_cannot_cover_is_refused(world):
    client, ben_h = world["client"], world["ben_h"]
    spent = client.http.post("/v1/transfers", headers=json_headers(ben_h, "rev-spend"),
                             body=as_json({"to": {"pool": True}, "from": "resident", "amount": 50}))
    assert spent.status_code == 201, spent.body
    before = db_snapshot(audit=True)
    body = assert_error(reverse(client, world["payout"]["id"]), 422, "INSUFFICIENT_CREDITS")
    assert body["details"]["account"].startswith("resident:")
    assert db_snapshot(audit=True) == before   # no reversal, no audit entry


def test_a_plain_transfer_is_reversed(world):
    client, ann_h = world["client"], world["ann_h"]
    donated = client.http.post("/v1/transfers", headers=json_headers(ann_h, "rev-give"),
                               body=as_json({"to": {"pool": True}, "amount": 40})).json_body
    response = reverse(client, donated["id"], "误捐")
    assert response.status_code == 201, response.body
    assert (response.json_body["debit_account"], response.json_body["amount"]) == (donated["credit_account"], 40)
    assert balances(client, ann_h)[0] == 240


def test_bad_input_and_forbidden_callers(world):
    client, payout = world["client"], world["payout"]
    admin = admin_headers(client)
    path = f"/v1/admin/transfers/{payout['id']}/reverse"
    before = db_snapshot(audit=True)
    for body, field in (({}, "reason"), ({"reason": ""}, "reason"), ({"reason": "x" * 201}, "reason"),
                        ({"reason": "ok", "amount": 3}, "amount")):
        error = assert_error(client.http.post(path, body=as_json(body), headers=admin), 400, "VALIDATION_ERROR")
        assert field in error["details"]["fields"], error
    assert_error(client.http.post(path, body="{", headers=admin), 400, "VALIDATION_ERROR")
    assert_error(reverse(client, "tr_nosuchtransfer"), 404, "NOT_FOUND")
    assert_error(reverse(client, "x" * 300), 404, "NOT_FOUND")
    assert_error(reverse(client, payout["id"], headers=world["ben_h"]), 403, "FORBIDDEN")
    assert_error(client.http.post(path, body=as_json({"reason": "x"}), headers=json_headers()), 401,
                 "UNAUTHENTICATED")
    assert db_snapshot(audit=True) == before


def test_a_hold_is_not_reversed_but_released(world):
    client, ann_h = world["client"], world["ann_h"]
    body = {"category": "tutoring", "title": "再辅导", "description": "", "duration_minutes": 30,
            "start_at": (clock.now() + timedelta(hours=2)).isoformat()}
    posted = client.http.post("/v1/requests", body=as_json(body), headers=json_headers(ann_h, "rev-hold"))
    hold = next(t for t in statement_of(client, world["ann"]["household_id"]) if t["status"] == "pending")
    assert posted.status_code == 201
    assert_error(reverse(client, hold["id"]), 409, "INVALID_STATE")
