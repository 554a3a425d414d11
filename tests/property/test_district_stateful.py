"""通存通兑 under faults: a hypothesis state machine over the three ledgers of a district (two
communities and the hub, ``tests/property/district_world.py``), and the crash points one by one.

The machine sends transfers of every kind (to relatives both ways, to oneself after a move, and
the refused ones) while it delivers each queue's messages in any order, duplicates them, leaves
them waiting (delayed), takes stacks down and brings them back, loses answers on their way back,
and crashes each party just before or just after one of its commits; the sweeps run as the
clock advances. After every step: each ledger balances, each community reconciles with the hub
(clearing balance = hub position + in flight), the hub's positions are the fold of its
transfers and sum to zero, and no transfer is posted on one side and refused on the other.
At the end everything is settled (all up, queues drained, sweeps run): every transfer posted on
both sides or voided on both, nothing pending, and not a minute created or lost.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from functions.core.errors import BusinessRuleViolation
from tests.property.district_world import TARGETS, District, caller, two_communities

PARTIES = ("west", "east", "hub")


class DistrictMachine(RuleBasedStateMachine):
    checks = 0   # invariant checks: one after each step, one at the start of each run

    def __init__(self) -> None:
        super().__init__()
        self.district: District = two_communities(east_cap=0)
        self.sent: list[str] = []
        self.attempted: dict[str, tuple[str, str, dict]] = {}
        self.counter = 0

    def _send(self, kind: str, amount: int, transfer_id: str) -> None:
        community, resident, to = TARGETS[kind]
        c = self.district.communities[community]
        body = {"to": dict(to), "asset": "service", "amount": amount, "memo": kind}
        try:
            answer = c.service.send(caller(c.people.people[resident]), transfer_id, body)
        except BusinessRuleViolation:
            return  # refused at home (insufficient credits): nothing held
        except Exception:  # noqa: BLE001 - a crash: the client retries with the same key
            self.attempted[transfer_id] = (kind, str(amount), body)
            return
        assert answer["id"] == transfer_id and answer["status"] in ("pending", "posted", "failed")
        self.attempted.pop(transfer_id, None)
        self.sent.append(transfer_id)

    @rule(kind=st.sampled_from(sorted(TARGETS)), amount=st.integers(1, 250))
    def send(self, kind: str, amount: int) -> None:
        self.counter += 1
        self._send(kind, amount, f"tr_sm_{self.counter:04d}")

    @precondition(lambda self: self.attempted)
    @rule(data=st.data())
    def client_retries(self, data: st.DataObject) -> None:
        """The mini-program sends the same Idempotency-Key again after a 500."""
        transfer_id = data.draw(st.sampled_from(sorted(self.attempted)))
        kind, amount, _ = self.attempted[transfer_id]
        self._send(kind, int(amount), transfer_id)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def client_replays_a_done_send(self, data: st.DataObject) -> None:
        """A replay of a committed send answers the transfer's state and moves nothing."""
        transfer_id = data.draw(st.sampled_from(self.sent))
        source = next(c for c in self.district.communities.values() if transfer_id in c.store.outgoing)
        t = source.store.outgoing[transfer_id]
        person = source.people.people[t.payer_resident]
        body = {"to": t.target.view(), "asset": t.asset, "amount": t.amount, "memo": t.memo}
        answer = source.service.send(caller(person), transfer_id, body)
        assert answer == {"id": transfer_id, "status": source.store.outgoing[transfer_id].status}

    @rule(queue=st.integers(0, 3), index=st.integers(0, 20), duplicate=st.booleans())
    def deliver(self, queue: int, index: int, duplicate: bool) -> None:
        """One message of one queue, any of them (reordered), maybe delivered again later."""
        self.district.consume(self.district.queues()[queue], index, duplicate)

    @rule(party=st.sampled_from(PARTIES), when=st.sampled_from(("before", "after")))
    def crash_next_commit(self, party: str, when: str) -> None:
        self.district.crashes.arm(party, when)

    @rule(party=st.sampled_from(PARTIES))
    def take_down(self, party: str) -> None:
        self.district.network.down.add(party)

    @rule(party=st.sampled_from(PARTIES))
    def bring_up(self, party: str) -> None:
        self.district.network.down.discard(party)

    @rule(party=st.sampled_from(PARTIES))
    def lose_next_answer_from(self, party: str) -> None:
        self.district.network.lose_next_answer.add(party)

    @rule(party=st.sampled_from(PARTIES))
    def sweep(self, party: str) -> None:
        try:
            self.district.sweep(party)
        except Exception:  # noqa: BLE001 - a crash during the sweep: it runs again later
            pass

    @invariant()
    def ledgers_balance_and_reconcile(self) -> None:
        DistrictMachine.checks += 1
        self.district.check_always()

    def teardown(self) -> None:
        self.district.settle()
        self.district.check_settled(self.sent)


def machine_settings(examples: int, steps: int) -> settings:
    return settings(max_examples=examples, stateful_step_count=steps, derandomize=True, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


def test_the_district_state_machine_keeps_every_ledger_whole():
    """25 runs × 50 steps: ≥ 1,000 steps in CI."""
    DistrictMachine.checks = 0
    run_state_machine_as_test(DistrictMachine, settings=machine_settings(25, 50))
    assert DistrictMachine.checks - 25 >= 1000


# --- the crash points, one by one -------------------------------------------------------------------

def _one_transfer(district: District, kind: str = "relatives", amount: int = 50) -> str:
    community, resident, to = TARGETS[kind]
    c = district.communities[community]
    c.service.send(caller(c.people.people[resident]), "tr_one", {"to": dict(to), "asset": "service",
                                                                  "amount": amount, "memo": ""})
    return "tr_one"


def _step_through(district: District) -> None:
    """Drive the protocol one message at a time, swallowing the failures a crash causes."""
    for _ in range(6):
        for queue in district.queues():
            for _ in range(len(queue.messages)):
                district.consume(queue)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("party", PARTIES)
@pytest.mark.parametrize("kind", ["relatives", "declared_one_side", "self_after_move", "unknown_community"])
def test_each_party_crashing_before_and_after_its_commit(party, when, kind):
    district = two_communities()
    transfer_id = _one_transfer(district, kind)
    district.crashes.arm(party, when)
    _step_through(district)
    if not (party == "east" and kind == "unknown_community"):   # east never hears of that one
        assert district.crashes.fired == [(party, when)]
    district.check_always()
    district.settle()
    district.check_settled([transfer_id])
    expected = "posted" if kind in ("relatives", "self_after_move") else "failed"
    source = district.communities[TARGETS[kind][0]]
    assert source.store.outgoing[transfer_id].status == expected


@pytest.mark.parametrize("party", PARTIES)
def test_every_message_duplicated_moves_the_credits_once(party):
    district = two_communities()
    transfer_id = _one_transfer(district)
    for _ in range(8):
        for queue in district.queues():
            if queue.messages:
                district.consume(queue, duplicate=True)     # handled, and delivered again
        district.sweep(party)
    district.settle()
    district.check_settled([transfer_id])
    assert district.residents_total("east") == 400 + 50
    assert district.residents_total("west") == 700 - 50


def test_the_hub_unreachable_for_a_while_then_everything_completes():
    district = two_communities()
    district.network.down.add("hub")
    transfer_id = _one_transfer(district)
    for _ in range(5):
        _step_through(district)
        district.sweep("west")
    west = district.communities["west"]
    assert west.store.outgoing[transfer_id].status == "pending"   # never guessed
    district.check_always()
    district.settle()
    district.check_settled([transfer_id])
    assert west.store.outgoing[transfer_id].status == "posted"


@pytest.mark.parametrize("party", PARTIES)
def test_a_lost_answer_is_asked_again_never_guessed(party):
    district = two_communities()
    transfer_id = _one_transfer(district)
    for _ in range(3):
        district.network.lose_next_answer.add(party)
        _step_through(district)
        district.check_always()
    district.settle()
    district.check_settled([transfer_id])
    assert district.communities["east"].ledger.get_transfer(
        __import__("functions.district.model", fromlist=["credit_id"]).credit_id(transfer_id)).amount == 50


def test_messages_reordered_against_the_sweeps():
    """The outcome reaches the source through the sweep before the queue's copy arrives."""
    district = two_communities()
    transfer_id = _one_transfer(district)
    district.sweep("west")          # the sweep submits first (the queue's message is still waiting)
    district.sweep("hub")           # the hub asks the destination and tells the source
    west = district.communities["west"]
    assert west.store.outgoing[transfer_id].status == "posted"
    district.settle()               # then the stale messages arrive, late: they change nothing
    district.check_settled([transfer_id])
