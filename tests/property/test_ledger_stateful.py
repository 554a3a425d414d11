"""A stateful property test: hypothesis drives the ledger through random sequences of
transfers, holds, full and partial posts, voids, settlements, reversals, linked batches,
conversions between point kinds (rewards' two linked legs), the days passing and the daily
expiry of an expiring asset (min(bucket, available) back to issuance, once), voucher and 志愿汇
exchange legs (holds to a merchant or the clearing account, posted by 核销 / a confirmation or
voided by a cancel / refusal / timeout, delivered twice), bad input, duplicate submissions
(same content → the original; other content → mismatch) and crashes injected just before and
just after the commit — and after EVERY step checks

- the reconciliation report of everything stored (Σ debits = Σ credits per asset, every balance
  item = the fold of its transfers, limits, single resolution, linked legs) is ok, and
- a simple reference model agrees: every balance item's four totals, every logical account's
  balances through the public API, every transfer's current status, and every expiry bucket
  (what each (day, account, asset) will lose, and what it lost).

The model knows nothing of plans, conditions or stores: it applies the TigerBeetle rules to
dicts, and predicts each outcome (success or which refusal) before the ledger is called.

It runs on the DynamoDB adapter on moto (the acceptance run: ≥ 1,000 steps) and on the
in-memory store. Deterministic: ``derandomize=True``, no database, no deadline.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

import boto3
import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from functions.core import clock
from functions.core.errors import (IdempotencyMismatch, InsufficientCredits, InvalidState, NotFound,
                                   TimebankError, ValidationError)
from functions.adapters.dynamo import create_tables
from functions.bootstrap import table_definitions
from functions.core.settings import region
from functions.core.validation import MAX_AMOUNT_MINUTES
from functions.ledger.accounts import (ESCROW, HOUSEHOLD, ISSUANCE, POOL, RESIDENT, clearing_account,
                                       household_account, merchant_account, parse_account, physical_id,
                                       resident_account, shard_for)
from functions.ledger import dynamo
from functions.ledger.dynamo import DynamoLedgerStore, LedgerBalanceItem, LedgerExpiryItem, LedgerTransferItem
from functions.ledger.service import Ledger
from functions.ledger.model import (BalanceRow, CommitHooks, ExpiringCredit, SimulatedCrash, Totals, Transfer,
                                    TransferRecord, point_kinds_from)
from functions.ledger.reconciliation import reconcile
from functions.rewards.model import NotConvertible, conversion_amounts, plan_conversion
from tests.fakes.ledger import InMemoryLedgerStore
from tests.property.ledger_support import CrashOnce

SHARDS = 4
EXPIRY_DAYS = 2
KINDS = point_kinds_from({
    "green": {"expires_after_days": EXPIRY_DAYS, "convert_to": {"service": {"rate_num": 1, "rate_den": 10}}},
    "volunteer": {"convert_to": {"service": {"rate_num": 1, "rate_den": 1}}},
})
ASSETS = ("service", "volunteer", "green")
PAIRS = (("green", "service"), ("volunteer", "service"), ("service", "green"))  # the last is not allowed
MERCHANT, CLEARING = merchant_account("m_1"), clearing_account("zyh")
DAY0 = datetime(2026, 12, 1, 9, 0, tzinfo=clock.CHINA_TZ)
HH_A, HH_B = household_account("hh_a"), household_account("hh_b")
RES_A, RES_B = resident_account("res_a"), resident_account("res_b")
PEOPLE = (HH_A, HH_B, RES_A, RES_B)
# Orders matter a little: hypothesis leans towards the first element of a choice.
DEBITS = PEOPLE + (POOL, ISSUANCE)
CREDITS = (HH_B, RES_A, POOL, HH_A, RES_B, ISSUANCE)
BAD_INPUT = {"amount0": {"amount": 0}, "negative": {"amount": -3}, "huge": {"amount": MAX_AMOUNT_MINUTES + 1},
             "asset": {"asset": "gold"}, "reputation": {"asset": "reputation", "debit": HH_A, "credit": HH_B}, "memo": {"memo": "x" * 201},
             "debit": {"debit": "somebody"}}
ALL_ACCOUNTS = (ISSUANCE, POOL, ESCROW, MERCHANT, CLEARING) + PEOPLE
CRASHES = [None, None, None, "before", "after"]

STEPS: dict[str, int] = defaultdict(int)

amounts = st.integers(1, 150)
picks = st.randoms(use_true_random=False)  # uniform picks among what exists now


@dataclass
class Done:
    """A call that succeeded: how to replay it, how to replay it with other content, and what it returned."""
    replay: Callable[[], Any]
    mismatch: Callable[[], Any]
    records: list[TransferRecord]


@dataclass
class Model:
    items: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))
    status: dict[str, str] = field(default_factory=dict)
    holds: dict[str, TransferRecord] = field(default_factory=dict)       # every hold ever made
    reversible: dict[str, TransferRecord] = field(default_factory=dict)  # posted movements
    reversed: set[str] = field(default_factory=set)
    voids: list[str] = field(default_factory=list)
    side_holds: dict[str, TransferRecord] = field(default_factory=dict)  # vouchers' and exchanges' holds
    side_resolved: dict[str, str] = field(default_factory=dict)          # hold -> the post/void that resolved it
    buckets: dict[tuple[str, str, str], list] = field(default_factory=dict)  # (day, account, asset) -> [amount, taken]

    def available(self, physical: str, asset: str) -> int:
        dp, cp, dpend, _ = self.items[(physical, asset)]
        return cp - dp - dpend

    def can_debit(self, account: str, asset: str, amount: int) -> bool:
        acc = parse_account(account)
        if not acc.limited:
            return True
        if acc.sharded:  # the ledger pays from one shard that holds enough
            return max(self.available(physical_id(account, s), asset) for s in range(SHARDS)) >= amount
        return self.available(account, asset) >= amount

    def move(self, record: TransferRecord, dp=0, cp=0, dpend=0, cpend=0) -> None:
        debit = self.items[(physical_id(record.debit_account, record.debit_shard), record.asset)]
        credit = self.items[(physical_id(record.credit_account, record.credit_shard), record.asset)]
        debit[0] += dp
        debit[2] += dpend
        credit[1] += cp
        credit[3] += cpend

    def logical(self, account: str, asset: str) -> Totals:
        total = Totals()
        for (physical, item_asset), (dp, cp, dpend, cpend) in self.items.items():
            if item_asset == asset and physical.split("#", 1)[0] == account:
                total = total + Totals(dp, cp, dpend, cpend, cp - dp - dpend)
        return total


class LedgerMachine(RuleBasedStateMachine):
    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.now = DAY0
        clock.set_clock(lambda: self.now)
        self.ledger = self.make_ledger()
        self.model = Model()
        self.done: list[Done] = []
        self.counter = 0
        self.checks = 0

    def make_ledger(self) -> Ledger:
        return Ledger(InMemoryLedgerStore(), shards=SHARDS, point_kinds=KINDS)

    def teardown(self) -> None:
        clock.set_clock(None)

    # --- helpers ----------------------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def step(self) -> None:
        STEPS[self.backend] += 1

    def expect_refusal(self, error: type[TimebankError], call: Callable[[], Any]) -> None:
        try:
            call()
        except error:
            return
        raise AssertionError(f"expected {error.__name__}")

    def record_movement(self, record: TransferRecord) -> None:
        """Apply a posted single-phase transfer or reversal to the model."""
        if parse_account(record.debit_account).sharded and parse_account(record.debit_account).limited:
            # the shard the ledger chose held enough (it is checked again by the condition)
            assert self.model.available(physical_id(record.debit_account, record.debit_shard),
                                        record.asset) >= record.amount
        self.model.move(record, dp=record.amount, cp=record.amount)
        self.model.status[record.id] = "posted"
        self.model.reversible[record.id] = record
        self.earn(record)

    def earn(self, record: TransferRecord) -> None:
        """A posted credit of an expiring asset to a person's account fills its expiry day's bucket."""
        days = KINDS[record.asset].expires_after_days
        if days and parse_account(record.credit_account).kind in (RESIDENT, HOUSEHOLD):
            day = (self.now.date() + timedelta(days=days)).isoformat()
            self.model.buckets.setdefault((day, record.credit_account, record.asset), [0, None])[0] += record.amount

    def crash_once(self, when: str | None, call: Callable[[], Any]) -> None:
        """Run ``call`` with the process dying just before / just after its commit."""
        if when is None:
            return
        store = self.ledger.store
        store.hooks = CrashOnce(when)
        try:
            call()
            raise AssertionError("the crash hook did not fire")
        except SimulatedCrash:
            pass
        finally:
            store.hooks = CommitHooks()

    def predict_transfer(self, debit: str, credit: str, asset: str, amount: int) -> type[TimebankError] | None:
        if debit == credit:
            return ValidationError
        if not self.model.can_debit(debit, asset, amount):
            return InsufficientCredits
        return None

    # --- rules -------------------------------------------------------------------------------
    @initialize()
    def starting_credits(self):
        """Every household and resident starts with minutes of both assets (one linked batch)."""
        self.step()
        commands = [Transfer(f"start-{account}-{asset}", ISSUANCE, account, asset, 400, kind="starting_credits")
                    for account in PEOPLE for asset in ASSETS]
        for record in self.ledger.execute(commands):
            self.record_movement(record)

    @rule(debit=st.sampled_from(DEBITS), credit=st.sampled_from(CREDITS), asset=st.sampled_from(ASSETS),
          amount=amounts, memo=st.sampled_from(["", "谢谢", "gift"]),
          bad=st.sampled_from([None] * 14 + sorted(BAD_INPUT)))
    def transfer(self, debit, credit, asset, amount, memo, bad):
        self.step()
        tid = self.new_id("t")
        if bad:
            args = dict(transfer_id=tid, debit=debit, credit=credit, asset=asset, amount=amount, memo=memo)
            args.update(BAD_INPUT[bad])
            self.expect_refusal(ValidationError, lambda: self.ledger.transfer(**args))
            return
        call = lambda: self.ledger.transfer(tid, debit, credit, asset, amount, memo=memo, actor="res_a")  # noqa: E731
        expected = self.predict_transfer(debit, credit, asset, amount)
        if expected:
            self.expect_refusal(expected, call)
            return
        record = call()
        if parse_account(credit).sharded:
            assert record.credit_shard == shard_for(tid, SHARDS)
        self.record_movement(record)
        self.done.append(Done(call, lambda: self.ledger.transfer(tid, debit, credit, asset, amount, memo=memo + "!"),
                              [record]))

    @rule(payer=st.sampled_from(PEOPLE), asset=st.sampled_from(ASSETS), amount=amounts)
    def hold(self, payer, asset, amount):
        self.step()
        tid = self.new_id("h")
        call = lambda: self.ledger.hold(tid, payer, ESCROW, asset, amount, request_id=f"req_{tid}")  # noqa: E731
        if not self.model.can_debit(payer, asset, amount):
            self.expect_refusal(InsufficientCredits, call)
            return
        record = call()
        assert (record.status, record.credit_shard) == ("pending", shard_for(tid, SHARDS))
        self.model.move(record, dpend=amount, cpend=amount)
        self.model.status[tid] = "pending"
        self.model.holds[tid] = record
        self.done.append(Done(call, lambda: self.ledger.hold(tid, payer, ESCROW, asset, amount + 1,
                                                             request_id=f"req_{tid}"), [record]))

    def pending_target(self, pick: random.Random) -> str:
        """Mostly pending holds, then resolved ones, sometimes a posted transfer or nothing."""
        pending = [h for h in self.model.holds if self.model.status[h] == "pending"]
        resolved = [h for h in self.model.holds if self.model.status[h] != "pending"]
        choices = pending * 3 + resolved + list(self.model.reversible)[-1:] + ["nope"]
        return pick.choice(choices)

    def predict_resolution(self, pending_id: str) -> type[TimebankError] | None:
        if pending_id not in self.model.holds:
            return NotFound
        if self.model.status[pending_id] != "pending":
            return InvalidState
        return None

    @precondition(lambda self: self.model.holds)
    @rule(action=st.sampled_from(["post", "void", "settle"]), pick=picks,
          part=st.one_of(st.none(), st.integers(1, 160)), payee=st.sampled_from((RES_A, RES_B)),
          share=st.integers(0, 100))
    def resolve(self, action, pick, part, payee, share):
        """Post (full or partial), void or settle a hold — usually a pending one, sometimes one
        already resolved, a posted transfer or an unknown id."""
        self.step()
        pending_id = self.pending_target(pick)
        if action == "post":
            self.post(pending_id, part)
        elif action == "void":
            self.void(pending_id)
        else:
            self.settle(pending_id, payee, share)

    def post(self, pending_id, part):
        tid = self.new_id("p")
        call = lambda: self.ledger.post_pending(tid, pending_id, amount=part, actor="res_b")  # noqa: E731
        expected = self.predict_resolution(pending_id)
        if expected is None and part is not None and part > self.model.holds[pending_id].amount:
            expected = ValidationError
        if expected:
            self.expect_refusal(expected, call)
            return
        held = self.model.holds[pending_id]
        record = call()
        amount = held.amount if part is None else part
        assert (record.amount, record.pending_amount) == (amount, held.amount)
        self.model.move(record, dp=amount, cp=amount, dpend=-held.amount, cpend=-held.amount)
        self.model.status[pending_id] = "posted"
        self.model.status[tid] = "posted"
        self.model.reversible[tid] = record
        self.done.append(Done(call, lambda: self.ledger.post_pending(tid, pending_id, amount=amount + 1), [record]))

    def void(self, pending_id):
        tid = self.new_id("v")
        call = lambda: self.ledger.void_pending(tid, pending_id, reason="expired")  # noqa: E731
        expected = self.predict_resolution(pending_id)
        if expected:
            self.expect_refusal(expected, call)
            return
        held = self.model.holds[pending_id]
        record = call()
        self.model.move(record, dpend=-held.amount, cpend=-held.amount)
        self.model.status[pending_id] = "voided"
        self.model.status[tid] = "voided"
        self.model.voids.append(tid)
        self.done.append(Done(call, lambda: self.ledger.void_pending(tid, pending_id, reason="other"), [record]))

    def settle(self, pending_id, payee, share):
        sid = self.new_id("s")
        held = self.model.holds.get(pending_id)
        amount = held.amount * share // 100 if held else 1
        call = lambda: self.ledger.settle_hold(sid, pending_id, payee, amount, actor="res_b")  # noqa: E731
        expected = self.predict_resolution(pending_id)
        if expected:
            self.expect_refusal(expected, call)
            return
        records = call()
        if amount == 0:
            (void,) = records
            self.model.move(void, dpend=-held.amount, cpend=-held.amount)
            self.model.status[void.id] = "voided"
            self.model.status[pending_id] = "voided"
            self.model.voids.append(void.id)
        else:
            post, pay = records
            assert pay.debit_shard == held.credit_shard and post.linked == pay.linked == (post.id, pay.id)
            self.model.move(post, dp=amount, cp=amount, dpend=-held.amount, cpend=-held.amount)
            self.model.status[pending_id] = "posted"
            self.model.status[post.id] = "posted"
            self.model.reversible[post.id] = post
            self.record_movement(pay)
        if amount == 0:  # the ids are "<sid>.void": the same id with another reason
            mismatch = lambda: self.ledger.void_pending(f"{sid}.void", pending_id, reason="other")  # noqa: E731
        else:
            mismatch = lambda: self.ledger.settle_hold(sid, pending_id, payee, amount + 1)  # noqa: E731
        self.done.append(Done(call, mismatch, records))

    @rule(pick=picks)
    def reverse(self, pick):
        self.step()
        choices = list(reversed(self.model.reversible)) + list(self.model.holds)[:1] + self.model.voids[:1] + ["nope"]
        original_id = pick.choice(choices)
        tid = self.new_id("r")
        call = lambda: self.ledger.reverse(tid, original_id, "correction", "admin-1")  # noqa: E731
        original = self.model.reversible.get(original_id)
        if original_id == "nope":
            expected: type[TimebankError] | None = NotFound
        elif original is None or original_id in self.model.reversed:
            expected = InvalidState
        elif not self.model.can_debit(original.credit_account, original.asset, original.amount):
            expected = InsufficientCredits
        else:
            expected = None
        if expected:
            self.expect_refusal(expected, call)
            return
        record = call()
        assert (record.debit_account, record.credit_account, record.amount, record.credit_shard) == \
            (original.credit_account, original.debit_account, original.amount, original.debit_shard)
        self.record_movement(record)
        self.model.reversed.add(original_id)
        self.done.append(Done(call, lambda: self.ledger.reverse(tid, original_id, "other reason", "admin-1"),
                              [record]))

    @rule(picked=st.lists(st.tuples(st.sampled_from((ISSUANCE,) + PEOPLE), st.integers(0, 3), amounts),
                          min_size=2, max_size=3))
    def linked_batch(self, picked):
        """Linked transfers: all or nothing, applied in order (a later credit never funds an
        earlier debit)."""
        self.step()
        legs = []
        for debit, offset, amount in picked:
            others = [p for p in PEOPLE if p != debit]
            legs.append((debit, others[offset % len(others)], amount))
        commands = [Transfer(self.new_id("b"), debit, credit, "service", amount) for debit, credit, amount in legs]
        call = lambda: self.ledger.execute(commands)  # noqa: E731
        trial = Model(items=defaultdict(lambda: [0, 0, 0, 0], {k: list(v) for k, v in self.model.items.items()}))
        for debit, credit, amount in legs:
            if not trial.can_debit(debit, "service", amount):
                self.expect_refusal(InsufficientCredits, call)
                return
            trial.items[(debit, "service")][0] += amount
            trial.items[(credit, "service")][1] += amount
        records = call()
        for record in records:
            self.record_movement(record)
        changed = [Transfer(c.id, c.debit, c.credit, c.asset, c.amount + 1) for c in commands]
        self.done.append(Done(call, lambda: self.ledger.execute(changed), records))

    @precondition(lambda self: self.done)
    @rule(pick=picks, same_content=st.booleans())
    def resubmit(self, pick, same_content):
        """A call that succeeded, submitted again: with the same content it returns the original
        transfers (current status) and changes nothing; with other content it is a mismatch."""
        self.step()
        done = pick.choice(self.done)
        if not same_content:
            self.expect_refusal(IdempotencyMismatch, done.mismatch)
            return
        again = done.replay()
        again = again if isinstance(again, list) else [again]
        immutable = lambda r: (r.id, r.op, r.debit_account, r.credit_account, r.asset, r.amount,  # noqa: E731
                               r.created_at, r.sort_key, r.content_hash, r.linked)
        assert [immutable(r) for r in again] == [immutable(r) for r in done.records]
        assert [r.status for r in again] == [self.model.status[r.id] for r in again]

    @rule(when=st.sampled_from(["before", "after"]), account=st.sampled_from(PEOPLE + (POOL,)),
          amount=amounts, settle_pick=st.one_of(st.none(), picks))
    def crash_then_retry(self, when, account, amount, settle_pick):
        """The process dies just before / just after the commit; the retry applies once."""
        self.step()
        pending = [h for h in self.model.holds if self.model.status[h] == "pending"]
        store = self.ledger.store
        if settle_pick is not None and pending:
            pending_id = settle_pick.choice(pending)
            held = self.model.holds[pending_id]
            sid = self.new_id("cs")
            call = lambda: self.ledger.settle_hold(sid, pending_id, RES_B, held.amount)  # noqa: E731
            ids = [f"{sid}.post", f"{sid}.pay"]
        else:
            tid = self.new_id("c")
            call = lambda: self.ledger.transfer(tid, ISSUANCE, account, "service", amount, kind="grant")  # noqa: E731
            ids = [tid]
        store.hooks = CrashOnce(when)
        try:
            call()
            raise AssertionError("the crash hook did not fire")
        except SimulatedCrash:
            pass
        finally:
            store.hooks = CommitHooks()
        stored = [self.ledger.get_transfer(i) for i in ids]
        assert all((s is not None) is (when == "after") for s in stored)
        records = call()
        records = records if isinstance(records, list) else [records]
        assert [r.id for r in records] == ids
        if len(records) == 2:
            post, pay = records
            self.model.move(post, dp=held.amount, cp=held.amount, dpend=-held.amount, cpend=-held.amount)
            self.model.status[pending_id] = "posted"
            self.model.status[post.id] = "posted"
            self.model.reversible[post.id] = post
            self.record_movement(pay)
        else:
            self.record_movement(records[0])
        if len(records) == 2:
            mismatch = lambda: self.ledger.settle_hold(sid, pending_id, RES_A, held.amount)  # noqa: E731
        else:
            mismatch = lambda: self.ledger.transfer(tid, ISSUANCE, account, "volunteer", amount,  # noqa: E731
                                                    kind="grant")
        self.done.append(Done(call, mismatch, records))

    # --- rewards: conversions, expiry, vouchers and exchanges -------------------------------------
    @rule(account=st.sampled_from(PEOPLE), pair=st.sampled_from(PAIRS), amount=st.integers(1, 200))
    def convert(self, account, pair, amount):
        """Two linked legs through issuance, rounded down in the community's favour."""
        self.step()
        cid = self.new_id("cv")
        source, target = pair
        call = lambda: self.ledger.execute(plan_conversion(cid, account, source, target, amount, KINDS, "res_a")[1])  # noqa: E731
        rate = KINDS[source].rate_to(target)
        if rate is None:
            self.expect_refusal(NotConvertible, call)
            return
        debited, credited = conversion_amounts(amount, *rate)
        if credited == 0:
            self.expect_refusal(ValidationError, call)
            return
        if not self.model.can_debit(account, source, debited):
            self.expect_refusal(InsufficientCredits, call)
            return
        records = call()
        assert [(r.asset, r.amount) for r in records] == [(source, debited), (target, credited)]
        for record in records:
            self.record_movement(record)
        other = next(p for p in PEOPLE if p != account)
        self.done.append(Done(call, lambda: self.ledger.execute(
            plan_conversion(cid, other, source, target, amount, KINDS, None)[1]), records))

    @rule(days=st.sampled_from([1, 1, 1, 2]))
    def days_pass(self, days):
        self.step()
        self.now += timedelta(days=days)

    @rule(crash=st.sampled_from(CRASHES), again=st.booleans())
    def expire_today(self, crash, again):
        """The daily schedule: each of today's buckets loses min(bucket, available), once — a
        crash before or after a commit and a second run change nothing more."""
        self.step()
        day = self.now.date().isoformat()
        for credit in sorted(self.ledger.expiring(day), key=lambda c: (c.account, c.asset)):
            bucket = self.model.buckets[(day, credit.account, credit.asset)]
            if credit.closed:
                assert self.ledger.expire(credit) == credit
                continue
            take = min(credit.amount, self.model.available(credit.account, credit.asset))
            self.crash_once(crash, lambda: self.ledger.expire(credit))
            result = self.ledger.expire(credit)   # after a crash after its commit: finds it closed
            tid = self.ledger.expiry_transfer_id(credit)
            assert (result.expired_amount, result.expired_by) == (take, tid if take else None)
            if take:
                record = self.ledger.get_transfer(tid)
                assert (record.debit_account, record.credit_account, record.amount, record.kind) == \
                    (credit.account, ISSUANCE, take, "expiry")
                self.record_movement(record)
            bucket[1] = take
            if again:  # the schedule delivered twice, with the bucket as first read
                assert self.ledger.expire(credit).expired_amount == take

    @rule(payer=st.sampled_from(PEOPLE), to=st.sampled_from((MERCHANT, CLEARING)), asset=st.sampled_from(ASSETS),
          amount=amounts, then=st.sampled_from(["post", "void", "later"]), crash=st.sampled_from(CRASHES),
          twice=st.booleans())
    def side_hold(self, payer, to, asset, amount, then, crash, twice):
        """A voucher's hold (to the merchant) or an exchange's (to the 志愿汇 clearing account),
        resolved at once (posted / voided, maybe delivered twice) or later."""
        self.step()
        tid = self.new_id("vh")
        call = lambda: self.ledger.hold(tid, payer, to, asset, amount, kind="voucher")  # noqa: E731
        if not self.model.can_debit(payer, asset, amount):
            self.expect_refusal(InsufficientCredits, call)
            return
        record = call()
        self.model.move(record, dpend=amount, cpend=amount)
        self.model.status[tid] = "pending"
        self.model.side_holds[tid] = record
        self.done.append(Done(call, lambda: self.ledger.hold(tid, payer, to, asset, amount, kind="exchange"),
                              [record]))
        if then != "later":
            self.side_resolution(tid, then, crash)
            if twice:
                self.side_resolution(tid, then, None)

    @precondition(lambda self: self.model.side_holds)
    @rule(pick=picks, action=st.sampled_from(["post", "void"]), crash=st.sampled_from(CRASHES))
    def side_resolve(self, pick, action, crash):
        self.step()
        self.side_resolution(pick.choice(sorted(self.model.side_holds)), action, crash)

    def side_resolution(self, hold_id: str, action: str, crash: str | None) -> None:
        """核销 / a confirmation posts the hold, a cancel / refusal / timeout voids it; the id is the
        hold's, so a duplicate delivery returns the first result and the other outcome is refused."""
        held = self.model.side_holds[hold_id]
        tid = f"{hold_id}.{action}"
        if action == "post":
            call = lambda: self.ledger.post_pending(tid, hold_id, kind="voucher_redeemed", memo="核销")  # noqa: E731
            mismatch = lambda: self.ledger.post_pending(tid, hold_id, kind="voucher_redeemed", memo="other")  # noqa: E731
        else:
            call = lambda: self.ledger.void_pending(tid, hold_id, reason="cancelled", kind="voucher_release")  # noqa: E731
            mismatch = lambda: self.ledger.void_pending(tid, hold_id, reason="other", kind="voucher_release")  # noqa: E731
        resolved_by = self.model.side_resolved.get(hold_id)
        if resolved_by is not None and resolved_by != tid:
            self.expect_refusal(InvalidState, call)
            return
        if resolved_by == tid:
            assert call().id == tid   # a duplicate delivery: the first result, nothing moves
            return
        self.crash_once(crash, call)
        assert (self.ledger.get_transfer(tid) is not None) is (crash == "after")
        record = call()
        if action == "post":
            self.model.move(record, dp=held.amount, cp=held.amount, dpend=-held.amount, cpend=-held.amount)
            self.model.status[hold_id] = self.model.status[tid] = "posted"
            self.model.reversible[tid] = record
        else:
            self.model.move(record, dpend=-held.amount, cpend=-held.amount)
            self.model.status[hold_id] = self.model.status[tid] = "voided"
            self.model.voids.append(tid)
        self.model.side_resolved[hold_id] = tid
        self.done.append(Done(call, mismatch, [record]))

    # --- the invariants, after every step ------------------------------------------------------
    @invariant()
    def everything_reconciles_and_matches_the_model(self):
        transfers, rows = self.stored_state()
        report = reconcile(transfers, rows)
        assert report["ok"], report["violations"]
        stored = {(row.physical, row.asset): row.totals for row in rows}
        for key in set(stored) | set(self.model.items):
            dp, cp, dpend, cpend = self.model.items.get(key, [0, 0, 0, 0])
            assert stored.get(key, Totals()) == Totals(dp, cp, dpend, cpend, cp - dp - dpend), key
        assert {t.id: t.status for t in transfers} == self.model.status
        # The public read path too: every account on the fast store, one account per step
        # (rotating) on moto, where every call costs ~10 ms of CPU.
        self.checks += 1
        accounts = ALL_ACCOUNTS if self.backend == "memory" else \
            (ALL_ACCOUNTS[self.checks % len(ALL_ACCOUNTS)],)
        for account in accounts:
            balances = self.ledger.balances(account)
            for asset in ASSETS:
                assert balances.get(asset, Totals()) == self.model.logical(account, asset), (account, asset)
        buckets = {(c.day, c.account, c.asset): [c.amount, c.expired_amount] for c in self.stored_buckets()}
        assert buckets == self.model.buckets

    def stored_buckets(self) -> list[ExpiringCredit]:
        return list(self.ledger.store.buckets.values())


    def stored_state(self) -> tuple[list[TransferRecord], list[BalanceRow]]:
        return list(self.ledger.store.scan_transfers()), list(self.ledger.store.scan_balances())


class DynamoLedgerMachine(LedgerMachine):
    """The same machine on the DynamoDB adapter (moto).

    After every step the invariant reads the tables straight from moto's backend — the stored
    attribute values, decoded by the adapter's own PynamoDB models — because moto serializes a
    Scan response at ~1 ms of CPU per item, which would make this test take minutes. The
    adapter's real Scan path is compared with that read (and reconciled) at the end of every
    example, and the real Query/BatchGet read path is checked on one account per step.
    """
    backend = "dynamodb"

    def make_ledger(self) -> Ledger:
        self._mock = mock_aws()
        self._mock.start()
        create_tables(boto3.client("dynamodb"), table_definitions(),
                      names=["ledger-transfers", "ledger-balances", "ledger-expiries"])
        return Ledger(DynamoLedgerStore(sleep=lambda seconds: None), shards=SHARDS, point_kinds=KINDS)

    def stored_buckets(self) -> list[ExpiringCredit]:
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][region()].get_table(LedgerExpiryItem.Meta.table_name)
        return [dynamo._credit(LedgerExpiryItem.from_raw_data(item.to_json()["Attributes"]))
                for item in table.all_items()]

    def stored_state(self) -> tuple[list[TransferRecord], list[BalanceRow]]:
        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][region()]

        def items(model):
            table = backend.get_table(model.Meta.table_name)
            return [model.from_raw_data(item.to_json()["Attributes"]) for item in table.all_items()]

        return ([dynamo._to_record(i) for i in items(LedgerTransferItem)],
                [BalanceRow(i.account, i.asset, dynamo._totals(i)) for i in items(LedgerBalanceItem)])

    def teardown(self) -> None:
        try:
            fast = self.stored_state()
            scanned = super().stored_state()
            assert sorted(fast[0], key=lambda t: t.id) == sorted(scanned[0], key=lambda t: t.id)
            assert sorted(fast[1], key=lambda r: (r.physical, r.asset)) == \
                sorted(scanned[1], key=lambda r: (r.physical, r.asset))
            assert self.ledger.check()["ok"]
        finally:
            self._mock.stop()
            super().teardown()


def machine_settings(examples: int, steps: int) -> settings:
    return settings(max_examples=examples, stateful_step_count=steps, derandomize=True, deadline=None,
                    database=None, phases=[Phase.generate, Phase.shrink], print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_ledger_state_machine_on_dynamodb():
    STEPS["dynamodb"] = 0
    run_state_machine_as_test(DynamoLedgerMachine, settings=machine_settings(50, 25))
    assert STEPS["dynamodb"] >= 1000, STEPS["dynamodb"]


def test_ledger_state_machine_in_memory():
    STEPS["memory"] = 0
    run_state_machine_as_test(LedgerMachine, settings=machine_settings(60, 35))
    assert STEPS["memory"] >= 1000, STEPS["memory"]
