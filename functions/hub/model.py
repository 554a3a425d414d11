"""The district clearing hub, in plain Python: what it records of each transfer between two
communities, the net positions it keeps, and the checks of its district-wide report.

The hub holds positions, the communities hold the accounts (Credit Commons): it never moves a
resident's credits. Per community and asset it keeps the net position — what that
community's residents sent out minus what they received — and it moves a position only when
the destination has credited the receiver, in the same transaction that records the outcome.
So Σ of every community's position is zero per asset at all times, and a community's position
equals its ``clearing:hub`` balance once the transfers in flight are counted.

A transfer here: ``forwarding`` (recorded, delivered until the destination answers) →
``credited`` or ``refused`` (the destination's stored decision), then closed once the source
has applied it (posted or voided). The wire values are the district domain's
(``functions.district.model``): the two stacks share only this contract, not code.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Iterable, Mapping

from functions.core.events import DomainEvent, new_event
from functions.core.ids import content_hash

FORWARDING = "forwarding"
CREDITED = "credited"
REFUSED = "refused"
POSTED = "posted"     # the source's answer once it applied "credited"
FAILED = "failed"     # … and "refused"
UNKNOWN_COMMUNITY = "UNKNOWN_COMMUNITY"

RECEIVED_EVENT = "hub.transfer.received"   # → deliver to the destination
RESOLVED_EVENT = "hub.transfer.resolved"   # → report the outcome to the source


@dataclass(frozen=True)
class HubTransfer:
    id: str
    source: str
    destination: str
    asset: str
    amount: int
    status: str
    message: dict[str, Any]           # what the destination gets (ids, figures, a keyed hash)
    content_hash: str
    created_at: datetime
    updated_at: datetime | None = None
    failure_code: str | None = None
    failure_details: dict[str, Any] = field(default_factory=dict)
    closed: bool = False              # the source applied the outcome

    def answer(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.status == REFUSED:
            body["failure_code"] = self.failure_code
            body["failure_details"] = dict(self.failure_details)
        return body

    def open_view(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "destination": self.destination, "asset": self.asset,
                "amount": self.amount, "status": self.status}

    def resolved(self, status: str, at: datetime, failure_code: str | None = None,
                 failure_details: Mapping[str, Any] | None = None) -> "HubTransfer":
        return replace(self, status=status, updated_at=at, failure_code=failure_code,
                       failure_details=dict(failure_details or {}))


def fingerprint(message: Mapping[str, Any]) -> str:
    payer = message.get("payer") or {}
    return content_hash("hub", message["id"], message["source"], message["destination"], message["asset"],
                        message["amount"], sorted((message.get("to") or {}).items()),
                        payer.get("household_id") or "", payer.get("phone_hash") or "",
                        sorted(payer.get("declared") or ()), message.get("memo") or "")


def received_event(transfer: HubTransfer) -> DomainEvent:
    return new_event(RECEIVED_EVENT, transfer.id, transfer.created_at, {"destination": transfer.destination})


def resolved_event(transfer: HubTransfer) -> DomainEvent:
    return new_event(RESOLVED_EVENT, transfer.id, transfer.updated_at or transfer.created_at,
                     {"source": transfer.source, "status": transfer.status})


def source_answer_matches(status: str, answer: Mapping[str, Any]) -> bool:
    """The source posted what was credited, voided what was refused."""
    return answer.get("status") == (POSTED if status == CREDITED else FAILED)


# --- the district-wide report --------------------------------------------------------------------

def positions_from(transfers: Iterable[HubTransfer]) -> dict[str, dict[str, int]]:
    """community -> asset -> net position, folded from the credited transfers."""
    fold: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in transfers:
        if t.status == CREDITED:
            fold[t.source][t.asset] += t.amount
            fold[t.destination][t.asset] -= t.amount
    return {c: {a: n for a, n in assets.items()} for c, assets in fold.items()}


def check_positions(transfers: list[HubTransfer], stored: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    """The stored positions are the fold of the transfers and sum to zero per asset."""
    violations: list[dict[str, Any]] = []
    expected = positions_from(transfers)
    for community in sorted(set(expected) | set(stored)):
        want, have = expected.get(community, {}), stored.get(community, {})
        for asset in sorted(set(want) | set(have)):
            if want.get(asset, 0) != have.get(asset, 0):
                violations.append({"type": "position_mismatch", "community": community, "asset": asset,
                                   "expected": want.get(asset, 0), "stored": have.get(asset, 0)})
    totals: dict[str, int] = defaultdict(int)
    for assets in stored.values():
        for asset, net in assets.items():
            totals[asset] += net
    for asset, total in sorted(totals.items()):
        if total != 0:
            violations.append({"type": "positions_do_not_sum_to_zero", "asset": asset, "total": total})
    return violations
