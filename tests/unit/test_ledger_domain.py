"""The ledger's rules on the in-memory store: every operation and every refusal.

Each refusal also asserts that nothing changed (no transfer stored, no balance moved).
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from functions.core import clock
from functions.core.errors import (Conflict, IdempotencyMismatch, InsufficientCredits, InvalidState, LimitExceeded,
                                   NotFound, ValidationError)
from functions.core.validation import MAX_AMOUNT_MINUTES
from functions.ledger.accounts import (ESCROW, ISSUANCE, POOL, clearing_account, household_account,
                                       merchant_account, physical_id, resident_account, shard_for)
from functions.ledger.views import transfer_view
from functions.ledger.service import MAX_BATCH, Ledger
from functions.ledger.model import (CommitHooks, CommitRejected, Hold, PostPending, Reverse, SimulatedCrash,
                                    Transfer, VoidPending, point_kinds_from)
from tests.fakes.ledger import InMemoryLedgerStore
from tests.property.ledger_support import CrashOnce, FakeForeignWrite

HH = household_account("hh_a")
HH2 = household_account("hh_b")
ALICE = resident_account("res_alice")
BOB = resident_account("res_bob")
T0 = datetime(2026, 12, 1, 8, 30, tzinfo=clock.CHINA_TZ)


@pytest.fixture(autouse=True)
def pinned_clock():
    moments = iter(T0 + timedelta(seconds=i) for i in range(100_000))
    clock.set_clock(lambda: next(moments))
    yield
    clock.set_clock(None)


@pytest.fixture
def store():
    return InMemoryLedgerStore()


@pytest.fixture
def ledger(store):
    return Ledger(store, shards=4)


def fund(ledger, account=HH, amount=300, transfer_id="fund"):
    return ledger.transfer(transfer_id, ISSUANCE, account, "service", amount, kind="starting_credits")


def snapshot(store):
    return dict(store.transfers), dict(store.balances)


def available(ledger, account, asset="service"):
    totals = ledger.balances(account).get(asset)
    return totals.available if totals else 0


# --- transfers ------------------------------------------------------------------------------------

def test_transfer_moves_posted_minutes_and_records_everything(ledger):
    record = ledger.transfer("t1", ISSUANCE, HH, "service", 300, kind="starting_credits", memo="启动",
                             actor="admin-1", request_id="req_1")
    assert (record.status, record.op, record.kind, record.memo, record.actor, record.request_id) == \
        ("posted", "transfer", "starting_credits", "启动", "admin-1", "req_1")
    assert record.created_at == "2026-12-01T08:30:00+08:00"
    household = ledger.balances(HH)["service"]
    assert (household.credits_posted, household.debits_posted, household.available, household.posted) == \
        (300, 0, 300, 300)
    assert ledger.balances(ISSUANCE)["service"].available == -300
    assert ledger.check()["ok"]


def test_replay_with_same_content_returns_the_original_and_applies_once(ledger, store):
    first = fund(ledger)
    again = fund(ledger)
    assert again == first  # same created_at although the clock moved on
    assert store.commits == 1
    assert available(ledger, HH) == 300


@pytest.mark.parametrize("changes", [
    {"amount": 301}, {"credit": HH2}, {"asset": "volunteer"}, {"kind": "grant"}, {"memo": "other"},
    {"request_id": "req_9"},
])
def test_replay_with_other_content_is_a_mismatch_forever(ledger, store, changes):
    fund(ledger)
    before = snapshot(store)
    args = dict(transfer_id="fund", debit=ISSUANCE, credit=HH, asset="service", amount=300, kind="starting_credits")
    args.update(changes)
    with pytest.raises(IdempotencyMismatch) as caught:
        ledger.transfer(**args)
    assert caught.value.status == 409 and caught.value.details == {"transfer_id": "fund"}
    assert snapshot(store) == before


def test_an_id_used_by_one_operation_cannot_be_reused_by_another(ledger, store):
    fund(ledger)
    ledger.hold("h1", HH, ESCROW, "service", 50)
    before = snapshot(store)
    with pytest.raises(IdempotencyMismatch):
        ledger.transfer("h1", HH, ESCROW, "service", 50, kind="hold")
    with pytest.raises(IdempotencyMismatch):
        ledger.void_pending("fund", "h1")
    assert snapshot(store) == before


def test_actor_is_not_content_a_retry_by_another_actor_is_the_same_transfer(ledger):
    first = ledger.transfer("t", ISSUANCE, HH, "service", 5, actor="admin-1")
    assert ledger.transfer("t", ISSUANCE, HH, "service", 5, actor="scheduler") == first


@pytest.mark.parametrize("field,value", [
    ("amount", 0), ("amount", -5), ("amount", MAX_AMOUNT_MINUTES + 1), ("amount", True), ("amount", 1.0),
    ("amount", "10"), ("amount", None),
    ("asset", "gold"), ("asset", ""), ("asset", None),
    ("debit", "nobody"), ("debit", "resident:"), ("debit", "resident:a b"), ("debit", None), ("debit", "pool#3"),
    ("credit", "household:hh/../x"), ("credit", 42), ("credit", ISSUANCE + ":x"),
    ("transfer_id", ""), ("transfer_id", "has space"), ("transfer_id", "x" * 201), ("transfer_id", None),
    ("memo", "长" * 201), ("memo", "nul\x00"), ("memo", 5),
    ("kind", "Bad Kind"), ("kind", ""), ("kind", "k" * 41),
    ("actor", 7), ("request_id", "r" * 201),
])
def test_bad_input_is_a_validation_error_and_changes_nothing(ledger, store, field, value):
    fund(ledger)
    before = snapshot(store)
    args = dict(transfer_id="t", debit=HH, credit=HH2, asset="service", amount=10)
    args[field] = value
    with pytest.raises(ValidationError):
        ledger.transfer(**args)
    assert snapshot(store) == before


def test_debit_and_credit_must_differ(ledger, store):
    fund(ledger)
    before = snapshot(store)
    with pytest.raises(ValidationError) as caught:
        ledger.transfer("t", HH, HH, "service", 10)
    assert "credit" in caught.value.details["fields"]
    assert snapshot(store) == before


def test_reputation_is_not_an_asset_and_assets_come_from_the_point_kinds(store):
    """Reputation is a score on the resident (API.md), never a ledger asset; the ledger's asset
    rules are the community's point kinds."""
    kinds = point_kinds_from({"green": {"expires_after_days": 30, "convert_to": {"service": {"rate_num": 1, "rate_den": 10}}}})
    ledger = Ledger(store, shards=4, point_kinds=kinds)
    assert set(ledger.point_kinds) == {"service", "volunteer", "skill", "green", "welfare", "contribution"}
    assert ledger.point_kind("green").rate_to("service") == (1, 10)
    assert ledger.point_kind("green").expires_after_days == 30
    before = snapshot(store)
    with pytest.raises(ValidationError) as caught:
        ledger.transfer("rep", ISSUANCE, ALICE, "reputation", 10, kind="grant")
    assert "asset" in caught.value.details["fields"]
    assert snapshot(store) == before


def test_point_kinds_from_config_names_every_bad_field():
    with pytest.raises(ValidationError) as caught:
        point_kinds_from({"reputation": {}, "green": {"unit": "kg", "expires_after_days": -1,
                                                       "convert_to": {"green": {"rate_num": 1, "rate_den": 1},
                                                                      "service": {"rate_num": 0, "rate_den": 10}}},
                          "skill": {"colour": "red"}})
    assert set(caught.value.details["fields"]) == {
        "assets.reputation", "assets.green.unit", "assets.green.expires_after_days", "assets.green.convert_to.green",
        "assets.green.convert_to.service.rate_num", "assets.skill.colour"}


def test_spending_more_than_available_is_refused_and_exact_balance_is_allowed(ledger, store):
    fund(ledger, amount=100)
    before = snapshot(store)
    with pytest.raises(InsufficientCredits) as caught:
        ledger.transfer("t", HH, HH2, "service", 101)
    assert caught.value.status == 422
    assert caught.value.details == {"account": HH, "asset": "service"}
    assert snapshot(store) == before
    ledger.transfer("t", HH, HH2, "service", 100)
    assert available(ledger, HH) == 0


def test_an_account_never_funded_cannot_spend(ledger, store):
    with pytest.raises(InsufficientCredits):
        ledger.transfer("t", ALICE, BOB, "service", 1)
    assert snapshot(store) == ({}, {})


def test_issuance_and_clearing_accounts_may_go_negative(ledger):
    ledger.transfer("a", ISSUANCE, HH, "service", MAX_AMOUNT_MINUTES)
    ledger.transfer("b", ISSUANCE, HH, "service", MAX_AMOUNT_MINUTES)
    ledger.transfer("c", clearing_account("xihu"), ALICE, "service", 120, kind="clearing_in")
    assert ledger.balances(ISSUANCE)["service"].available == -2 * MAX_AMOUNT_MINUTES
    assert ledger.balances(clearing_account("xihu"))["service"].available == -120
    assert ledger.check()["ok"]


def test_merchant_accounts_are_limited(ledger):
    with pytest.raises(InsufficientCredits):
        ledger.transfer("m", merchant_account("m_1"), ALICE, "service", 1)


def test_assets_are_separate_balances(ledger):
    fund(ledger, amount=100)
    with pytest.raises(InsufficientCredits):
        ledger.transfer("t", HH, HH2, "volunteer", 1)


# --- holds ----------------------------------------------------------------------------------------

def test_a_hold_reserves_without_posting(ledger):
    fund(ledger, amount=100)
    hold = ledger.hold("h", HH, ESCROW, "service", 70, request_id="req_1")
    assert (hold.status, hold.op, hold.kind, hold.request_id) == ("pending", "pending", "hold", "req_1")
    totals = ledger.balances(HH)["service"]
    assert (totals.available, totals.posted, totals.debits_pending, totals.pending) == (30, 100, 70, -70)
    escrow = ledger.balances(ESCROW)["service"]
    assert (escrow.credits_pending, escrow.available) == (70, 0)
    with pytest.raises(InsufficientCredits):
        ledger.transfer("t", HH, HH2, "service", 31)
    assert ledger.check()["ok"]


def test_a_hold_beyond_available_is_refused(ledger, store):
    fund(ledger, amount=100)
    ledger.hold("h1", HH, ESCROW, "service", 60)
    before = snapshot(store)
    with pytest.raises(InsufficientCredits):
        ledger.hold("h2", HH, ESCROW, "service", 41)
    assert snapshot(store) == before


def test_posting_a_hold_in_full(ledger, store):
    fund(ledger, amount=100)
    ledger.hold("h", HH, ESCROW, "service", 70)
    post = ledger.post_pending("p", "h", actor="res_alice")
    assert (post.amount, post.status, post.op, post.pending_id, post.kind) == (70, "posted", "post_pending", "h",
                                                                              "settlement")
    held = store.transfers["h"]
    assert (held.status, held.resolved_by, held.posted_amount) == ("posted", "p", 70)
    totals = ledger.balances(HH)["service"]
    assert (totals.available, totals.posted, totals.debits_pending) == (30, 30, 0)
    assert ledger.balances(ESCROW)["service"].available == 70
    assert ledger.check()["ok"]


def test_posting_part_of_a_hold_releases_the_rest(ledger):
    fund(ledger, amount=100)
    ledger.hold("h", HH, ESCROW, "service", 70)
    ledger.post_pending("p", "h", amount=45)
    totals = ledger.balances(HH)["service"]
    assert (totals.available, totals.posted, totals.debits_pending) == (55, 55, 0)
    assert ledger.check()["ok"]


@pytest.mark.parametrize("amount", [0, -1, 71, True, 2.5])
def test_posting_a_bad_amount_is_refused(ledger, store, amount):
    fund(ledger, amount=100)
    ledger.hold("h", HH, ESCROW, "service", 70)
    before = snapshot(store)
    with pytest.raises(ValidationError):
        ledger.post_pending("p", "h", amount=amount)
    assert snapshot(store) == before


def test_a_hold_resolves_exactly_once(ledger, store):
    fund(ledger, amount=100)
    ledger.hold("h", HH, ESCROW, "service", 70)
    ledger.post_pending("p", "h", amount=10)
    before = snapshot(store)
    with pytest.raises(InvalidState):
        ledger.post_pending("p2", "h")
    with pytest.raises(InvalidState):
        ledger.void_pending("v", "h")
    assert snapshot(store) == before
    ledger.hold("h2", HH, ESCROW, "service", 20)
    ledger.void_pending("v2", "h2")
    with pytest.raises(InvalidState):
        ledger.post_pending("p3", "h2")


def test_resolving_what_is_not_a_hold(ledger, store):
    fund(ledger)
    before = snapshot(store)
    with pytest.raises(NotFound):
        ledger.post_pending("p", "nope")
    with pytest.raises(NotFound):
        ledger.void_pending("v", "fund")  # a posted transfer is not a hold
    assert snapshot(store) == before


def test_voiding_releases_the_hold(ledger, store):
    fund(ledger, amount=100)
    ledger.hold("h", HH, ESCROW, "service", 70)
    void = ledger.void_pending("v", "h", actor="scheduler", reason="expired")
    assert (void.status, void.amount, void.op, void.kind, void.memo) == ("voided", 70, "void_pending", "release",
                                                                         "expired")
    assert store.transfers["h"].status == "voided"
    assert available(ledger, HH) == 100
    assert ledger.void_pending("v", "h", actor="scheduler", reason="expired") == void  # replay
    assert ledger.check()["ok"]


def test_a_post_replayed_after_it_resolved_the_hold_returns_the_original(ledger, store):
    fund(ledger, amount=100)
    ledger.hold("h", HH, ESCROW, "service", 70)
    post = ledger.post_pending("p", "h", amount=30)
    assert ledger.post_pending("p", "h", amount=30) == post
    with pytest.raises(IdempotencyMismatch):
        ledger.post_pending("p", "h", amount=31)
    assert available(ledger, HH) == 70


# --- reversals ------------------------------------------------------------------------------------

def test_a_reversal_undoes_a_posted_transfer_once(ledger, store):
    fund(ledger, amount=100)
    ledger.transfer("t", HH, HH2, "service", 40, request_id="req_1")
    reversal = ledger.reverse("r", "t", "wrong household", "admin-1")
    assert (reversal.debit_account, reversal.credit_account, reversal.amount, reversal.reversal_of,
            reversal.reason, reversal.actor, reversal.kind, reversal.request_id) == \
        (HH2, HH, 40, "t", "wrong household", "admin-1", "reversal", "req_1")
    assert store.transfers["t"].reversed_by == "r"
    assert (available(ledger, HH), available(ledger, HH2)) == (100, 0)
    assert ledger.reverse("r", "t", "wrong household", "admin-1") == reversal
    before = snapshot(store)
    with pytest.raises(InvalidState):
        ledger.reverse("r2", "t", "again", "admin-1")
    with pytest.raises(IdempotencyMismatch):
        ledger.reverse("r", "t", "another reason", "admin-1")
    assert snapshot(store) == before
    assert ledger.check()["ok"]


def test_a_reversal_is_itself_reversible_once(ledger):
    fund(ledger, amount=100)
    ledger.transfer("t", HH, HH2, "service", 40)
    ledger.reverse("r", "t", "mistake", "admin-1")
    ledger.reverse("rr", "r", "the reversal was the mistake", "admin-1")
    assert (available(ledger, HH), available(ledger, HH2)) == (60, 40)
    assert ledger.check()["ok"]


def test_a_reversal_cannot_overdraw_the_account_that_received(ledger, store):
    fund(ledger, amount=100)
    ledger.transfer("t", HH, HH2, "service", 40)
    ledger.transfer("spent", HH2, ALICE, "service", 30)
    before = snapshot(store)
    with pytest.raises(InsufficientCredits):
        ledger.reverse("r", "t", "mistake", "admin-1")
    assert snapshot(store) == before


def test_what_cannot_be_reversed(ledger, store):
    fund(ledger, amount=100)
    ledger.hold("h", HH, ESCROW, "service", 10)
    ledger.hold("h2", HH, ESCROW, "service", 10)
    ledger.void_pending("v", "h2")
    before = snapshot(store)
    with pytest.raises(InvalidState):
        ledger.reverse("r", "h", "holds are voided, not reversed", "admin-1")
    with pytest.raises(InvalidState):
        ledger.reverse("r", "v", "voids are final", "admin-1")
    with pytest.raises(NotFound):
        ledger.reverse("r", "missing", "x", "admin-1")
    for reason, actor in (("", "admin-1"), ("   ", "admin-1"), ("why", ""), ("why", None), ("x" * 201, "a")):
        with pytest.raises(ValidationError):
            ledger.reverse("r", "fund", reason, actor)
    assert snapshot(store) == before


# --- linked execution -----------------------------------------------------------------------------

def test_linked_commands_commit_all_or_nothing(ledger, store):
    fund(ledger, amount=100)
    before = snapshot(store)
    with pytest.raises(InsufficientCredits):
        ledger.execute([Transfer("a", HH, HH2, "service", 60), Transfer("b", HH, ALICE, "service", 60)])
    assert snapshot(store) == before
    records = ledger.execute([Transfer("a", HH, HH2, "service", 60), Transfer("b", HH, ALICE, "service", 40)])
    assert [r.linked for r in records] == [("a", "b"), ("a", "b")]
    assert available(ledger, HH) == 0
    assert ledger.check()["ok"]


def test_linked_commands_apply_in_order_a_later_credit_does_not_fund_an_earlier_debit(ledger, store):
    with pytest.raises(InsufficientCredits):
        ledger.execute([Transfer("spend", ALICE, BOB, "service", 50), Transfer("earn", ISSUANCE, ALICE, "service", 50)])
    assert snapshot(store) == ({}, {})
    ledger.execute([Transfer("earn", ISSUANCE, ALICE, "service", 50), Transfer("spend", ALICE, BOB, "service", 50)])
    assert (available(ledger, ALICE), available(ledger, BOB)) == (0, 50)


def test_a_batch_replay_must_match_the_whole_batch(ledger, store):
    fund(ledger, amount=100)
    batch = [Transfer("a", HH, HH2, "service", 10), Transfer("b", HH, ALICE, "service", 10)]
    first = ledger.execute(batch)
    assert ledger.execute(batch) == first
    with pytest.raises(IdempotencyMismatch):
        ledger.execute(batch[:1])          # "a" was committed as part of a batch
    with pytest.raises(IdempotencyMismatch):
        ledger.execute(batch + [Transfer("c", HH, BOB, "service", 10)])
    assert available(ledger, HH) == 80


@pytest.mark.parametrize("commands", [
    [],
    [Transfer("a", HH, HH2, "service", 1), Transfer("a", HH, HH2, "service", 1)],
    [Hold("h", HH, ESCROW, "service", 1), PostPending("p", "h")],
    [Transfer("a", HH, HH2, "service", 1), Reverse("r", "a", "x", "admin")],
    [PostPending("p", "h0"), VoidPending("v", "h0")],
    [Transfer(f"t{i}", HH, HH2, "service", 1) for i in range(MAX_BATCH + 1)],
    ["not a command"],
])
def test_malformed_batches_are_refused(ledger, store, commands):
    fund(ledger, amount=100)
    ledger.hold("h0", HH, ESCROW, "service", 10)
    before = snapshot(store)
    with pytest.raises(ValidationError):
        ledger.execute(commands)
    assert snapshot(store) == before


def test_foreign_writes_join_the_transaction(ledger, store):
    fund(ledger, amount=100)
    ok = FakeForeignWrite(holds=True)
    ledger.transfer("t", HH, HH2, "service", 10, also=[ok])
    assert ok.applied == 1
    before = snapshot(store)
    failing = FakeForeignWrite(holds=False)
    with pytest.raises(InvalidState):
        ledger.transfer("t2", HH, HH2, "service", 10, also=[ok, failing])
    assert snapshot(store) == before and ok.applied == 1
    only = FakeForeignWrite()
    assert ledger.execute([], also=[only]) == [] and only.applied == 1
    with pytest.raises(InvalidState):
        ledger.execute([], also=[FakeForeignWrite(holds=False)])


def test_a_store_that_cannot_say_why_gives_a_conflict(ledger, store):
    class Opaque(InMemoryLedgerStore):
        def commit(self, plan):
            raise CommitRejected([], "cancelled for an unknown reason")

    opaque = Ledger(Opaque(), shards=4)
    with pytest.raises(Conflict) as caught:
        opaque.transfer("t", ISSUANCE, HH, "service", 1)
    assert caught.value.code == "CONFLICT"


# --- settlement -----------------------------------------------------------------------------------

def test_settle_hold_posts_and_pays_out_from_the_same_escrow_shard(ledger, store):
    fund(ledger, amount=100)
    hold = ledger.hold("h", HH, ESCROW, "service", 90, request_id="req_1")
    write = FakeForeignWrite()
    post, pay = ledger.settle_hold("s", "h", ALICE, 60, also=[write], actor="res_bob")
    assert (post.id, post.amount, post.linked) == ("s.post", 60, ("s.post", "s.pay"))
    assert (pay.id, pay.debit_account, pay.credit_account, pay.amount, pay.request_id) == \
        ("s.pay", ESCROW, ALICE, 60, "req_1")
    assert pay.debit_shard == hold.credit_shard
    assert write.applied == 1
    assert (available(ledger, HH), available(ledger, ALICE)) == (40, 60)
    escrow_item = store.balances[(physical_id(ESCROW, hold.credit_shard), "service")]
    assert (escrow_item.credits_posted, escrow_item.debits_posted, escrow_item.credits_pending, escrow_item.available) \
        == (60, 60, 0, 0)
    assert ledger.settle_hold("s", "h", ALICE, 60, also=[write]) == [post, pay]  # replay
    assert write.applied == 1
    assert ledger.check()["ok"]


def test_settle_hold_at_zero_minutes_releases_the_hold(ledger):
    fund(ledger, amount=100)
    ledger.hold("h", HH, ESCROW, "service", 90)
    (void,) = ledger.settle_hold("s", "h", ALICE, 0)
    assert (void.id, void.status) == ("s.void", "voided")
    assert available(ledger, HH) == 100


def test_settle_hold_refusals_change_nothing(ledger, store):
    fund(ledger, amount=100)
    ledger.hold("h", HH, ESCROW, "service", 50)
    ledger.hold("to-pool", HH, POOL, "service", 10)
    before = snapshot(store)
    with pytest.raises(NotFound):
        ledger.settle_hold("s", "missing", ALICE, 10)
    with pytest.raises(InvalidState):
        ledger.settle_hold("s", "to-pool", ALICE, 10)
    with pytest.raises(ValidationError):
        ledger.settle_hold("s", "h", ALICE, 51)
    for amount in (-1, True, None):
        with pytest.raises(ValidationError):
            ledger.settle_hold("s", "h", ALICE, amount)
    with pytest.raises(ValidationError):
        ledger.settle_hold("s", "h", "nobody", 10)
    with pytest.raises(InvalidState):
        ledger.settle_hold("s", "h", ALICE, 10, also=[FakeForeignWrite(holds=False)])
    assert snapshot(store) == before
    ledger.void_pending("v", "h")
    with pytest.raises(InvalidState):
        ledger.settle_hold("s", "h", ALICE, 10)


def test_escrow_cannot_be_spent_outside_a_settlement(ledger):
    fund(ledger, amount=100)
    ledger.hold("h", HH, ESCROW, "service", 50)
    with pytest.raises(InsufficientCredits):
        ledger.transfer("steal", ESCROW, ALICE, "service", 1)


# --- the pool and sharding ------------------------------------------------------------------------

def test_donations_spread_over_pool_shards_and_balances_sum_them(ledger, store):
    fund(ledger, amount=1000)
    for i in range(12):
        ledger.transfer(f"d{i}", HH, POOL, "service", 10, kind="donation")
    shards = {store.transfers[f"d{i}"].credit_shard for i in range(12)}
    assert shards == {shard_for(f"d{i}", 4) for i in range(12)} and len(shards) > 1
    assert ledger.balances(POOL)["service"].available == 120
    assert ledger.check()["ok"]


def test_paying_from_the_pool_uses_a_shard_that_holds_enough(ledger, store):
    fund(ledger, amount=1000)
    ledger.transfer("d1", HH, POOL, "service", 100, kind="donation")
    rich = store.transfers["d1"].credit_shard
    # find a grant id whose hash points at another (empty) shard
    grant_id = next(f"g{i}" for i in range(100) if shard_for(f"g{i}", 4) != rich)
    grant = ledger.transfer(grant_id, POOL, ALICE, "service", 80, kind="grant")
    assert grant.debit_shard == rich
    assert available(ledger, ALICE) == 80


def test_a_fragmented_pool_refuses_what_no_single_shard_holds(ledger, store):
    fund(ledger, amount=1000)
    ids = {}
    i = 0
    while len(ids) < 2:
        tid = f"d{i}"
        ids.setdefault(shard_for(tid, 4), tid)
        i += 1
    for tid in ids.values():
        ledger.transfer(tid, HH, POOL, "service", 50, kind="donation")
    before = snapshot(store)
    with pytest.raises(InsufficientCredits) as caught:
        ledger.transfer("big", POOL, ALICE, "service", 60)
    assert caught.value.details["reason"] == "no single shard holds the amount"
    assert snapshot(store) == before


def test_a_pinned_debit_shard_must_exist(ledger):
    with pytest.raises(ValidationError):
        ledger.execute([Transfer("t", ISSUANCE, HH, "service", 1, debit_shard=4)])
    with pytest.raises(ValidationError):
        ledger.execute([Transfer("t", HH, HH2, "service", 1, debit_shard=0)])


# --- household cap --------------------------------------------------------------------------------

def test_a_voluntary_transfer_over_the_household_cap_is_refused():
    """``cap_excess="refuse"`` (POST /v1/transfers): LIMIT_EXCEEDED ``household_cap``, nothing moves."""
    store = InMemoryLedgerStore()
    capped = Ledger(store, shards=4, household_cap=500)
    capped.transfer("f", ISSUANCE, HH, "service", 450)
    capped.transfer("g", ISSUANCE, ALICE, "service", 900)
    before = snapshot(store)
    with pytest.raises(LimitExceeded) as caught:
        capped.transfer("over", ALICE, HH, "service", 51, cap_excess="refuse")
    assert caught.value.details["cap"] == 500 and caught.value.details["limit"] == "household_cap"
    with pytest.raises(LimitExceeded):
        capped.transfer("way-over", ALICE, HH2, "service", 501, cap_excess="refuse")
    assert snapshot(store) == before
    capped.transfer("exact", ALICE, HH, "service", 50, cap_excess="refuse")
    # other assets, personal accounts and releases of one's own holds are not capped
    capped.transfer("vol", ISSUANCE, HH, "volunteer", 900)
    capped.transfer("personal", ISSUANCE, ALICE, "service", 900)
    capped.hold("h", HH, ESCROW, "service", 100)
    capped.transfer("refill", ALICE, HH, "service", 100, cap_excess="refuse")
    capped.void_pending("v", "h")
    assert available(capped, HH) == 500 + 100
    # the release is no violation of the ledger's rules: the check stays ok and lists the household
    report = capped.check()
    assert report["ok"] and report["violations"] == []
    assert report["above_cap"] == [{"account": HH, "asset": "service", "available": 600, "cap": 500}]
    with pytest.raises(ValidationError):
        capped.transfer("bad", ALICE, HH, "service", 1, cap_excess="donate")


def statement_kinds(ledger, account):
    return [(r.kind, r.amount, r.debit_account, r.credit_account) for r in ledger.statement(account, 20).items]


def test_a_credit_over_the_household_cap_is_paid_in_full_and_the_excess_goes_to_the_pool():
    store = InMemoryLedgerStore()
    capped = Ledger(store, shards=4, household_cap=500)
    capped.transfer("f", ISSUANCE, HH, "service", 450)
    record = capped.transfer("over", ISSUANCE, HH, "service", 80, kind="grant", request_id="req_1")
    assert (record.id, record.amount, record.linked) == ("over", 80, ("over", "over.cap"))
    overflow = capped.get_transfer("over.cap")
    assert (overflow.kind, overflow.amount, overflow.debit_account, overflow.credit_account, overflow.request_id,
            overflow.linked) == ("cap_overflow", 30, HH, POOL, "req_1", ("over", "over.cap"))
    assert available(capped, HH) == 500 and capped.balances(POOL)["service"].available == 30
    assert statement_kinds(capped, HH)[:2] == [("cap_overflow", 30, HH, POOL), ("grant", 80, ISSUANCE, HH)] or \
        statement_kinds(capped, HH)[:2] == [("grant", 80, ISSUANCE, HH), ("cap_overflow", 30, HH, POOL)]
    # at the cap already: the whole credit moves on; a credit larger than the cap alone too
    capped.transfer("more", ISSUANCE, HH, "service", 25)
    assert capped.get_transfer("more.cap").amount == 25 and available(capped, HH) == 500
    capped.transfer("first", ISSUANCE, HH2, "service", 800)
    assert capped.get_transfer("first.cap").amount == 300 and available(capped, HH2) == 500
    # under the cap: no overflow leg at all
    capped.transfer("spend", HH, ALICE, "service", 100)
    capped.transfer("back", ISSUANCE, HH, "service", 60)
    assert capped.get_transfer("back.cap") is None and available(capped, HH) == 460
    # replays return the caller's transfer and move nothing more
    before = snapshot(store)
    assert capped.transfer("over", ISSUANCE, HH, "service", 80, kind="grant", request_id="req_1").id == "over"
    with pytest.raises(IdempotencyMismatch):
        capped.transfer("over", ISSUANCE, HH, "service", 81, kind="grant", request_id="req_1")
    assert snapshot(store) == before
    assert capped.check()["ok"]


def test_a_batch_crediting_two_households_overflows_each_and_nets_debits_first():
    capped = Ledger(InMemoryLedgerStore(), shards=4, household_cap=100)
    capped.transfer("f", ISSUANCE, HH, "service", 90)
    records = capped.execute([Transfer("a", ISSUANCE, HH, "service", 50), Transfer("b", ISSUANCE, HH2, "service", 150),
                              Transfer("c", HH, ALICE, "service", 20)])
    assert [r.id for r in records] == ["a", "b", "c"]
    assert records[0].linked == ("a", "b", "c", "a.cap", "a.cap2")
    assert (capped.get_transfer("a.cap").debit_account, capped.get_transfer("a.cap").amount) == (HH, 20)
    assert (capped.get_transfer("a.cap2").debit_account, capped.get_transfer("a.cap2").amount) == (HH2, 50)
    assert (available(capped, HH), available(capped, HH2)) == (100, 100)
    assert capped.execute([Transfer("a", ISSUANCE, HH, "service", 50), Transfer("b", ISSUANCE, HH2, "service", 150),
                           Transfer("c", HH, ALICE, "service", 20)])[2].id == "c"
    assert capped.check()["ok"]


class MovesTheBalanceOnce(CommitHooks):
    """Another credit lands between this plan's read and its commit (once)."""

    def __init__(self, store, physical, amount):
        self.store, self.physical, self.amount, self.armed = store, physical, amount, True

    def before_commit(self, plan):
        if self.armed:
            self.armed = False
            from functions.ledger.model import BalanceChange, apply_change
            key = (self.physical, "service")
            delta = BalanceChange(self.physical, "service", credits_posted=max(self.amount, 0),
                                  debits_posted=max(-self.amount, 0))
            self.store.balances[key] = apply_change(self.store.balances.get(key), delta)


@pytest.mark.parametrize("already,moved,expected_overflow", [
    (100, 30, 0),     # planned without overflow, still none after the move
    (100, 380, 10),   # planned without overflow: the move makes part of it overflow
    (480, 10, 20),    # planned a partial overflow of 10 on 480: on 490 it is 20
    (480, -470, 0),   # planned a partial overflow: after the spend there is none
    (500, 5, 30),     # at the cap either way: all of it
])
def test_an_overflow_planned_on_a_stale_balance_is_planned_again(already, moved, expected_overflow):
    """The planner read ``already``; ``moved`` arrives before its commit: the condition refuses
    the stale plan, the ledger reads again, and the overflow is what the balance now requires."""
    store = InMemoryLedgerStore()
    capped = Ledger(store, shards=4, household_cap=500)
    capped.transfer("f", ISSUANCE, HH, "service", already)
    store.hooks = MovesTheBalanceOnce(store, HH, moved)
    capped.transfer("t", ISSUANCE, HH, "service", 30)
    store.hooks = CommitHooks()
    overflow = capped.get_transfer("t.cap")
    assert (overflow.amount if overflow else 0) == expected_overflow
    assert available(capped, HH) == min(500, already + moved + 30) if already + moved <= 500 else True
    assert available(capped, HH) == max(already + moved, min(500, already + moved + 30))


def test_a_household_balance_that_keeps_moving_is_a_conflict_not_a_silent_skip():
    store = InMemoryLedgerStore()
    capped = Ledger(store, shards=4, household_cap=500)
    capped.transfer("f", ISSUANCE, HH, "service", 480)

    class AlwaysMoves(CommitHooks):
        def before_commit(self, plan):
            from functions.ledger.model import BalanceChange, apply_change
            key = (HH, "service")
            store.balances[key] = apply_change(store.balances.get(key),
                                               BalanceChange(HH, "service", debits_posted=1))

    store.hooks = AlwaysMoves()
    with pytest.raises(Conflict):
        capped.transfer("t", ISSUANCE, HH, "service", 30)
    store.hooks = CommitHooks()
    assert capped.get_transfer("t") is None


# --- statements -----------------------------------------------------------------------------------

def test_statement_is_newest_first_paginated_and_shows_current_status(ledger):
    fund(ledger, amount=300)
    ledger.hold("h", HH, ESCROW, "service", 50)
    ledger.transfer("t", HH, HH2, "service", 20)
    ledger.transfer("in", HH2, HH, "service", 5)
    ledger.post_pending("p", "h", amount=30)
    first = ledger.statement(HH, limit=2)
    assert [r.id for r in first.items] == ["p", "in"]
    second = ledger.statement(HH, limit=2, cursor=first.next_cursor)
    assert [r.id for r in second.items] == ["t", "h"]
    assert second.items[1].status == "posted"
    third = ledger.statement(HH, limit=2, cursor=second.next_cursor)
    assert [r.id for r in third.items] == ["fund"] and third.next_cursor is None
    public = transfer_view(third.items[0])
    assert set(public) == {"id", "amount", "asset", "debit_account", "credit_account", "kind", "status", "memo",
                           "created_at"}
    exact = ledger.statement(HH2, limit=2)
    assert [r.id for r in exact.items] == ["in", "t"] and exact.next_cursor is None


@pytest.mark.parametrize("limit,cursor", [(0, None), (101, None), ("5", None), (5, {"after": "x"}),
                                          (5, {"before": ""}), (5, {"before": 3}), (5, "raw")])
def test_statement_rejects_bad_paging(ledger, limit, cursor):
    with pytest.raises(ValidationError):
        ledger.statement(HH, limit=limit, cursor=cursor)


def test_statement_of_an_unknown_account_id_is_refused(ledger):
    with pytest.raises(ValidationError):
        ledger.statement("someone", limit=5)


# --- crashes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("when", ["before", "after"])
def test_a_retry_after_a_crash_applies_exactly_once(store, when):
    ledger = Ledger(store, shards=4)
    fund(ledger, amount=100)
    store.hooks = CrashOnce(when)
    with pytest.raises(SimulatedCrash):
        ledger.transfer("t", HH, HH2, "service", 40)
    assert ("t" in store.transfers) is (when == "after")
    record = ledger.transfer("t", HH, HH2, "service", 40)
    assert record.id == "t"
    assert (available(ledger, HH), available(ledger, HH2)) == (60, 40)
    assert ledger.check()["ok"]
