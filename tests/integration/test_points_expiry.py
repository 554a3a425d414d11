"""Expiry of points "N days after they were earned": each posted credit of an expiring asset
fills the bucket of its expiry day in the same transaction; the daily schedule reads that one
day's partition and moves min(bucket, available) back to issuance, once, with a transfer id of
(account, asset, day) — never editing a balance, never taking back what was spent."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from functions import bootstrap
from functions.core import clock
from functions.core.clock import CHINA_TZ
from functions.ledger.accounts import ISSUANCE, POOL, household_account, merchant_account, resident_account
from functions.ledger.model import CommitHooks, SimulatedCrash
from tests.property.ledger_support import CrashOnce
from tests.rewards_helpers import available, grant, ledger_ok, use_community

DAY0 = datetime(2026, 1, 10, 9, 0, tzinfo=CHINA_TZ)
ASSETS = {"green": {"expires_after_days": 30}}
HH = household_account("hh_a")
ALICE = resident_account("res_a")


@pytest.fixture
def world(aws, monkeypatch):
    use_community(monkeypatch, assets=ASSETS)
    now = {"at": DAY0}
    clock.set_clock(lambda: now["at"])
    yield now
    clock.set_clock(None)


SAMPLE = json.loads((Path(__file__).resolve().parents[2] / "events" / "expire-points.json").read_text())


def run_schedule(app):
    return app.handler_map["expire-points"](SAMPLE, None)


def test_credits_expire_after_n_days_and_only_what_is_left_goes_back(app, world):
    grant(HH, "green", 100, "g1")
    grant(HH, "service", 100, "s1")           # service does not expire
    world["at"] = DAY0 + timedelta(days=3)
    grant(HH, "green", 40, "g2")               # a later bucket
    ledger = bootstrap.ledger()
    ledger.transfer("spend", HH, POOL, "green", 70)   # spent: not taken back
    assert [(c.account, c.amount) for c in ledger.expiring("2026-02-09")] == [(HH, 100)]
    assert [(c.account, c.amount) for c in ledger.expiring("2026-02-12")] == [(HH, 40)]

    world["at"] = DAY0 + timedelta(days=29)
    assert run_schedule(app)["expired"] == 0       # nothing expires the day before
    world["at"] = datetime(2026, 2, 9, 0, 10, tzinfo=CHINA_TZ)
    result = run_schedule(app)
    assert result == {"day": "2026-02-09", "buckets": 1, "closed": 1, "expired": 70}  # min(100, 70 available)
    assert available(HH, "green") == 0 and available(HH, "service") == 100
    (credit,) = ledger.expiring("2026-02-09")
    assert (credit.expired_amount, credit.expired_by) == (70, ledger.expiry_transfer_id(credit))
    expiry = ledger.get_transfer(credit.expired_by)
    assert (expiry.debit_account, expiry.credit_account, expiry.kind, expiry.amount) == (HH, ISSUANCE, "expiry", 70)
    assert run_schedule(app)["expired"] == 0       # a rerun takes nothing more
    world["at"] = datetime(2026, 2, 12, 0, 10, tzinfo=CHINA_TZ)
    assert run_schedule(app)["expired"] == 0       # the later bucket finds nothing left
    ledger_ok()


def test_only_peoples_posted_credits_fill_buckets(app, world):
    ledger = bootstrap.ledger()
    grant(ALICE, "green", 50, "g-alice")
    grant(merchant_account("m1"), "green", 50, "g-merchant")
    ledger.hold("h", ALICE, merchant_account("m1"), "green", 20)   # a hold credits nothing posted
    ledger.post_pending("p", "h")                                   # the merchant's credit: no bucket
    ledger.transfer("gift", ALICE, HH, "green", 10)                 # a receipt is earned anew
    buckets = {(c.account, c.amount) for c in ledger.expiring("2026-02-09")}
    assert buckets == {(ALICE, 50), (HH, 10)}
    ledger_ok()


def test_a_crash_after_the_expiry_commit_is_completed_by_the_next_run_without_a_second_transfer(app, world):
    grant(HH, "green", 100, "g1")
    world["at"] = datetime(2026, 2, 9, 0, 10, tzinfo=CHINA_TZ)
    ledger = bootstrap.ledger()
    ledger.store.hooks = CrashOnce("after")
    with pytest.raises(SimulatedCrash):
        run_schedule(app)
    ledger.store.hooks = CommitHooks()
    assert run_schedule(app) == {"day": "2026-02-09", "buckets": 1, "closed": 0, "expired": 0}
    assert available(HH, "green") == 0
    transfers = [t for t in ledger.store.scan_transfers() if t.kind == "expiry"]
    assert len(transfers) == 1
    ledger_ok()


def test_a_crash_before_the_commit_changes_nothing_and_the_rerun_expires(app, world):
    grant(HH, "green", 100, "g1")
    world["at"] = datetime(2026, 2, 9, 0, 10, tzinfo=CHINA_TZ)
    ledger = bootstrap.ledger()
    ledger.store.hooks = CrashOnce("before")
    with pytest.raises(SimulatedCrash):
        run_schedule(app)
    assert available(HH, "green") == 100
    assert run_schedule(app)["expired"] == 100
    ledger_ok()


def test_the_schedule_reads_one_partition_never_a_scan(app, world):
    from bench.ddb_counter import counting_dynamodb, forget_cached_clients

    grant(HH, "green", 100, "g1")
    grant(ALICE, "green", 30, "g2")
    world["at"] = datetime(2026, 2, 9, 0, 10, tzinfo=CHINA_TZ)
    with counting_dynamodb() as counter:
        forget_cached_clients()
        with counter.measure() as spent:
            assert run_schedule(app)["expired"] == 130
    assert "Scan" not in spent.calls
    # one Query of the day; per bucket one balance read and one transaction
    assert spent.calls["Query"] == 1 and spent.calls["TransactWriteItems"] == 2
    ledger_ok()
