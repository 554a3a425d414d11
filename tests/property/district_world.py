"""A whole district in memory — two communities' ledgers and the hub — wired through the
real use cases (``DistrictService``, ``HubService``, ``Ledger``) with in-memory twins of their
stores and with the network and the queues made explicit, so a test decides what each message
does: delivered, duplicated, delayed (left), reordered (taken out of order), lost on the way
back (the work done, the answer lost), refused by a peer that is down; and where each party
crashes: just before or just after its commit.

The queues hold what the outboxes committed (an event is in a queue exactly when its
transaction committed: the relay's eager dispatch plus its sweep guarantee that on AWS).
Crossing a stack boundary serialises the body as JSON, and any exception on the far side is,
for the caller, "no answer" (``PeerUnavailable``) — as a 5xx or a timeout would be.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

from functions.adapters.signed_calls import PeerUnavailable
from functions.core.caller import Caller
from functions.core.errors import InvalidState
from functions.core.events import DomainEvent
from functions.district.model import (CREDITED, HUB_CLEARING, IN, OUT, PENDING, Incoming, Outgoing)
from functions.district.ports import Person
from functions.district.service import DistrictConfig, DistrictService
from functions.hub.model import HubTransfer
from functions.hub.service import HubService
from functions.ledger.accounts import ISSUANCE, household_account
from functions.ledger.model import CommitHooks, Plan, SimulatedCrash
from functions.ledger.service import Ledger
from tests.fakes.ledger import InMemoryLedgerStore

ASSET = "service"
START = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at

    def advance(self, minutes: int) -> None:
        self.at += timedelta(minutes=minutes)


# --- crashes ---------------------------------------------------------------------------------------

class Crashes:
    """One armed crash per party: ``"before"`` (nothing written) or ``"after"`` (written, the
    caller sees only an exception) its next commit."""

    def __init__(self) -> None:
        self.armed: dict[str, str] = {}
        self.fired: list[tuple[str, str]] = []

    def arm(self, party: str, when: str) -> None:
        assert when in ("before", "after")
        self.armed[party] = when

    def before(self, party: str) -> None:
        if self.armed.get(party) == "before":
            del self.armed[party]
            self.fired.append((party, "before"))
            raise SimulatedCrash(f"{party} crashed before its commit")

    def after(self, party: str) -> None:
        if self.armed.get(party) == "after":
            del self.armed[party]
            self.fired.append((party, "after"))
            raise SimulatedCrash(f"{party} crashed after its commit")


class CrashHooks(CommitHooks):
    def __init__(self, crashes: Crashes, party: str):
        self.crashes, self.party = crashes, party

    def before_commit(self, plan: Plan) -> None:
        self.crashes.before(self.party)

    def after_commit(self, plan: Plan) -> None:
        self.crashes.after(self.party)


# --- in-memory writes and stores -------------------------------------------------------------------

@dataclass
class Write:
    """A foreign write of the in-memory ledger store (and of the in-memory hub store)."""
    holds: Callable[[], bool]
    apply: Callable[[], None]

    def holds_in_memory(self) -> bool:
        return self.holds()

    def apply_in_memory(self) -> None:
        self.apply()


class Queue:
    """Messages (event subjects) waiting for a consumer; at least once, any order."""

    def __init__(self, name: str):
        self.name = name
        self.messages: list[str] = []

    def __len__(self) -> int:
        return len(self.messages)


class MemoryOutbox:
    """``outbox.write(event)`` joins the transaction; committed, the event is on its queue."""

    def __init__(self, routes: Mapping[str, Queue]):
        self.routes = routes

    def write(self, event: DomainEvent) -> Write:
        queue = self.routes[event.type]
        return Write(lambda: True, lambda: queue.messages.append(event.subject))


class NoRelay:
    def dispatch(self, events: Sequence[DomainEvent]) -> None:
        return None  # the outbox write already queued them


class MemoryDistrictStore:
    def __init__(self) -> None:
        self.outgoing: dict[str, Outgoing] = {}
        self.incoming: dict[str, Incoming] = {}

    def get_outgoing(self, transfer_id: str) -> Outgoing | None:
        return self.outgoing.get(transfer_id)

    def get_incoming(self, transfer_id: str) -> Incoming | None:
        return self.incoming.get(transfer_id)

    def statuses(self, direction: str, transfer_ids: Sequence[str]) -> dict[str, str]:
        source = self.outgoing if direction == OUT else self.incoming
        return {tid: source[tid].status for tid in transfer_ids if tid in source}

    def put_outgoing(self, transfer: Outgoing) -> Write:
        return Write(lambda: transfer.id not in self.outgoing,
                     lambda: self.outgoing.__setitem__(transfer.id, transfer))

    def resolve_outgoing(self, transfer: Outgoing) -> Write:
        return Write(lambda: transfer.id in self.outgoing and self.outgoing[transfer.id].status == PENDING,
                     lambda: self.outgoing.__setitem__(transfer.id, transfer))

    def put_incoming(self, transfer: Incoming) -> Write:
        return Write(lambda: transfer.id not in self.incoming,
                     lambda: self.incoming.__setitem__(transfer.id, transfer))

    def pending_outgoing(self, older_than: datetime | None = None) -> list[Outgoing]:
        return [t for t in self.outgoing.values()
                if t.status == PENDING and (older_than is None or t.created_at <= older_than)]


class MemoryHubStore:
    """The hub's tables: every commit all-or-nothing, conditions first (one TransactWriteItems)."""

    def __init__(self, crashes: Crashes):
        self.crashes = crashes
        self.transfers: dict[str, HubTransfer] = {}
        self.net: dict[tuple[str, str], int] = {}
        self.commits = 0

    def get(self, transfer_id: str) -> HubTransfer | None:
        return self.transfers.get(transfer_id)

    def put_new(self, transfer: HubTransfer) -> Write:
        return Write(lambda: transfer.id not in self.transfers,
                     lambda: self.transfers.__setitem__(transfer.id, transfer))

    def resolve(self, transfer: HubTransfer) -> Write:
        def holds() -> bool:
            current = self.transfers.get(transfer.id)
            return current is not None and current.status == "forwarding"

        return Write(holds, lambda: self.transfers.__setitem__(transfer.id, transfer))

    def move_position(self, community: str, asset: str, delta: int) -> Write:
        def apply() -> None:
            self.net[(community, asset)] = self.net.get((community, asset), 0) + delta

        return Write(lambda: True, apply)

    def close(self, transfer: HubTransfer) -> Write:
        from dataclasses import replace

        def holds() -> bool:
            current = self.transfers.get(transfer.id)
            return current is not None and not current.closed

        return Write(holds, lambda: self.transfers.__setitem__(
            transfer.id, replace(self.transfers[transfer.id], closed=True)))

    def commit(self, writes: Sequence[Write]) -> None:
        self.crashes.before("hub")
        if not all(w.holds_in_memory() for w in writes):
            raise InvalidState()
        for w in writes:
            w.apply_in_memory()
        self.commits += 1
        self.crashes.after("hub")

    def open_transfers(self) -> list[HubTransfer]:
        return [t for t in self.transfers.values() if not t.closed]

    def positions(self, community: str | None = None) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (c, asset), net in self.net.items():
            if community is None or c == community:
                out.setdefault(c, {})[asset] = net
        return out

    def scan(self) -> list[HubTransfer]:
        return list(self.transfers.values())


# --- people ----------------------------------------------------------------------------------------

class MemoryPeople:
    """Identity as the district sees it: residents, households, declared remote relatives."""

    def __init__(self) -> None:
        self.people: dict[str, Person] = {}
        self.households: set[str] = set()
        self.declared: set[tuple[str, str, str]] = set()   # (household, community, remote household)

    def add(self, resident_id: str, household_id: str, phone_hash: str | None) -> Person:
        person = Person(resident_id, household_id, True, phone_hash)
        self.people[resident_id] = person
        self.households.add(household_id)
        return person

    def caller(self, caller: Caller) -> Person:
        return self.people[caller.resident_id or ""]

    def resident(self, resident_id: str) -> Person | None:
        return self.people.get(resident_id)

    def household_exists(self, household_id: str) -> bool:
        return household_id in self.households

    def by_phone_hash(self, phone_hash: str) -> Person | None:
        return next((p for p in self.people.values() if p.phone_hash == phone_hash), None)

    def remote_declarations(self, household_id: str, community: str) -> list[str]:
        return sorted(r for h, c, r in self.declared if h == household_id and c == community)

    def declared_remote(self, household_id: str, community: str, remote_household_id: str) -> bool:
        return (household_id, community, remote_household_id) in self.declared


# --- the network -------------------------------------------------------------------------------------

class Network:
    """Which stacks are down, and which answers get lost on their way back (once each)."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.lose_next_answer: set[str] = set()
        self.calls = 0

    def call(self, to: str, work: Callable[[], Any]) -> Any:
        self.calls += 1
        if to in self.down:
            raise PeerUnavailable(details={"reason": "unreachable"})
        try:
            answer = work()
        except PeerUnavailable:
            raise
        except Exception as error:  # the far side's 5xx / crash: no answer for the caller
            raise PeerUnavailable(details={"reason": type(error).__name__}) from None
        if to in self.lose_next_answer:
            self.lose_next_answer.discard(to)
            raise PeerUnavailable(details={"reason": "answer lost"})
        return json.loads(json.dumps(answer))


def _wire(body: Any) -> Any:
    return json.loads(json.dumps(body))


class HubLink:
    """The district's ``Hub`` port of one community, over the network."""

    def __init__(self, district: "District", community: str):
        self.district, self.community = district, community

    def submit(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return self.district.network.call("hub", lambda: self.district.hub.submit(self.community, _wire(message)))

    def position(self) -> dict[str, Any]:
        return self.district.network.call("hub", lambda: self.district.hub.position(self.community))


class CommunityLinks:
    """The hub's ``Communities`` port, over the network."""

    def __init__(self, district: "District"):
        self.district = district

    def known(self, community: str) -> bool:
        return community in self.district.communities

    def ids(self) -> list[str]:
        return sorted(self.district.communities)

    def deliver(self, community: str, message: Mapping[str, Any]) -> dict[str, Any]:
        return self.district.network.call(
            community, lambda: self.district.communities[community].service.receive(_wire(message)))

    def outcome(self, community: str, body: Mapping[str, Any]) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            transfer = self.district.communities[community].service.apply_outcome(body["id"], _wire(body))
            return {"id": transfer.id, "status": transfer.status}

        return self.district.network.call(community, work)

    def reconcile(self, community: str) -> dict[str, Any]:
        return self.district.network.call(community, lambda: self.district.communities[community].service.reconcile())


# --- the district --------------------------------------------------------------------------------------

@dataclass
class Community:
    name: str
    ledger: Ledger
    store: MemoryDistrictStore
    people: MemoryPeople
    service: DistrictService
    forward: Queue
    issued: int = 0


@dataclass
class District:
    clock: Clock = field(default_factory=Clock)
    crashes: Crashes = field(default_factory=Crashes)
    network: Network = field(default_factory=Network)
    communities: dict[str, Community] = field(default_factory=dict)
    hub: HubService = None  # type: ignore[assignment]
    hub_store: MemoryHubStore = None  # type: ignore[assignment]
    deliveries: Queue = field(default_factory=lambda: Queue("hub-deliveries"))
    outcomes: Queue = field(default_factory=lambda: Queue("hub-outcomes"))

    # --- set-up ---
    def add_community(self, name: str, household_cap: int = 0, max_transfer: int = 0) -> Community:
        forward = Queue(f"{name}/district-outgoing")
        ledger = Ledger(InMemoryLedgerStore(CrashHooks(self.crashes, name)), shards=2, household_cap=household_cap)
        store, people = MemoryDistrictStore(), MemoryPeople()
        service = DistrictService(DistrictConfig(name, "test-district", max_transfer), store, ledger, people,
                                  HubLink(self, name), MemoryOutbox({"district.transfer.initiated": forward}),
                                  NoRelay(), now=self.clock)
        community = Community(name, ledger, store, people, service, forward)
        self.communities[name] = community
        return community

    def start_hub(self) -> None:
        self.hub_store = MemoryHubStore(self.crashes)
        self.hub = HubService(self.hub_store, CommunityLinks(self),
                              MemoryOutbox({"hub.transfer.received": self.deliveries,
                                            "hub.transfer.resolved": self.outcomes}),
                              NoRelay(), now=self.clock)

    def fund(self, community: str, household_id: str, amount: int) -> None:
        c = self.communities[community]
        c.ledger.transfer(f"tr_fund_{community}_{household_id}", ISSUANCE, household_account(household_id),
                          ASSET, amount, kind="starting_credits")
        c.issued += amount

    # --- what a message does ---
    def queues(self) -> list[Queue]:
        return [*(c.forward for c in self.communities.values()), self.deliveries, self.outcomes]

    def handler(self, queue: Queue) -> Callable[[str], Any]:
        if queue is self.deliveries:
            return self.hub.deliver
        if queue is self.outcomes:
            return self.hub.notify
        community = next(c for c in self.communities.values() if c.forward is queue)
        return community.service.forward

    def consume(self, queue: Queue, index: int = 0, duplicate: bool = False) -> bool:
        """Hand one message to its consumer; on success it leaves the queue (unless duplicated:
        SQS delivers it again), on failure it stays for a retry. True if it was handled."""
        if not queue.messages:
            return False
        index %= len(queue.messages)
        subject = queue.messages[index]
        try:
            self.handler(queue)(subject)
        except Exception:  # noqa: BLE001 - the batch item fails: SQS retries it
            return False
        if not duplicate:
            queue.messages.pop(index)
        return True

    def sweep(self, party: str) -> dict[str, int]:
        self.clock.advance(6)
        if party == "hub":
            return self.hub.sweep()
        return self.communities[party].service.sweep()

    def settle(self, rounds: int = 60) -> None:
        """Everyone up, nothing armed: drain every queue and sweep until nothing is open."""
        self.network.down.clear()
        self.network.lose_next_answer.clear()
        self.crashes.armed.clear()
        for _ in range(rounds):
            for queue in self.queues():
                for _ in range(len(queue.messages)):
                    if not self.consume(queue):
                        queue.messages.pop(0)  # would go to the DLQ; the sweeps take it from here
            if not self.open():
                return
            for party in [*self.communities, "hub"]:
                self.sweep(party)
        raise AssertionError(f"still open after settling: {self.open()}")

    def open(self) -> list[str]:
        pending = [t.id for c in self.communities.values() for t in c.store.outgoing.values() if t.status == PENDING]
        unclosed = [t.id for t in self.hub_store.transfers.values() if not t.closed]
        queued = [m for q in self.queues() for m in q.messages]
        return sorted(set(pending) | set(unclosed) | set(queued))

    # --- what must hold ---
    def clearing(self, community: str) -> int:
        totals = self.communities[community].ledger.balances(HUB_CLEARING).get(ASSET)
        return totals.posted if totals else 0

    def residents_total(self, community: str) -> int:
        """Posted minutes of every household, resident and the pool (all but issuance and the
        clearing account), read account by account."""
        from functions.ledger.accounts import POOL, resident_account

        c = self.communities[community]
        accounts = [household_account(h) for h in c.people.households]
        accounts += [resident_account(r) for r in c.people.people] + [POOL]
        return sum(t.posted for a in accounts for asset, t in c.ledger.balances(a).items() if asset == ASSET)

    def _held(self, community: str) -> int:
        totals = self.communities[community].ledger.balances(HUB_CLEARING).get(ASSET)
        return totals.pending if totals else 0

    def check_always(self) -> None:
        """What holds after every step, faults and all."""
        for name, c in self.communities.items():
            report = c.ledger.check()
            assert report["ok"], (name, report)
        saved = set(self.network.down), set(self.network.lose_next_answer), dict(self.crashes.armed)
        self.network.down.clear()
        self.network.lose_next_answer.clear()
        self.crashes.armed.clear()
        try:
            for name, c in self.communities.items():
                report = c.service.reconcile(ASSET)
                assert report["ok"], (name, report)
            report = self.hub.report(ask_communities=False)
            assert report["ok"], report
        finally:
            self.network.down, self.network.lose_next_answer = saved[0], saved[1]
            self.crashes.armed.update(saved[2])
        # No transfer is posted on one side and refused on the other, ever.
        for source in self.communities.values():
            for t in source.store.outgoing.values():
                destination = self.communities.get(t.target.community)
                decided = destination.store.incoming.get(t.id) if destination else None
                if t.status == "posted":
                    assert decided is not None and decided.status == CREDITED, (t, decided)
                if t.status == "failed":
                    assert decided is None or decided.status != CREDITED, (t, decided)
                hub = self.hub_store.get(t.id)
                if hub is not None and hub.status in ("credited", "refused") and decided is not None:
                    assert hub.status == decided.status, (hub, decided)

    def check_settled(self, sent: Iterable[str]) -> None:
        """After settling: every transfer posted on both sides or voided on both; no minute
        created or lost in the district."""
        self.check_always()
        assert self.open() == []
        for tid in sent:
            source = next((c for c in self.communities.values() if tid in c.store.outgoing), None)
            if source is None:
                continue  # refused at once (nothing held)
            t = source.store.outgoing[tid]
            destination = self.communities.get(t.target.community)
            decided = destination.store.incoming.get(tid) if destination else None
            hub = self.hub_store.get(tid)
            assert hub is not None and hub.closed, (tid, hub)
            if t.status == "posted":
                assert decided is not None and decided.status == CREDITED and hub.status == CREDITED
                assert source.ledger.get_transfer(tid).status == "posted"
            else:
                assert t.status == "failed", t
                assert (decided is None or decided.status == "refused") and hub.status == "refused"
                assert source.ledger.get_transfer(tid).status == "voided"
        assert sum(self.clearing(c) for c in self.communities) == 0
        assert all(self._held(c) == 0 for c in self.communities)
        issued = sum(c.issued for c in self.communities.values())
        assert sum(self.residents_total(c) for c in self.communities) == issued


def caller(person: Person) -> Caller:
    return Caller(openid=f"o-{person.resident_id}", resident_id=person.resident_id,
                  household_id=person.household_id, status="verified", roles=frozenset({"resident"}))


def hash_of(phone: str) -> str:
    import hashlib

    return hashlib.sha256(f"district-key:{phone}".encode()).hexdigest()


def two_communities(east_cap: int = 0) -> District:
    """``west`` and ``east``: a household each side declared relatives of the other, a resident
    who moved from west to east (same phone), and a stranger in east."""
    district = District()
    west = district.add_community("west")
    east = district.add_community("east", household_cap=east_cap)
    district.start_hub()
    west.people.add("res_daughter", "hh_daughter", hash_of("13800000001"))
    west.people.add("res_mover", "hh_mover_old", hash_of("13800000002"))
    east.people.add("res_parent", "hh_parents", hash_of("13900000001"))
    east.people.add("res_mover_new", "hh_mover_new", hash_of("13800000002"))
    east.people.add("res_stranger", "hh_stranger", hash_of("13900000009"))
    west.people.declared.add(("hh_daughter", "east", "hh_parents"))
    east.people.declared.add(("hh_parents", "west", "hh_daughter"))
    # east's parents send back, too
    west.people.declared.add(("hh_daughter", "east", "hh_stranger"))  # declared here only
    for household, amount in (("hh_daughter", 400), ("hh_mover_old", 300)):
        district.fund("west", household, amount)
    for household, amount in (("hh_parents", 300), ("hh_stranger", 100)):
        district.fund("east", household, amount)
    return district


# What a payer can send (the target as API.md's "to").
TARGETS = {
    "relatives": ("west", "res_daughter", {"community": "east", "household_id": "hh_parents"}),
    "back_to_relatives": ("east", "res_parent", {"community": "west", "household_id": "hh_daughter"}),
    "self_after_move": ("west", "res_mover", {"community": "east", "self": True}),
    "declared_one_side": ("west", "res_daughter", {"community": "east", "household_id": "hh_stranger"}),
    "unknown_receiver": ("east", "res_parent", {"community": "west", "self": True}),
    "unknown_community": ("west", "res_mover", {"community": "north", "self": True}),
}
