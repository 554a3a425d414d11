"""The ledger state machine of ``test_ledger_stateful.py``, extended with the family and activity
rules of issue 10: a household balance cap (every credit past it paid in full, the excess moved
to the pool by a ``cap_overflow`` leg in the same transaction; voluntary transfers refused) and
activity award batches (issuance → residents, up to 20 per transaction, each batch idempotent,
closed again, crashed before or after its commit and retried).

The reference model predicts every overflow before the ledger is called — from the household's
balance and the batch's net inflow — and the machine checks the stored ``cap_overflow``
transfers against it; all the base machine's rules keep running (transfers, holds, posts,
voids, settlements, reversals, linked batches, duplicates, crashes), and after EVERY step the
base invariant (reconciliation + the model, balance by balance) holds, plus: no household above
the cap unless a correction (reversal) put it there.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import hypothesis.strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test

from functions.core.errors import IdempotencyMismatch, LimitExceeded
from functions.ledger.accounts import ISSUANCE, POOL, resident_account
from functions.ledger.model import SimulatedCrash, Transfer
from functions.ledger.service import CAP_OVERFLOW_KIND, Ledger, overflow_id
from tests.fakes.ledger import InMemoryLedgerStore
from tests.property.ledger_support import CrashOnce, FakeForeignWrite
from tests.property.test_ledger_stateful import (HH_A, HH_B, KINDS, PEOPLE, RES_A, RES_B, SHARDS, STEPS, Done,
                                                 DynamoLedgerMachine, LedgerMachine, amounts, machine_settings)

CAP = 500
HOUSEHOLDS = (HH_A, HH_B)
PARTICIPANTS = (RES_A, RES_B) + tuple(resident_account(f"res_p{n}") for n in range(6))


class FamilyLedgerMachine(LedgerMachine):
    backend = "memory+cap"
    foreign_writes = True

    def __init__(self) -> None:
        super().__init__()
        self.over_by_correction: set[str] = set()
        self.closes = 0
        self.awarded: dict[str, int] = defaultdict(int)
        self.writes: list[FakeForeignWrite] = []
        self.watch_uncapped_inflows()
        execute = self.ledger._execute

        def predicting(commands, also, preloaded, closes=()):
            """Predict the cap overflows from the model, call the ledger, check and apply them."""
            ids = [c.id for c in commands]
            replay = any(i in self.model.status for i in ids)
            expected = {} if replay else self.expected_overflows(commands)
            records = execute(commands, also, preloaded, closes)
            if ids and overflow_id(ids[0], 1, ids) not in self.model.status:
                self.apply_overflows(ids, expected, check=not replay)
            return records

        self.ledger._execute = predicting

    def make_ledger(self) -> Ledger:
        return Ledger(InMemoryLedgerStore(), shards=SHARDS, household_cap=CAP, point_kinds=KINDS)

    # --- the cap, in the model ------------------------------------------------------------------
    def expected_overflows(self, commands: list[Any]) -> dict[str, int]:
        """household → the excess the ledger must move on (net inflow of the batch, only
        capped credits count as the trigger, the household's balance as it is now)."""
        net: dict[str, int] = defaultdict(int)
        capped: set[str] = set()
        for command in commands:
            if not isinstance(command, Transfer) or command.asset != "service" or command.op != "transfer":
                continue
            if command.credit in HOUSEHOLDS:
                net[command.credit] += command.amount
                capped.add(command.credit)
            if command.debit in HOUSEHOLDS:
                net[command.debit] -= command.amount
        out = {}
        for household in capped:
            if net[household] <= 0:
                continue
            before = self.model.available(household, "service")
            if before + net[household] > CAP:
                out[household] = min(net[household], before + net[household] - CAP)
        return out

    def apply_overflows(self, ids: list[str], expected: dict[str, int], check: bool) -> None:
        found = {}
        for n in range(1, len(HOUSEHOLDS) + 1):
            record = self.ledger.get_transfer(overflow_id(ids[0], n, ids))
            if record is None:
                break
            assert (record.kind, record.credit_account, record.op) == (CAP_OVERFLOW_KIND, POOL, "transfer")
            assert record.linked[:len(ids)] == tuple(ids) and record.id in record.linked
            found[record.debit_account] = record
        if check:
            assert {hh: r.amount for hh, r in found.items()} == expected, (ids, expected, found)
        for record in found.values():
            self.model.move(record, dp=record.amount, cp=record.amount)
            self.model.status[record.id] = "posted"
            self.model.reversible[record.id] = record

    def watch_uncapped_inflows(self) -> None:
        """Releases of a household's own holds (void, the unposted rest of a post) and
        reversals are not capped: note a household they take past the cap."""
        move = self.model.move

        def watched(record, dp=0, cp=0, dpend=0, cpend=0):
            move(record, dp=dp, cp=cp, dpend=dpend, cpend=cpend)
            household = None
            if record.op == "reversal" and record.credit_account in HOUSEHOLDS:
                household = record.credit_account
            elif record.debit_account in HOUSEHOLDS and dpend < 0 and dp < -dpend:
                household = record.debit_account
            if household and record.asset == "service" and self.model.available(household, "service") > CAP:
                self.over_by_correction.add(household)

        self.model.move = watched

    # --- rules ----------------------------------------------------------------------------------
    @rule(household=st.sampled_from(HOUSEHOLDS), member=st.sampled_from((RES_A, RES_B)), amount=amounts)
    def member_moves_credits_in(self, household, member, amount):
        """A voluntary transfer into a household: refused past the cap, nothing moves."""
        self.step()
        tid = self.new_id("m")
        call = lambda: self.ledger.transfer(tid, member, household, "service", amount, cap_excess="refuse")  # noqa: E731
        if not self.model.can_debit(member, "service", amount):
            from functions.core.errors import InsufficientCredits
            self.expect_refusal(InsufficientCredits, call)
            return
        if self.model.available(household, "service") + amount > CAP:
            self.expect_refusal(LimitExceeded, call)
            return
        record = call()
        self.record_movement(record)
        self.done.append(Done(call, lambda: self.ledger.transfer(tid, member, household, "service", amount + 1,
                                                                 cap_excess="refuse"), [record]))

    @rule(awards=st.lists(st.tuples(st.sampled_from(PARTICIPANTS), st.integers(1, 120)), min_size=1, max_size=20,
                          unique_by=lambda a: a[0]),
          asset=st.sampled_from(("volunteer", "service")), crash=st.sampled_from([None, None, "before", "after"]),
          again=st.booleans())
    def activity_close(self, awards, asset, crash, again):
        """One award batch of an activity close: issuance → each participant, ids derived from
        (activity, participant), the participants' award writes in the same transaction. A crash
        before or after the commit, then the retry; maybe the whole close again."""
        self.step()
        self.closes += 1
        activity = f"act{self.closes}"
        writes = [FakeForeignWrite() for _ in awards] if self.foreign_writes else []
        commands = [Transfer(f"{activity}.{account}", ISSUANCE, account, asset, amount, kind="activity_award",
                             memo="社区活动") for account, amount in awards]
        call = lambda: self.ledger.execute(commands, also=writes)  # noqa: E731
        if crash:
            store = self.ledger.store
            store.hooks = CrashOnce(crash)
            try:
                call()
                raise AssertionError("the crash hook did not fire")
            except SimulatedCrash:
                pass
            finally:
                from functions.ledger.model import CommitHooks
                store.hooks = CommitHooks()
        records = call()
        assert [r.id for r in records] == [c.id for c in commands]
        for record in records:
            self.record_movement(record)
            self.awarded[record.credit_account] += record.amount
        if again:
            before = self.stored_state()
            assert [r.id for r in call()] == [c.id for c in commands]
            assert self.stored_state()[1] == before[1]   # nothing moved
        assert all(w.applied == 1 for w in writes)       # each participant's award written once
        changed = [Transfer(c.id, c.debit, c.credit, c.asset, c.amount + 1, kind=c.kind, memo=c.memo)
                   for c in commands]
        self.done.append(Done(call, lambda: self.ledger.execute(changed, also=[FakeForeignWrite() for _ in changed]
                                                                if self.foreign_writes else []), records))

    # --- the invariants --------------------------------------------------------------------------
    @invariant()
    def no_household_above_the_cap_but_by_a_correction(self):
        for household in HOUSEHOLDS:
            available = self.model.available(household, "service")
            if available <= CAP:
                self.over_by_correction.discard(household)
            else:
                assert household in self.over_by_correction, (household, available)


class FamilyDynamoLedgerMachine(FamilyLedgerMachine, DynamoLedgerMachine):
    """The same on the DynamoDB adapter (moto); the participants' award writes are the
    in-memory fake's, so this variant commits the batches without them."""
    backend = "dynamodb+cap"
    foreign_writes = False

    def make_ledger(self) -> Ledger:
        plain = DynamoLedgerMachine.make_ledger(self)
        return Ledger(plain.store, shards=SHARDS, household_cap=CAP, point_kinds=KINDS)


def test_family_ledger_state_machine_in_memory():
    STEPS["memory+cap"] = 0
    run_state_machine_as_test(FamilyLedgerMachine, settings=machine_settings(60, 35))
    assert STEPS["memory+cap"] >= 1000, STEPS["memory+cap"]


def test_family_ledger_state_machine_on_dynamodb():
    STEPS["dynamodb+cap"] = 0
    run_state_machine_as_test(FamilyDynamoLedgerMachine, settings=machine_settings(30, 25))
    assert STEPS["dynamodb+cap"] >= 500, STEPS["dynamodb+cap"]


def test_the_model_predicts_overflows_the_machine_does_reach():
    """Guards the test itself: the runs above do exercise overflows and award batches."""
    machine = FamilyLedgerMachine()
    machine.starting_credits()
    machine.transfer(ISSUANCE, HH_A, "service", 150, "", None)   # 400 + 150: 50 past the cap
    assert machine.ledger.get_transfer(overflow_id("t1", 1, ["t1"])).amount == 50
    assert machine.model.available(HH_A, "service") == CAP
    machine.activity_close([(RES_A, 30), (RES_B, 45)], "volunteer", "after", True)
    machine.everything_reconciles_and_matches_the_model()
    assert machine.awarded == {RES_A: 30, RES_B: 45}
    assert machine.model.logical(POOL, "service").available == 50
