"""Concurrency of vouchers: 20 residents redeem the last 5 units at once; 10 核销 of one code at
once.

moto is not thread-safe, so every botocore call is serialized by one lock. That alone would
let the threads run one after another, so a barrier in the ledger's commit hook forces the
interleaving under test: every thread has read the item (stock left), the voucher, the hold —
decided it may go ahead — before any of them commits. Only the conditional writes of the one
transaction stand between them and an oversell or a second 核销.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import botocore.client
import pytest

from functions import bootstrap
from functions.core.caller import Caller
from functions.core.errors import TimebankError
from functions.ledger.accounts import household_account
from functions.ledger.model import CommitHooks
from functions.rewards.model import AlreadyRedeemed, OutOfStock
from tests.helpers import verified_resident
from tests.property.ledger_support import BarrierHooks
from tests.rewards_helpers import add_item, create_merchant, ledger_ok, pending, use_community

PRICE = 30


@pytest.fixture
def serialized_moto(monkeypatch):
    lock = threading.RLock()
    real = botocore.client.BaseClient._make_api_call

    def one_at_a_time(self, operation, params):
        with lock:
            return real(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", one_at_a_time)


def caller_of(openid, resident):
    return Caller(openid=openid, resident_id=resident["id"], household_id=resident["household_id"],
                  status="verified", roles=frozenset({"resident"}))


def race(attempts):
    """Run the callables at once, all planned before any commits; (results, errors) in order."""
    store = bootstrap.ledger().store
    store.hooks = BarrierHooks(len(attempts))
    try:
        def run(attempt):
            try:
                return attempt(), None
            except TimebankError as error:
                return None, error

        with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
            outcomes = list(pool.map(run, attempts))
    finally:
        store.hooks = CommitHooks()
    return [r for r, _ in outcomes], [e for _, e in outcomes]


def test_twenty_residents_redeem_the_last_five_units_at_once(client, monkeypatch, serialized_moto):
    use_community(monkeypatch)
    shop_h, shop = create_merchant(client)
    item = add_item(client, shop_h, stock=5, price=PRICE, per_person_limit=1)
    people = [(f"r{i}", verified_resident(client, f"r{i}", building=str(i), unit="1", room="101")[1])
              for i in range(20)]
    service = bootstrap.merchants()
    attempts = [lambda o=openid, r=resident: service.redeem(caller_of(o, r), item["id"], False, "last-units")
                for openid, resident in people]
    results, errors = race(attempts)
    vouchers = [r for r in results if r is not None]
    assert len(vouchers) == 5 and len({v.code for v in vouchers}) == 5
    assert len([e for e in errors if isinstance(e, OutOfStock)]) == 15 and errors.count(None) == 5
    stored = bootstrap.rewards_store().get_item(item["id"])
    assert (stored.stock_left, stored.outstanding) == (0, 5)
    merchant = bootstrap.ledger().balances(shop["account_id"])["service"]
    assert merchant.credits_pending == 5 * PRICE
    assert sum(pending(household_account(r["household_id"])) for _, r in people) == 5 * PRICE
    ledger_ok()


def test_ten_concurrent_redemptions_of_one_code_redeem_it_once(client, monkeypatch, serialized_moto):
    use_community(monkeypatch)
    shop_h, shop = create_merchant(client)
    item = add_item(client, shop_h, price=PRICE)
    _, alice = verified_resident(client, "alice")
    voucher = bootstrap.merchants().redeem(caller_of("alice", alice), item["id"], False, "one")
    merchant_caller = Caller(openid="shop-owner", roles=frozenset({"merchant"}))
    service = bootstrap.merchants()
    results, errors = race([lambda: service.redeem_code(merchant_caller, voucher.code) for _ in range(10)])
    assert len([r for r in results if r is not None]) == 1
    assert len([e for e in errors if isinstance(e, AlreadyRedeemed)]) == 9
    balance = bootstrap.ledger().balances(shop["account_id"])["service"]
    assert (balance.credits_posted, balance.credits_pending) == (PRICE, 0)
    stored = bootstrap.rewards_store().get_item(item["id"])
    assert (stored.outstanding, stored.redeemed) == (0, 1)
    ledger_ok()


def test_the_race_is_real_without_the_stock_condition_the_same_race_oversells(client, monkeypatch, serialized_moto):
    """Guards the test itself: with the stock condition stripped, the forced interleaving lets
    every thread take a unit — so the test above passes because of the condition."""
    from functions.rewards.dynamo import CatalogueEntryItem, Write

    use_community(monkeypatch)
    shop_h, _ = create_merchant(client)
    item = add_item(client, shop_h, stock=2, price=PRICE, per_person_limit=1)
    people = [(f"g{i}", verified_resident(client, f"g{i}", building=str(i), unit="2", room="101")[1])
              for i in range(4)]
    store = bootstrap.rewards_store()
    monkeypatch.setattr(store, "take_unit", lambda item_id: Write(lambda tx: tx.update(
        CatalogueEntryItem(item_id), actions=[CatalogueEntryItem.stock_left.add(-1),
                                              CatalogueEntryItem.outstanding.add(1)])))
    service = bootstrap.merchants()
    results, errors = race([lambda o=o, r=r: service.redeem(caller_of(o, r), item["id"], False, "k")
                            for o, r in people])
    assert errors == [None] * 4
    assert store.get_item(item["id"]).stock_left == -2
