"""志愿汇 exchange faults: whatever the partner answers, however often and whenever, and
wherever our consumer dies, the credits are never lost or doubled: the hold resolves once,
late answers are recorded for reconciliation, and a redelivery never makes the partner do a
second exchange (our exchange id is its idempotency key)."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from functions import bootstrap
from functions.core import clock
from functions.core.caller import Caller
from functions.core.clock import CHINA_TZ
from functions.core.ids import derived_id
from functions.ledger.accounts import clearing_account, household_account
from functions.ledger.model import CommitHooks
from functions.rewards.model import PartnerAnswer
from tests.helpers import verified_resident
from tests.property.ledger_support import CrashOnce
from tests.queues import drain
from tests.rewards_helpers import available, grant, ledger_ok, pending, use_community

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=CHINA_TZ)
CLEARING = clearing_account("zyh")


@pytest.fixture
def world(client, app, monkeypatch):
    use_community(monkeypatch)
    now = {"at": NOW}
    clock.set_clock(lambda: now["at"])
    _, resident = verified_resident(client, "alice", building="1", unit="1", room="101")
    caller = Caller(openid="alice", resident_id=resident["id"], household_id=resident["household_id"],
                    status="verified", roles=frozenset({"resident"}))
    household = household_account(resident["household_id"])
    grant(household, "volunteer", 200)
    yield {"app": app, "now": now, "caller": caller, "household": household,
           "service": bootstrap.exchanges(), "partner": bootstrap.zyh_partner()}
    bootstrap.ledger().store.hooks = CommitHooks()
    clock.set_clock(None)


def ask(world, user="zyh-10086", key="zx-1", amount=60):
    return world["service"].request(world["caller"], "volunteer", amount, user, False, key)


def settled_once(world, exchange_id, status):
    """The credits left the household exactly once (confirmed) or came back (failed)."""
    household = world["household"]
    exchange = bootstrap.rewards_store().get_exchange(exchange_id)
    assert exchange.status == status
    assert pending(household, "volunteer") == 0
    posted = bootstrap.ledger().balances(CLEARING).get("volunteer")
    if status == "confirmed":
        assert available(household, "volunteer") == 140 and posted.credits_posted == 60
    else:
        assert available(household, "volunteer") == 200 and (posted is None or posted.credits_posted == 0)
    ledger_ok()


def test_the_partner_confirms_twice(world):
    exchange = ask(world)
    drain(world["app"], "zyh-exchanges")
    answer = world["partner"].credit(exchange)
    assert world["service"].apply_answer(answer) == "duplicate"
    assert world["service"].apply_answer(answer) == "duplicate"
    settled_once(world, exchange.id, "confirmed")
    effects = sorted(effect for _, effect in bootstrap.rewards_store().answers(exchange.id))
    assert effects == ["applied", "duplicate", "duplicate"]   # every answer is logged
    assert world["service"].reconcile("2026-12-01")["ok"] is True


def test_the_partner_refuses_after_our_timeout_already_voided_it(world):
    exchange = ask(world, user="timeout-slow")
    drain(world["app"], "zyh-exchanges")
    world["now"]["at"] = NOW + timedelta(minutes=16)
    assert world["service"].expire_due() == 1
    refusal = PartnerAnswer(exchange.id, "refused", None, "账户冻结")
    assert world["service"].apply_answer(refusal) == "late"
    settled_once(world, exchange.id, "failed")
    report = world["service"].reconcile("2026-12-01")
    assert report["ok"] is True  # nothing was credited there: no money mismatch
    assert [(entry["exchange_id"], entry["late_answer"], entry["failure_reason"]) for entry in report["late_answers"]] \
        == [(exchange.id, "refused", "timeout")]


def test_the_partner_accepts_after_our_timeout_voided_it(world):
    exchange = ask(world, user="timeout-slow")
    drain(world["app"], "zyh-exchanges")
    world["now"]["at"] = NOW + timedelta(minutes=16)
    world["service"].expire_due()
    late = world["partner"].credit(exchange)
    assert world["service"].apply_answer(late) == "late"
    assert world["service"].apply_answer(late) == "late"  # never applied, however often
    settled_once(world, exchange.id, "failed")
    report = world["service"].reconcile("2026-12-01")
    assert report["ok"] is False
    assert [(m["kind"], m["exchange_id"], m["late_answer"]) for m in report["mismatches"]] == \
        [("missing_here", exchange.id, "accepted")]


def test_the_partner_answers_before_our_record_is_written(world):
    exchange_id = derived_id("zx", world["caller"].resident_id, "zx-early")
    early = PartnerAnswer(exchange_id, "accepted", "zyh-early-1")
    assert world["service"].apply_answer(early) == "early"
    assert available(world["household"], "volunteer") == 200   # nothing moved for an unknown exchange
    exchange = ask(world, key="zx-early")
    assert exchange.id == exchange_id
    drain(world["app"], "zyh-exchanges")
    assert world["partner"].calls == []   # the early answer was applied: the partner was not asked again
    settled_once(world, exchange.id, "confirmed")
    assert bootstrap.rewards_store().get_exchange(exchange.id).partner_ref == "zyh-early-1"


def test_the_consumer_dies_after_the_partner_accepted_before_we_posted(world):
    exchange = ask(world)
    bootstrap.ledger().store.hooks = CrashOnce("before")   # the post's commit never happens, once
    assert drain(world["app"], "zyh-exchanges") == 2       # the failed delivery, then the redelivery
    partner = world["partner"]
    assert partner.calls == [exchange.id, exchange.id]     # asked again, with the same idempotency key...
    assert list(partner.credited) == [exchange.id]         # ...so there is one exchange at the partner
    settled_once(world, exchange.id, "confirmed")
    assert world["service"].reconcile("2026-12-01")["ok"] is True


def test_the_consumer_dies_after_we_posted(world):
    exchange = ask(world)
    bootstrap.ledger().store.hooks = CrashOnce("after")    # posted, but the handler sees a crash
    assert drain(world["app"], "zyh-exchanges") == 2
    assert world["partner"].calls == [exchange.id]         # the redelivery found it resolved
    settled_once(world, exchange.id, "confirmed")


def test_a_redelivered_request_event_after_the_answer_changes_nothing(world):
    from functions.adapters.outbox import pending_events
    from functions.rewards.model import exchange_requested

    exchange = ask(world)
    drain(world["app"], "zyh-exchanges")
    assert pending_events() == []
    assert world["service"].process(exchange_requested(exchange)) == "resolved"
    settled_once(world, exchange.id, "confirmed")


def test_an_answer_racing_the_timeout_resolves_the_hold_once(world):
    exchange = ask(world, user="timeout-slow")
    drain(world["app"], "zyh-exchanges")
    world["now"]["at"] = NOW + timedelta(minutes=16)
    stale = bootstrap.rewards_store().get_exchange(exchange.id)
    answer = world["partner"].credit(exchange)
    # The timeout voids it between the answer's read and its commit.
    real_get = bootstrap.rewards_store().get_exchange
    calls = {"n": 0}

    def get_exchange(exchange_id):
        calls["n"] += 1
        if calls["n"] == 1:
            world["service"].expire_due()
            return stale
        return real_get(exchange_id)

    world["service"].store.get_exchange = get_exchange
    try:
        assert world["service"].apply_answer(answer) == "late"
    finally:
        del world["service"].store.get_exchange
    settled_once(world, exchange.id, "failed")
