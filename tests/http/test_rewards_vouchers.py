"""API.md "Merchants and vouchers": merchants with their own ledger account and the owner's
merchant role, the catalogue, redeeming (a hold, one unit of stock, the per-person allowance,
one transaction), 核销 exactly once, cancel, the expiry schedule, the merchant's statement and
the community fund's buy-back. Every refusal the contract names leaves the database as it was;
every test ends with the ledger check ok."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from functions.core import clock
from functions.core.clock import CHINA_TZ
from functions.ledger.accounts import POOL, household_account, resident_account
from tests.helpers import (admin_headers, as_json, assert_error, db_snapshot, json_headers, login, register,
                           verified_resident)
from tests.rewards_helpers import (ITEM, add_item, available, create_merchant, grant, ledger_ok, pending, redeem,
                                   redeem_code, use_community)

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=CHINA_TZ)
STARTING = 300
SAMPLES = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture
def world(client, monkeypatch):
    use_community(monkeypatch)
    now = {"at": NOW}
    clock.set_clock(lambda: now["at"])
    shop_h, shop = create_merchant(client, "shop-owner")
    alice_h, alice = verified_resident(client, "alice", building="1", unit="1", room="101")
    item = add_item(client, shop_h)
    yield {"client": client, "now": now, "shop_h": shop_h, "shop": shop, "alice_h": alice_h, "alice": alice,
           "item": item}
    clock.set_clock(None)


def household_of(resident):
    return household_account(resident["household_id"])


# --- merchants ---------------------------------------------------------------------------------------

def test_an_admin_adds_a_merchant_whose_owner_logs_in_as_merchant(client, monkeypatch):
    use_community(monkeypatch)
    admin = admin_headers(client)
    body = {"name": "物业服务中心", "kind": "property", "owner_openid": "property-owner"}
    created = client.http.post("/v1/admin/merchants", headers=admin, body=as_json(body))
    assert created.status_code == 201, created.body
    merchant = created.json_body
    assert (merchant["name"], merchant["kind"], merchant["account_id"]) == \
        ("物业服务中心", "property", f"merchant:{merchant['id']}")
    assert "owner_openid" not in merchant
    again = client.http.post("/v1/admin/merchants", headers=admin, body=as_json(body))
    assert again.status_code == 200 and again.json_body == merchant
    before = db_snapshot()
    assert_error(client.http.post("/v1/admin/merchants", headers=admin, body=as_json({**body, "name": "别家"})),
                 409, "ALREADY_EXISTS")
    assert db_snapshot() == before
    session = client.http.post("/v1/auth/wechat", body=as_json({"code": "dev-property-owner"}),
                               headers=json_headers()).json_body
    assert "merchant" in session["roles"] and session["resident"] is None  # no resident record needed
    statement = client.http.get("/v1/merchant/statement", headers=login(client, "property-owner"))
    assert statement.status_code == 200
    assert statement.json_body["account_id"] == merchant["account_id"] and statement.json_body["items"] == []
    resident_h, _ = verified_resident(client, "resident-x")
    assert_error(client.http.post("/v1/admin/merchants", headers=resident_h, body=as_json(body)), 403, "FORBIDDEN")
    assert_error(client.http.get("/v1/merchant/statement", headers=resident_h), 403, "FORBIDDEN")
    ledger_ok()


def test_a_resident_who_owns_a_shop_sees_the_merchant_role_in_residents_me(client, monkeypatch):
    use_community(monkeypatch)
    headers, _ = verified_resident(client, "grocer", building="7", unit="1", room="101")
    create_merchant(client, "grocer", name="楼下小卖部", kind="shop")
    me = client.http.get("/v1/residents/me", headers=headers).json_body
    assert set(me["roles"]) >= {"resident", "merchant"}
    ledger_ok()


# --- the catalogue -----------------------------------------------------------------------------------

def test_merchants_offer_and_change_items_and_residents_see_the_catalogue(world):
    client, shop_h, item = world["client"], world["shop_h"], world["item"]
    assert (item["merchant_name"], item["stock"], item["stock_left"], item["outstanding"]) == ("社区便民超市", 5, 5, 0)
    replay = client.http.post("/v1/merchant/items", headers=json_headers(shop_h, "item-a"), body=as_json(ITEM))
    assert replay.status_code == 201
    again = client.http.post("/v1/merchant/items", headers=json_headers(shop_h, "item-a"), body=as_json(ITEM))
    assert again.json_body == replay.json_body
    assert_error(client.http.post("/v1/merchant/items", headers=json_headers(shop_h, "item-a"),
                                  body=as_json({**ITEM, "price": 31})), 409, "IDEMPOTENCY_MISMATCH")
    changed = client.http.put(f"/v1/merchant/items/{item['id']}", headers=shop_h,
                              body=as_json({"price": 25, "stock": 8}))
    assert changed.status_code == 200, changed.body
    assert (changed.json_body["price"], changed.json_body["stock_left"]) == (25, 8)
    catalogue = client.http.get("/v1/rewards/items", headers=world["alice_h"]).json_body
    listed = {entry["id"]: entry for entry in catalogue["items"]}
    assert listed[item["id"]]["price"] == 25 and listed[item["id"]]["stock_left"] == 8
    assert set(listed[item["id"]]) >= {"id", "merchant_id", "merchant_name", "title", "asset", "price", "stock_left",
                                       "per_person_limit"}
    ledger_ok()


def test_item_refusals(world):
    client, shop_h, item = world["client"], world["shop_h"], world["item"]
    other_h, _ = create_merchant(client, "other-owner", name="另一家")
    redeem(client, world["alice_h"], item["id"], key="r-a")   # one voucher outstanding
    before = db_snapshot()
    assert_error(client.http.post("/v1/merchant/items", headers=json_headers(shop_h),
                                  body=as_json({**ITEM, "asset": "contribution"})), 422, "NOT_REDEEMABLE")
    assert_error(client.http.put(f"/v1/merchant/items/{item['id']}", headers=shop_h,
                                 body=as_json({"asset": "contribution"})), 422, "NOT_REDEEMABLE")
    below = assert_error(client.http.put(f"/v1/merchant/items/{item['id']}", headers=shop_h,
                                         body=as_json({"stock": 0})), 422, "STOCK_BELOW_OUTSTANDING")
    assert below["details"] == {"outstanding": 1}
    assert_error(client.http.put(f"/v1/merchant/items/{item['id']}", headers=other_h, body=as_json({"price": 1})),
                 404, "NOT_FOUND")
    assert_error(client.http.put(f"/v1/merchant/items/{item['id']}", headers=shop_h, body=as_json({})),
                 400, "VALIDATION_ERROR")
    assert_error(client.http.post("/v1/merchant/items", headers=world["alice_h"], body=as_json(ITEM)),
                 403, "FORBIDDEN")
    assert db_snapshot() == before
    assert client.http.put(f"/v1/merchant/items/{item['id']}", headers=shop_h,
                           body=as_json({"stock": 1})).json_body["stock_left"] == 0
    ledger_ok()


# --- redeeming ---------------------------------------------------------------------------------------

def test_redeeming_holds_the_price_takes_a_unit_and_issues_a_voucher_with_a_code(world):
    client, alice_h, alice, item = world["client"], world["alice_h"], world["alice"], world["item"]
    response = redeem(client, alice_h, item["id"])
    assert response.status_code == 201, response.body
    voucher = response.json_body
    assert (voucher["status"], voucher["item_id"], voucher["asset"], voucher["price"]) == \
        ("issued", item["id"], "service", 30)
    assert len(voucher["code"]) == 20 and voucher["code"].isalnum() and voucher["code"].isupper()
    assert voucher["expires_at"] == (NOW + timedelta(days=30)).isoformat()
    assert (available(household_of(alice)), pending(household_of(alice))) == (STARTING - 30, 30)
    assert client.http.get("/v1/rewards/items", headers=alice_h).json_body["items"][0]["stock_left"] == 4
    before = db_snapshot()
    again = redeem(client, alice_h, item["id"])
    assert again.status_code == 201 and again.json_body == voucher
    assert db_snapshot() == before
    assert_error(redeem(client, alice_h, item["id"], **{"from": "resident"}), 409, "IDEMPOTENCY_MISMATCH")
    mine = client.http.get("/v1/vouchers/mine", headers=alice_h).json_body["items"]
    assert [v["id"] for v in mine] == [voucher["id"]]
    ledger_ok()


def test_redeem_refusals_change_nothing(world, monkeypatch):
    client, alice_h, alice, shop_h = world["client"], world["alice_h"], world["alice"], world["shop_h"]
    limited = add_item(client, shop_h, title="洗衣液", per_person_limit=1, stock=3)
    last_one = add_item(client, shop_h, title="限量月饼", stock=1)
    dear = add_item(client, shop_h, title="电饭煲", price=1000, stock=3)
    assert redeem(client, alice_h, limited["id"], key="first").status_code == 201
    bob_h, _ = verified_resident(client, "bob", building="2", unit="1", room="201")
    assert redeem(client, bob_h, last_one["id"], key="bob-1").status_code == 201
    before = db_snapshot()
    over = assert_error(redeem(client, alice_h, limited["id"], key="second"), 422, "LIMIT_EXCEEDED")
    assert over["details"]["limit"] == "per_person" and over["details"]["max"] == 1
    assert_error(redeem(client, alice_h, last_one["id"], key="late"), 409, "OUT_OF_STOCK")
    assert_error(redeem(client, alice_h, dear["id"], key="dear"), 422, "INSUFFICIENT_CREDITS")
    assert_error(redeem(client, alice_h, "itm_nothing", key="none"), 404, "NOT_FOUND")
    no_key = client.http.post(f"/v1/rewards/items/{dear['id']}/redeem", headers=alice_h, body=as_json({}))
    assert_error(no_key, 400, "VALIDATION_ERROR")
    assert db_snapshot() == before
    # The community stops letting merchants take 服务时: the same item is no longer redeemable.
    use_community(monkeypatch, assets={"service": {"redeemable": False}})
    assert_error(redeem(client, alice_h, dear["id"], key="not-redeemable"), 422, "NOT_REDEEMABLE")
    assert db_snapshot() == before
    ledger_ok()


def test_below_the_minimum_age_redeeming_is_age_restricted(client, monkeypatch):
    use_community(monkeypatch, min_redeem_age=18)
    shop_h, _ = create_merchant(client, "shop-owner")
    item = add_item(client, shop_h)
    kid_h, _ = verified_resident(client, "kid", building="3", unit="1", room="301", birth_year=2012)
    dad_h, _ = verified_resident(client, "dad", building="3", unit="1", room="301", birth_year=1980)
    before = db_snapshot()
    assert assert_error(redeem(client, kid_h, item["id"]), 422, "AGE_RESTRICTED")["details"] == {"min_age": 18}
    assert db_snapshot() == before
    assert redeem(client, dad_h, item["id"]).status_code == 201
    ledger_ok()


# --- 核销, cancel, expiry ----------------------------------------------------------------------------

def test_the_merchant_redeems_a_code_once_and_the_hold_is_posted_to_its_account(world):
    client, alice_h, alice, shop_h, shop = (world[k] for k in ("client", "alice_h", "alice", "shop_h", "shop"))
    voucher = redeem(client, alice_h, world["item"]["id"]).json_body
    other_h, _ = create_merchant(client, "other-owner", name="另一家")
    before = db_snapshot()
    assert_error(redeem_code(client, other_h, voucher["code"]), 404, "NOT_FOUND")   # another merchant's code
    assert_error(redeem_code(client, shop_h, "0" * 20), 404, "NOT_FOUND")
    assert_error(redeem_code(client, alice_h, voucher["code"]), 403, "FORBIDDEN")
    assert db_snapshot() == before
    done = redeem_code(client, shop_h, voucher["code"].lower())   # typed in lower case
    assert done.status_code == 200, done.body
    assert done.json_body["status"] == "redeemed" and done.json_body["id"] == voucher["id"]
    merchant = shop["account_id"]
    assert (available(merchant), pending(household_of(alice)), available(household_of(alice))) == (30, 0, STARTING - 30)
    before = db_snapshot()
    assert_error(redeem_code(client, shop_h, voucher["code"]), 409, "ALREADY_REDEEMED")
    assert_error(client.http.post(f"/v1/vouchers/{voucher['id']}/cancel", headers=alice_h), 409, "INVALID_STATE")
    assert db_snapshot() == before
    item = client.http.put(f"/v1/merchant/items/{world['item']['id']}", headers=shop_h,
                           body=as_json({"title": "环保袋"})).json_body
    assert (item["stock"], item["outstanding"], item["redeemed"]) == (4, 0, 1)
    statement = client.http.get("/v1/merchant/statement", headers=shop_h).json_body
    assert statement["balances"]["service"] == {"available": 30, "posted": 30, "pending": 0}
    assert {t["kind"] for t in statement["items"]} == {"voucher", "voucher_redeemed"}
    ledger_ok()


def test_an_expired_code_is_refused_and_the_schedule_voids_it_and_returns_the_stock(world, app):
    client, alice_h, alice, shop_h = world["client"], world["alice_h"], world["alice"], world["shop_h"]
    voucher = redeem(client, alice_h, world["item"]["id"]).json_body
    world["now"]["at"] = NOW + timedelta(days=30, seconds=1)
    shop_h, alice_h = login(client, "shop-owner"), login(client, "alice")  # a month later: fresh tokens
    before = db_snapshot()
    assert_error(redeem_code(client, shop_h, voucher["code"]), 409, "EXPIRED")
    assert db_snapshot() == before
    sample = json.loads((SAMPLES / "expire-vouchers.json").read_text())
    assert app.handler_map["expire-vouchers"](sample, None) == {"expired": 1}
    assert app.handler_map["expire-vouchers"](sample, None) == {"expired": 0}
    mine = client.http.get("/v1/vouchers/mine", headers=alice_h).json_body["items"]
    assert mine[0]["status"] == "expired"
    assert (available(household_of(alice)), pending(household_of(alice))) == (STARTING, 0)
    assert client.http.get("/v1/rewards/items", headers=alice_h).json_body["items"][0]["stock_left"] == 5
    assert_error(redeem_code(client, shop_h, voucher["code"]), 409, "EXPIRED")
    ledger_ok()


def test_the_holder_cancels_while_issued_and_nobody_else_can(world):
    client, alice_h, alice = world["client"], world["alice_h"], world["alice"]
    voucher = redeem(client, alice_h, world["item"]["id"]).json_body
    mallory_h, _ = verified_resident(client, "mallory", building="6", unit="1", room="601")
    before = db_snapshot()
    assert_error(client.http.post(f"/v1/vouchers/{voucher['id']}/cancel", headers=mallory_h), 404, "NOT_FOUND")
    assert db_snapshot() == before
    cancelled = client.http.post(f"/v1/vouchers/{voucher['id']}/cancel", headers=alice_h)
    assert cancelled.status_code == 200 and cancelled.json_body["status"] == "cancelled"
    assert (available(household_of(alice)), pending(household_of(alice))) == (STARTING, 0)
    again = client.http.post(f"/v1/vouchers/{voucher['id']}/cancel", headers=alice_h)
    assert again.status_code == 200 and again.json_body["status"] == "cancelled"
    assert_error(redeem_code(client, world["shop_h"], voucher["code"]), 409, "INVALID_STATE")
    # the unit and the allowance came back
    assert client.http.get("/v1/rewards/items", headers=alice_h).json_body["items"][0]["stock_left"] == 5
    for key in ("again-1", "again-2"):
        assert redeem(client, alice_h, world["item"]["id"], key=key).status_code == 201
    ledger_ok()


# --- the community fund buys credits back ------------------------------------------------------------

def test_an_admin_settles_a_merchants_credits_into_the_pool(world):
    client, shop_h, shop = world["client"], world["shop_h"], world["shop"]
    voucher = redeem(client, world["alice_h"], world["item"]["id"]).json_body
    redeem_code(client, shop_h, voucher["code"])
    admin = admin_headers(client)
    path = f"/v1/admin/merchants/{shop['id']}/settle"
    body = {"asset": "service", "amount": 20, "memo": "十二月回购"}
    settled = client.http.post(path, headers=json_headers(admin, "buy-1"), body=as_json(body))
    assert settled.status_code == 201, settled.body
    transfer = settled.json_body
    assert (transfer["debit_account"], transfer["credit_account"], transfer["amount"], transfer["kind"]) == \
        (shop["account_id"], POOL, 20, "merchant_buyback")
    assert client.http.post(path, headers=json_headers(admin, "buy-1"), body=as_json(body)).json_body == transfer
    before = db_snapshot()
    assert_error(client.http.post(path, headers=json_headers(admin, "buy-2"), body=as_json({**body, "amount": 11})),
                 422, "INSUFFICIENT_CREDITS")
    assert_error(client.http.post("/v1/admin/merchants/mer_nobody/settle", headers=json_headers(admin, "buy-3"),
                                  body=as_json(body)), 404, "NOT_FOUND")
    assert_error(client.http.post(path, headers=json_headers(world["alice_h"], "buy-4"), body=as_json(body)),
                 403, "FORBIDDEN")
    assert db_snapshot() == before
    assert (available(shop["account_id"]), available(POOL)) == (10, 20)
    ledger_ok()


def test_paying_from_the_personal_account(world):
    client, alice_h, alice = world["client"], world["alice_h"], world["alice"]
    grant(resident_account(alice["id"]), "service", 50)
    assert redeem(client, alice_h, world["item"]["id"], **{"from": "resident"}).status_code == 201
    assert (available(resident_account(alice["id"])), available(household_of(alice))) == (20, STARTING)
    ledger_ok()


def test_unverified_residents_cannot_redeem(world):
    client = world["client"]
    pending_h, _ = register(client, "newcomer", building="8", unit="1", room="801")
    before = db_snapshot()
    assert_error(redeem(client, pending_h, world["item"]["id"]), 403, "NOT_VERIFIED")
    assert_error(client.http.get("/v1/rewards/items", headers=pending_h), 403, "NOT_VERIFIED")
    assert db_snapshot() == before
    ledger_ok()
