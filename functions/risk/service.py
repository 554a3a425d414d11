"""Risk use cases: the limits a settlement must keep (as writes of its own transaction), the
flags computed from settlements, and their review by admins."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Callable

from functions.core import clock
from functions.core.errors import InvalidState, NotFound
from functions.core.events import DomainEvent
from functions.core.messaging import PoisonMessage
from functions.core.observability import count, logger
from functions.ledger.model import AlreadyReversed
from functions.requests.model import SETTLED_EVENT, OwnRequest, ServiceRequest
from functions.risk.model import (DAILY_MINUTES, OPEN, RESOLVED, REVERSE, Flag, RiskLimits, Settlement, assess,
                                  community_day, limit_exceeded, pair_counter, pair_of, volunteer_counter)
from functions.risk.ports import CounterStore, FlagStore, ReversalLedger, SettledRequests


class RiskService:
    def __init__(self, counters: CounterStore, flags: FlagStore, requests: SettledRequests, ledger: ReversalLedger,
                 limits: RiskLimits, now: Callable[[], datetime] = clock.now):
        self.counters, self.flags, self.requests, self.ledger = counters, flags, requests, ledger
        self.limits, self.now = limits, now

    # --- limits, inside the settlement (requests' ``RiskControls`` port) -------------------------
    def settlement_writes(self, request: ServiceRequest, amount: int, at: datetime) -> list[Any]:
        """Credit within one household is never paid (OWN_REQUEST); a single credit above the
        daily limit is refused at once; the rest is decided by the counters' conditions when the
        settlement commits."""
        if request.volunteer_household_id and request.volunteer_household_id == request.household_id:
            raise OwnRequest("不能为本户成员的服务结算时间积分", {"household_id": request.household_id})
        limits = self.limits
        if limits.daily_minutes and amount > limits.daily_minutes:
            raise limit_exceeded(DAILY_MINUTES, limits.daily_minutes, 0)
        day = community_day(at)
        writes = []
        if request.volunteer_id and (limits.daily_minutes or limits.daily_services):
            writes.append(self.counters.volunteer_day(volunteer_counter(request.volunteer_id, day), amount, limits))
        if limits.pair_daily and request.volunteer_household_id:
            pair = pair_of(request.volunteer_household_id, request.household_id)
            writes.append(self.counters.pair_day(pair_counter(pair, day), limits))
        return writes

    # --- flags, from settlement events (the ``risk-flags`` queue) --------------------------------
    def record_settlement(self, event: DomainEvent) -> list[Flag]:
        """Remember one settlement and raise (or update) the flags its pair now deserves;
        a redelivered event changes nothing more."""
        if event.type != SETTLED_EVENT:
            raise PoisonMessage(f"risk does not handle {event.type}")
        data = event.data
        volunteer_household, requester_household = data.get("volunteer_household_id"), data.get("household_id")
        if not data.get("credits_paid") or not isinstance(volunteer_household, str) \
                or not isinstance(requester_household, str) or volunteer_household == requester_household:
            return []  # nothing credited, or not between two households
        # The event says all the flags need (its time is the settlement's), so the request is not
        # read; a reversal reads the settlement's transfer from the request when an admin asks.
        settlement = Settlement(
            pair=pair_of(volunteer_household, requester_household), request_id=event.subject,
            settled_at=event.occurred_at, volunteer_household_id=volunteer_household,
            requester_household_id=requester_household, volunteer_id=str(data.get("volunteer_id") or ""),
            amount=int(data.get("credits_paid") or 0), settlement_transfer_id=None)
        self.flags.record(settlement)
        recent = self.flags.recent(settlement.pair, settlement.settled_at - self.limits.lookback)
        # What admins reviewed only takes settlements out of a window: when the whole window
        # raises nothing, the pair's review state need not be read.
        findings = assess(recent, settlement, self.limits)
        if findings:
            findings = assess(recent, settlement, self.limits, self.flags.reviewed_through(settlement.pair))
        raised = []
        for finding in findings:
            flag = self.flags.raise_or_update(finding, self.now())
            logger.info("risk flag", extra={"flag_id": flag.id, "kind": flag.kind, "count": flag.count})
            count("RiskFlagRaised")
            raised.append(flag)
        return raised

    # --- review (admins) ------------------------------------------------------------------------
    def list_flags(self, status: str, limit: int, cursor: dict | None) -> tuple[list[Flag], dict | None]:
        return self.flags.by_status(status, limit, cursor)

    def resolve(self, flag_id: str, outcome: str, reason: str, actor: str) -> Flag:
        """``ok``: nothing is wrong; ``reverse``: the flagged settlements are reversed in the
        ledger (payout and payment, one linked transaction per settlement, ids derived from the
        flag: a retry after a failure resumes where it stopped and reverses nothing twice)."""
        flag = self.flags.get(flag_id)
        if flag is None:
            raise NotFound("没有这条风险提示", {"flag_id": flag_id})
        if flag.status == RESOLVED:
            if flag.outcome == outcome:
                return flag  # a retry of the same decision
            raise InvalidState("该风险提示已处理", {"status": flag.status, "outcome": flag.outcome})
        reversals: list[str] = []
        if outcome == REVERSE:
            for request_id in flag.request_ids:
                reversals += self._reverse_settlement(flag, request_id, reason, actor)
        resolved = replace(flag, status=RESOLVED, outcome=outcome, reason=reason, resolved_by=actor,
                           resolved_at=self.now(), reversal_ids=tuple(reversals))
        if not self.flags.resolve(resolved):
            current = self.flags.get(flag_id)
            if current is not None and current.status == RESOLVED and current.outcome == outcome:
                return current
            raise InvalidState("该风险提示已处理", {"flag_id": flag_id})
        logger.info("risk flag resolved", extra={"audit": True, "action": "risk.flag.resolve", "flag_id": flag.id,
                                                 "outcome": outcome, "reversals": len(reversals)})
        return resolved

    def _reverse_settlement(self, flag: Flag, request_id: str, reason: str, actor: str) -> list[str]:
        """The ledger's admin reversal (``reverse_transfer``: a settlement's payout and payment
        in one linked transaction, never twice). Reversed already — by this flag's earlier
        attempt or by an admin's correction of the transfer itself — it only reports the ids."""
        request = self.requests.get(request_id)
        settlement = request.settlement_transfer_id
        if not settlement:
            return []
        originals = [f"{settlement}.pay", f"{settlement}.post"]
        try:
            self.ledger.reverse_transfer(originals[0], reason, actor)
        except AlreadyReversed:
            pass
        stored = [self.ledger.get_transfer(original) for original in originals]
        return [t.reversed_by for t in stored if t is not None and t.reversed_by]


def flag_open(flag: Flag) -> bool:
    return flag.status == OPEN
