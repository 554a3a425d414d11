"""The hub's use cases: take a transfer from its source, deliver it to its destination, record
the outcome (and move the positions), report it back to the source, sweep what is stuck, and
report on the whole district.

Each recorded change is one transaction with its outbox event (``hub.transfer.received`` →
the ``hub-deliveries`` queue, ``hub.transfer.resolved`` → ``hub-outcomes``), so the next step
cannot be lost between a commit and a publish. A call that gets no answer raises: the message
is retried by SQS and, past that, by the sweep; the hub never decides for a community.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from functions.core import clock
from functions.core.errors import Conflict, Forbidden, InvalidState, NotFound
from functions.core.events import EventRelay, Outbox
from functions.core.observability import count, logger
from functions.hub.model import (CREDITED, FORWARDING, REFUSED, UNKNOWN_COMMUNITY, HubTransfer, check_positions,
                                 fingerprint, received_event, resolved_event, source_answer_matches)
from functions.hub.ports import Communities, HubStore

SWEEP_GRACE = timedelta(minutes=5)
STUCK_AFTER = timedelta(days=1)


class HubService:
    def __init__(self, store: HubStore, communities: Communities, outbox: Outbox, relay: EventRelay,
                 now: Callable[[], datetime] = clock.now):
        self.store, self.communities, self.outbox, self.relay, self.now = store, communities, outbox, relay, now

    # --- from the source ----------------------------------------------------------------------
    def submit(self, sender: str, message: Mapping[str, Any]) -> dict[str, Any]:
        """Record a transfer a community sends (idempotent by id); answers its current state."""
        if message["source"] != sender:
            # A community's key speaks for that community only.
            raise Forbidden("只能提交本社区的转账", {"source": message["source"]}, code="WRONG_SENDER")
        existing = self.store.get(message["id"])
        if existing is not None:
            return self._same(existing, message)
        known = message["destination"] != sender and self.communities.known(message["destination"])
        transfer = HubTransfer(id=message["id"], source=sender, destination=message["destination"],
                               asset=message["asset"], amount=message["amount"], status=FORWARDING,
                               message=dict(message), content_hash=fingerprint(message), created_at=self.now())
        if not known:
            transfer = transfer.resolved(REFUSED, self.now(), UNKNOWN_COMMUNITY,
                                         {"community": message["destination"]})
        event = received_event(transfer) if known else resolved_event(transfer)
        try:
            self.store.commit([self.store.put_new(transfer), self.outbox.write(event)])
        except InvalidState:
            stored = self.store.get(transfer.id)  # a concurrent submission of the same id won
            if stored is None:
                raise
            return self._same(stored, message)
        self.relay.dispatch([event])
        count("HubTransferReceived" if known else "HubTransferUnroutable")
        return transfer.answer()

    @staticmethod
    def _same(existing: HubTransfer, message: Mapping[str, Any]) -> dict[str, Any]:
        if existing.content_hash != fingerprint(message) or existing.source != message["source"]:
            raise Conflict("同一转账编号内容不同", {"transfer_id": existing.id})
        return existing.answer()

    # --- to the destination ---------------------------------------------------------------------
    def deliver(self, transfer_id: str) -> str:
        """Ask the destination to decide (or to say what it decided): record the answer."""
        transfer = self._get(transfer_id)
        if transfer.status != FORWARDING:
            return transfer.status
        answer = self.communities.deliver(transfer.destination, transfer.message)
        if answer.get("id") != transfer_id or answer.get("status") not in (CREDITED, REFUSED):
            raise InvalidState("收款社区的回答无效", {"transfer_id": transfer_id})
        return self.record_outcome(transfer, answer).status

    def record_outcome(self, transfer: HubTransfer, answer: Mapping[str, Any]) -> HubTransfer:
        resolved = transfer.resolved(answer["status"], self.now(), answer.get("failure_code"),
                                     answer.get("failure_details"))
        writes = [self.store.resolve(resolved)]
        if resolved.status == CREDITED:
            writes += [self.store.move_position(transfer.source, transfer.asset, transfer.amount),
                       self.store.move_position(transfer.destination, transfer.asset, -transfer.amount)]
        event = resolved_event(resolved)
        try:
            self.store.commit([*writes, self.outbox.write(event)])
        except InvalidState:
            stored = self._get(transfer.id)
            if stored.status != resolved.status:  # the destination's decisions are stored: cannot happen
                logger.error("hub outcome contradicts the recorded one",
                             extra={"transfer_id": transfer.id, "stored": stored.status, "answer": resolved.status})
                raise Conflict(details={"transfer_id": transfer.id}) from None
            return stored
        self.relay.dispatch([event])
        count("HubTransferCredited" if resolved.status == CREDITED else "HubTransferRefused")
        return resolved

    # --- back to the source -----------------------------------------------------------------------
    def notify(self, transfer_id: str) -> bool:
        """Report the outcome to the source; closed once the source answers it applied it."""
        transfer = self._get(transfer_id)
        if transfer.closed or transfer.status == FORWARDING:
            return transfer.closed
        answer = self.communities.outcome(transfer.source, transfer.answer())
        if not source_answer_matches(transfer.status, answer):
            logger.error("the source did not apply the outcome",
                         extra={"transfer_id": transfer_id, "status": transfer.status, "answer": answer.get("status")})
            raise Conflict(details={"transfer_id": transfer_id})
        try:
            self.store.commit([self.store.close(transfer)])
        except InvalidState:
            pass  # closed concurrently
        return True

    def _get(self, transfer_id: str) -> HubTransfer:
        transfer = self.store.get(transfer_id)
        if transfer is None:
            raise NotFound(details={"transfer_id": transfer_id})
        return transfer

    # --- reading ----------------------------------------------------------------------------------
    def position(self, community: str) -> dict[str, Any]:
        """A community's net positions and the open transfers naming it (what it reconciles with)."""
        open_transfers = [t.open_view() for t in self.store.open_transfers()
                          if community in (t.source, t.destination)]
        return {"community": community, "positions": self.store.positions(community).get(community, {}),
                "open": sorted(open_transfers, key=lambda t: t["id"])}

    # --- stuck transfers --------------------------------------------------------------------------
    def sweep(self, grace: timedelta = SWEEP_GRACE) -> dict[str, int]:
        """Ask again about every open transfer older than ``grace``: the destination about those
        still forwarding, the source about those resolved but not applied there."""
        cutoff = self.now() - grace
        asked = done = unanswered = 0
        for transfer in self.store.open_transfers():
            if (transfer.updated_at or transfer.created_at) > cutoff:
                continue
            asked += 1
            try:
                if transfer.status == FORWARDING:
                    self.deliver(transfer.id)
                if self.notify(transfer.id):
                    done += 1
            except Exception as error:  # noqa: BLE001 - counted; asked again next time
                unanswered += 1
                logger.warning("hub transfer still unanswered",
                               extra={"transfer_id": transfer.id, "error": type(error).__name__})
        if unanswered:
            count("HubSweepUnanswered", unanswered)
        return {"asked": asked, "closed": done, "unanswered": unanswered}

    # --- the district-wide report -----------------------------------------------------------------
    def report(self, ask_communities: bool = True) -> dict[str, Any]:
        """Positions sum to zero and are the fold of the credited transfers; each community's
        clearing account matches its position (each community reconciles, asked over HTTP)."""
        transfers = self.store.scan()
        positions = self.store.positions()
        violations = check_positions(transfers, positions)
        cutoff = self.now() - STUCK_AFTER
        stuck = [t.id for t in transfers if not t.closed and t.created_at < cutoff]
        if stuck:
            violations.append({"type": "stuck_transfers", "count": len(stuck), "transfer_ids": stuck[:20]})
        communities: dict[str, Any] = {}
        if ask_communities:
            for community in self.communities.ids():
                try:
                    answer = self.communities.reconcile(community)
                except Exception as error:  # noqa: BLE001 - a community that does not answer is a finding
                    communities[community] = {"ok": False, "error": type(error).__name__}
                    violations.append({"type": "community_unreachable", "community": community})
                    continue
                communities[community] = {k: answer.get(k) for k in ("ok", "ours", "hub", "in_flight", "assets")}
                if not answer.get("ok"):
                    violations.append({"type": "clearing_mismatch", "community": community,
                                       "mismatches": answer.get("mismatches")})
        totals: dict[str, int] = {}
        for assets in positions.values():
            for asset, net in assets.items():
                totals[asset] = totals.get(asset, 0) + net
        return {"ok": not violations, "positions": positions, "totals": totals, "communities": communities,
                "open": len([t for t in transfers if not t.closed]), "transfers": len(transfers),
                "violations": violations, "checked_at": clock.isoformat(self.now())}
