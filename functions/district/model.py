"""通存通兑 on the community side: a resident's credits spent in another community of the
district, through the district clearing hub. Plain Python: values, the wire messages, and the
reconciliation rule.

The protocol (Interledger's two-phase conditional transfer, TigerBeetle's pending/post/void,
Credit Commons' hub between mutual-credit ledgers — the hub holds positions, the communities
hold the accounts)::

    source community            hub                        destination community
    hold payer → clearing:hub   .                          .
    (pending, one transaction   .                          .
     with the record + event) ──submit──▶ record (forwarding)
                                          ──deliver──▶     check receiver, relatives, limits, cap;
                                                           credit clearing:hub → receiver, or refuse
                                          ◀── credited / refused (stored: asked again, same answer)
                                 record outcome, position
    post (or void) the hold ◀──outcome──  (closed once the source answered)

Every step is idempotent by the transfer id (the hold's id is the transfer id; the
destination's credit, the post and the void derive theirs from it; the hub writes with
conditions). Messages leave through each stack's outbox and relay; a call that gets no answer
is asked again — by the queue's retry and by the sweeps — and nothing is ever concluded from a
missing answer. So a transfer ends posted on both sides or voided on both, never mixed.

Clearing account ``clearing:hub`` (unbounded, like issuance): an outgoing transfer credits it
when posted, an incoming one debits it. Its posted balance is what this community's residents
sent out minus what they received: the hub's position for it, once the transfers in flight
are counted (``reconcile``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Iterable, Mapping

from functions.core.events import DomainEvent, new_event
from functions.core.ids import content_hash, derived_id
from functions.ledger.accounts import clearing_account

HUB_CLEARING = clearing_account("hub")

OUT = "out"
IN = "in"

# Outgoing transfers, as API.md names them.
PENDING = "pending"
POSTED = "posted"
FAILED = "failed"
# The destination's decision, as it travels back through the hub.
CREDITED = "credited"
REFUSED = "refused"
FORWARDING = "forwarding"   # the hub has it and has not heard from the destination yet

# failure_code of a refused transfer
NOT_RELATIVE = "NOT_RELATIVE"
UNKNOWN_RECEIVER = "UNKNOWN_RECEIVER"
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
UNKNOWN_COMMUNITY = "UNKNOWN_COMMUNITY"
NOT_TRANSFERABLE = "NOT_TRANSFERABLE"
FAILURE_CODES = (NOT_RELATIVE, UNKNOWN_RECEIVER, LIMIT_EXCEEDED, UNKNOWN_COMMUNITY, NOT_TRANSFERABLE)

INITIATED_EVENT = "district.transfer.initiated"

KIND_OUT = "district_out"        # payer → clearing:hub (held, then posted)
KIND_REFUND = "district_refund"  # the hold voided: the credits are back
KIND_IN = "district_in"          # clearing:hub → receiver


def credit_id(transfer_id: str) -> str:
    """The destination's ledger transfer for a cross-community transfer."""
    return derived_id("tr", "district-in", transfer_id)


def post_id(transfer_id: str) -> str:
    return derived_id("tr", "district-post", transfer_id)


def void_id(transfer_id: str) -> str:
    return derived_id("tr", "district-void", transfer_id)


@dataclass(frozen=True)
class Target:
    """Who receives in the destination community: a household, a resident, or the payer
    themself after a move (found there by the keyed hash of the phone)."""
    community: str
    household_id: str | None = None
    resident_id: str | None = None
    self_: bool = False

    def wire(self) -> dict[str, Any]:
        if self.self_:
            return {"self": True}
        if self.household_id:
            return {"household_id": self.household_id}
        return {"resident_id": self.resident_id}

    def view(self) -> dict[str, Any]:
        return {"community": self.community, **self.wire()}

    @staticmethod
    def of(to: Mapping[str, Any]) -> "Target":
        return Target(community=to["community"], household_id=to.get("household_id"),
                      resident_id=to.get("resident_id"), self_=bool(to.get("self")))


@dataclass(frozen=True)
class Outgoing:
    """A transfer this community's resident sent to another community."""
    id: str
    status: str                    # pending → posted | failed
    payer_account: str
    payer_household: str
    payer_resident: str
    target: Target
    asset: str
    amount: int
    memo: str
    created_at: datetime
    content_hash: str
    phone_hash: str | None = None            # the payer's keyed phone hash (never the phone)
    declared: tuple[str, ...] = ()           # households of the destination the payer's household declared
    failure_code: str | None = None
    failure_details: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None

    def message(self, source: str) -> dict[str, Any]:
        """What travels to the hub and on to the destination: ids, figures and a keyed hash."""
        return {"id": self.id, "source": source, "destination": self.target.community, "asset": self.asset,
                "amount": self.amount, "memo": self.memo, "to": self.target.wire(),
                "payer": {"household_id": self.payer_household, "phone_hash": self.phone_hash,
                          "declared": list(self.declared)}}

    def resolved(self, status: str, at: datetime, failure_code: str | None = None,
                 failure_details: Mapping[str, Any] | None = None) -> "Outgoing":
        return replace(self, status=status, updated_at=at, failure_code=failure_code,
                       failure_details=dict(failure_details or {}))


def outgoing_fingerprint(payer_account: str, target: Target, asset: str, amount: int, memo: str) -> str:
    return content_hash("district-out", payer_account, target.community, target.household_id or "",
                        target.resident_id or "", target.self_, asset, amount, memo)


@dataclass(frozen=True)
class Incoming:
    """A transfer from another community, as this community decided it (once, forever)."""
    id: str
    status: str                    # credited | refused
    source: str
    asset: str
    amount: int
    created_at: datetime
    content_hash: str
    receiver_account: str | None = None
    failure_code: str | None = None
    failure_details: dict[str, Any] = field(default_factory=dict)

    def answer(self) -> dict[str, Any]:
        return outcome_body(self.id, self.status, self.failure_code, self.failure_details)


def incoming_fingerprint(message: Mapping[str, Any]) -> str:
    payer = message.get("payer") or {}
    return content_hash("district-in", message["id"], message["source"], message["asset"], message["amount"],
                        sorted((message.get("to") or {}).items()), payer.get("household_id") or "",
                        payer.get("phone_hash") or "")


def outcome_body(transfer_id: str, status: str, failure_code: str | None = None,
                 failure_details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": transfer_id, "status": status}
    if status == REFUSED:
        body["failure_code"] = failure_code
        body["failure_details"] = dict(failure_details or {})
    return body


class Refusal(Exception):
    """The destination says no: a business answer, stored and sent back, not an error."""

    def __init__(self, code: str, details: Mapping[str, Any] | None = None):
        super().__init__(code)
        self.code = code
        self.details = dict(details or {})


def initiated_event(transfer: Outgoing) -> DomainEvent:
    return new_event(INITIATED_EVENT, transfer.id, transfer.created_at,
                     {"destination": transfer.target.community, "asset": transfer.asset, "amount": transfer.amount})


# --- reconciliation ----------------------------------------------------------------------------

def in_flight(me: str, hub_open: Iterable[Mapping[str, Any]], outgoing: Mapping[str, str],
              incoming: Mapping[str, str]) -> dict[str, int]:
    """What the hub counts and this ledger does not yet, per asset.

    ``hub_open``: the hub's open transfers naming this community; ``outgoing``/``incoming``:
    this community's status of those ids. The hub moves a position when the destination's
    credit is recorded there, so the two views differ by: transfers out that the hub recorded
    credited and this ledger has not posted yet (+), and transfers in that this ledger credited
    and the hub has not recorded yet (−). Anything else open counts on neither side.
    """
    delta: dict[str, int] = {}
    for transfer in hub_open:
        asset, amount = transfer["asset"], int(transfer["amount"])
        if transfer["source"] == me and transfer["status"] == CREDITED and outgoing.get(transfer["id"]) == PENDING:
            delta[asset] = delta.get(asset, 0) + amount
        elif transfer["destination"] == me and transfer["status"] == FORWARDING \
                and incoming.get(transfer["id"]) == CREDITED:
            delta[asset] = delta.get(asset, 0) - amount
    return delta


def reconcile(me: str, ours: Mapping[str, int], hub: Mapping[str, int], flight: Mapping[str, int],
              asset: str) -> dict[str, Any]:
    """``ours + in_flight == hub`` for every asset; ``ours``/``hub``/``in_flight`` of the main
    asset at the top, every asset under ``assets``."""
    assets = sorted(set(ours) | set(hub) | set(flight))
    rows = {a: {"ours": int(ours.get(a, 0)), "hub": int(hub.get(a, 0)), "in_flight": int(flight.get(a, 0))}
            for a in assets}
    mismatches = [a for a, row in rows.items() if row["ours"] + row["in_flight"] != row["hub"]]
    main = rows.get(asset, {"ours": 0, "hub": 0, "in_flight": 0})
    return {"ok": not mismatches, "community": me, **main, "assets": rows, "mismatches": mismatches}
