"""AWS calls of the rewards operations (issues 10 and 11), as the mini-program, a merchant, an
admin and the queue drive them: a conversion, a merchant and its item, a voucher issued and
redeemed (核销), the community fund's buy-back, and one 志愿汇 exchange requested and confirmed
by its consumer (the local fake partner: in-process, so its cost is nothing here).

The point kinds are the demo community's (``infra/communities/demo.toml``: 志愿时 → 服务时 1:1).
Setting up (the resident, the volunteer minutes it converts, logins) is not counted; an
uncounted check after each step confirms it did what it should.
"""
from __future__ import annotations

from bench.environment import BENCH_ADMIN
from bench.lifecycle import QueueDrainer, expect, verified
from bench.operations import Scenario

RESIDENT = "bench-rewards-resident"
MERCHANT_OWNER = "bench-merchant"
ITEM = {"title": "环保购物袋", "description": "bench", "asset": "service", "price": 30, "stock": 10,
        "per_person_limit": 2, "valid_days": 30}


def run_rewards(s: Scenario, drainer: QueueDrainer) -> None:
    from functions import bootstrap
    from functions.ledger.accounts import ISSUANCE, household_account

    s.login(BENCH_ADMIN)
    resident = verified(s, RESIDENT, room="1201", building="12")
    household = household_account(resident["household_id"])
    bootstrap.ledger().transfer("bench-volunteer-minutes", ISSUANCE, household, "volunteer", 200, kind="grant")
    drainer.drain()  # nothing of another table's operations left waiting

    s.measure("point kinds (GET /v1/assets)", lambda: s.http("GET", "/v1/assets", RESIDENT),
              check=lambda r: expect(len(r["items"]) == 6, "not six assets"))
    s.measure("conversion (POST /v1/conversions, 2 linked legs)", lambda: s.http(
        "POST", "/v1/conversions", RESIDENT, {"from_asset": "volunteer", "to_asset": "service", "amount": 60},
        idempotency_key="bench-conversion-1"),
        check=lambda r: expect(r["credited"] == 60, f"credited {r['credited']}"))
    s.measure("conversion replay (same Idempotency-Key)", lambda: s.http(
        "POST", "/v1/conversions", RESIDENT, {"from_asset": "volunteer", "to_asset": "service", "amount": 60},
        idempotency_key="bench-conversion-1"))
    merchant = s.measure("add a merchant (admin; owner's login gets the role)", lambda: s.http(
        "POST", "/v1/admin/merchants", BENCH_ADMIN,
        {"name": "便民超市", "kind": "supermarket", "owner_openid": MERCHANT_OWNER}))
    if not merchant:
        return
    s.login(MERCHANT_OWNER)
    item = s.measure("add an item (POST /v1/merchant/items)", lambda: s.http(
        "POST", "/v1/merchant/items", MERCHANT_OWNER, ITEM, idempotency_key="bench-item-1"))
    if not item:
        return
    voucher = s.measure("voucher issued (POST /v1/rewards/items/{id}/redeem)", lambda: s.http(
        "POST", f"/v1/rewards/items/{item['id']}/redeem", RESIDENT, {}, idempotency_key="bench-voucher-1"),
        check=lambda r: expect(r["status"] == "issued", f"status {r['status']}"))
    s.measure("catalogue (GET /v1/rewards/items)", lambda: s.http("GET", "/v1/rewards/items", RESIDENT))
    if voucher:
        s.measure("voucher redeemed (核销, POST /v1/merchant/vouchers/redeem)", lambda: s.http(
            "POST", "/v1/merchant/vouchers/redeem", MERCHANT_OWNER, {"code": voucher["code"]}),
            check=lambda r: expect(r["status"] == "redeemed", f"status {r['status']}"))
    s.measure("merchant statement (GET /v1/merchant/statement)",
              lambda: s.http("GET", "/v1/merchant/statement", MERCHANT_OWNER))
    s.measure("buy-back (POST /v1/admin/merchants/{id}/settle)", lambda: s.http(
        "POST", f"/v1/admin/merchants/{merchant['id']}/settle", BENCH_ADMIN,
        {"asset": "service", "amount": 30, "memo": "bench"}, idempotency_key="bench-buyback-1"))
    exchange = s.measure("exchange requested (POST /v1/exchanges/zyh)", lambda: s.http(
        "POST", "/v1/exchanges/zyh", RESIDENT, {"asset": "volunteer", "amount": 60, "zyh_user_id": "zyh-bench"},
        idempotency_key="bench-exchange-1"),
        check=lambda r: expect(r["status"] == "pending", f"status {r['status']}"))
    if exchange:
        s.measure("exchange confirmed (zyh-exchanges consumer, 1 message)", drainer.drain,
                  check=lambda handled: expect(handled == 1, f"{handled} messages handled")
                  or expect(confirmed(s, exchange["id"]), "not confirmed"))


def confirmed(s: Scenario, exchange_id: str) -> bool:
    return s.http("GET", f"/v1/exchanges/{exchange_id}", RESIDENT)["status"] == "confirmed"

