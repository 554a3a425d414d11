"""Helpers of the rewards tests: the demo community's point kinds, credits granted from
issuance, merchants, catalogue items and vouchers through the public HTTP API."""
from __future__ import annotations

import json
from typing import Any

from infra.config import load_community
from tests.helpers import admin_headers, as_json, json_headers, login

DEMO_ASSETS = load_community("demo").assets
ITEM = {"title": "环保购物袋", "description": "可重复使用", "asset": "service", "price": 30, "stock": 5,
        "per_person_limit": 2, "valid_days": 30}


def use_community(monkeypatch, *, assets: dict | None = None, min_redeem_age: int = 0, **env: str) -> None:
    """Run this test as a community with these settings (the demo file's point kinds by default)."""
    from functions import bootstrap

    monkeypatch.setenv("TIMEBANK_ASSETS", json.dumps(DEMO_ASSETS if assets is None else assets))
    monkeypatch.setenv("TIMEBANK_MIN_REDEEM_AGE", str(min_redeem_age))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bootstrap.reset()


def grant(account: str, asset: str, amount: int, transfer_id: str | None = None) -> None:
    """Credits from issuance (what an activity's award or a grant would do)."""
    from functions import bootstrap
    from functions.ledger.accounts import ISSUANCE

    bootstrap.ledger().transfer(transfer_id or f"grant-{account}-{asset}-{amount}", ISSUANCE, account, asset, amount,
                                kind="grant")


def available(account: str, asset: str = "service") -> int:
    from functions import bootstrap

    totals = bootstrap.ledger().balances(account).get(asset)
    return totals.available if totals else 0


def pending(account: str, asset: str = "service") -> int:
    from functions import bootstrap

    totals = bootstrap.ledger().balances(account).get(asset)
    return -totals.pending if totals else 0


def ledger_ok() -> None:
    from functions import bootstrap

    report = bootstrap.ledger().check()
    assert report["ok"], report["violations"]


def create_merchant(client: Any, owner: str = "shop-owner", name: str = "社区便民超市",
                    kind: str = "supermarket") -> tuple[dict[str, str], dict[str, Any]]:
    """An admin adds the merchant; returns (the owner's headers, the merchant)."""
    response = client.http.post("/v1/admin/merchants", headers=admin_headers(client),
                                body=as_json({"name": name, "kind": kind, "owner_openid": owner}))
    assert response.status_code in (200, 201), response.body
    return login(client, owner), response.json_body


def add_item(client: Any, merchant_headers: dict[str, str], key: str | None = None, **changes: Any) -> dict[str, Any]:
    response = client.http.post("/v1/merchant/items", headers=json_headers(merchant_headers, key),
                                body=as_json({**ITEM, **changes}))
    assert response.status_code == 201, response.body
    return response.json_body


def redeem(client: Any, headers: dict[str, str], item_id: str, key: str = "r-1", **body: Any) -> Any:
    return client.http.post(f"/v1/rewards/items/{item_id}/redeem", headers=json_headers(headers, key),
                            body=as_json(body))


def redeem_code(client: Any, merchant_headers: dict[str, str], code: str) -> Any:
    return client.http.post("/v1/merchant/vouchers/redeem", headers=merchant_headers, body=as_json({"code": code}))
