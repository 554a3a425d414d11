"""Property: admin reversals keep the ledger balanced and each transfer is reversed at most once.

Random runs of fundings, transfers between households, settlements (hold → escrow → volunteer)
and reversals of any transfer made so far — some twice, some of a receiver who has spent the
credits meanwhile. A plain model predicts every balance and every refusal; after each step the
ledger's own check holds (debits = credits per asset, nothing below zero but issuance)."""
from __future__ import annotations

from collections import defaultdict

import boto3
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from moto import mock_aws

from functions.core.errors import InsufficientCredits, InvalidState
from functions.ledger.accounts import ESCROW, ISSUANCE, household_account, resident_account
from functions.ledger.model import AlreadyReversed
from functions.ledger.service import Ledger
from tests.fakes.ledger import InMemoryLedgerStore

SEEN: dict[str, int] = defaultdict(int)   # what the runs exercised: a run that never reverses proves nothing
ACCOUNTS = [household_account("hh_a"), household_account("hh_b"), resident_account("res_c")]


class ReversalMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.ledger = Ledger(self.make_store(), shards=2)
        self.balance: dict[str, int] = defaultdict(int)
        self.moves: dict[str, tuple[str, str, int]] = {}     # reversible id -> (debit, credit, amount)
        self.units: dict[str, tuple[str, ...]] = {}          # id -> ids reversed with it (a settlement)
        self.reversed: set[str] = set()
        self.n = 0

    def make_store(self):
        return InMemoryLedgerStore()

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    @rule(to=st.sampled_from(ACCOUNTS), amount=st.integers(1, 120))
    def fund(self, to, amount):
        tid = self._id("fund")
        self.ledger.transfer(tid, ISSUANCE, to, "service", amount, kind="grant")
        self.balance[to] += amount
        self.moves[tid], self.units[tid] = (ISSUANCE, to, amount), (tid,)

    @rule(pair=st.permutations(ACCOUNTS), amount=st.integers(1, 120))
    def transfer(self, pair, amount):
        debit, credit = pair[0], pair[1]
        tid = self._id("tr")
        if self.balance[debit] < amount:
            try:
                self.ledger.transfer(tid, debit, credit, "service", amount)
            except InsufficientCredits:
                return
            raise AssertionError("an overdraft went through")
        self.ledger.transfer(tid, debit, credit, "service", amount)
        self.balance[debit] -= amount
        self.balance[credit] += amount
        self.moves[tid], self.units[tid] = (debit, credit, amount), (tid,)

    @rule(pair=st.permutations(ACCOUNTS), amount=st.integers(1, 90))
    def settle(self, pair, amount):
        payer, payee = pair[0], pair[1]
        if self.balance[payer] < amount:
            return
        hold, sid = self._id("hold"), self._id("settle")
        self.ledger.hold(hold, payer, ESCROW, "service", amount)
        self.ledger.settle_hold(sid, hold, payee, amount)
        self.balance[payer] -= amount
        self.balance[payee] += amount
        post, pay = f"{sid}.post", f"{sid}.pay"
        self.moves[post], self.moves[pay] = (payer, ESCROW, amount), (ESCROW, payee, amount)
        self.units[post] = self.units[pay] = (pay, post)

    @rule(pick=st.integers(0, 10_000))
    def reverse(self, pick):
        if not self.moves:
            return
        original = list(self.moves)[pick % len(self.moves)]   # insertion order: reversal ids are random
        unit = self.units[original]
        call = lambda: self.ledger.reverse_transfer(original, "correction", "res_admin")  # noqa: E731
        if original in self.reversed:
            try:
                call()
            except AlreadyReversed:
                SEEN["again"] += 1
                return
            raise AssertionError("reversed twice")
        # net effect of reversing the unit on each real account (escrow nets out)
        effect: dict[str, int] = defaultdict(int)
        for tid in unit:
            debit, credit, amount = self.moves[tid]
            effect[debit] += amount
            effect[credit] -= amount
        short = any(account not in (ISSUANCE, ESCROW) and self.balance[account] + delta < 0
                    for account, delta in effect.items())
        try:
            record = call()
        except InsufficientCredits:
            assert short, "refused although the receiver could cover it"
            SEEN["refused"] += 1
            return
        except InvalidState:
            raise
        assert not short, "a reversal overdrew the receiver"
        assert record.reversal_of == original
        SEEN["settlement" if len(unit) > 1 else "plain"] += 1
        for account, delta in effect.items():
            if account not in (ISSUANCE, ESCROW):
                self.balance[account] += delta
        self.reversed.update(unit)
        # the reversals are posted transfers an admin could reverse in turn (undo the correction);
        # a settlement's two reversals were written as one linked batch through escrow: one unit again
        reversals = tuple(self.ledger.get_transfer(tid).reversed_by for tid in unit)
        for tid, reversal in zip(unit, reversals):
            debit, credit, amount = self.moves[tid]
            self.moves[reversal], self.units[reversal] = (credit, debit, amount), reversals

    @invariant()
    def balanced(self):
        assert self.ledger.check()["ok"]
        for account in ACCOUNTS:
            totals = self.ledger.balances(account).get("service")
            assert (totals.available if totals else 0) == self.balance[account], account


class DynamoReversalMachine(ReversalMachine):
    def __init__(self):
        self._mock = mock_aws()
        self._mock.start()
        from functions.adapters.dynamo import create_tables
        from functions.bootstrap import table_definitions

        create_tables(boto3.client("dynamodb"), table_definitions(), names=["ledger-transfers", "ledger-balances"])
        super().__init__()

    def make_store(self):
        from functions.ledger.dynamo import DynamoLedgerStore

        return DynamoLedgerStore()

    def teardown(self):
        self._mock.stop()
        super().teardown()


SETTINGS = dict(derandomize=True, deadline=None, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_reversals_keep_the_ledger_balanced_in_memory():
    SEEN.clear()
    run_state_machine_as_test(ReversalMachine, settings=settings(max_examples=60, stateful_step_count=30, **SETTINGS))
    assert min(SEEN[k] for k in ("again", "refused", "settlement", "plain")) >= 5, dict(SEEN)


def test_reversals_keep_the_ledger_balanced_on_dynamodb():
    run_state_machine_as_test(DynamoReversalMachine,
                              settings=settings(max_examples=10, stateful_step_count=20, **SETTINGS))
