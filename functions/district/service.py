"""通存通兑 use cases of a community: send credits to another community, receive them, apply
the hub's outcome, sweep what is stuck, reconcile with the hub.

Each state change is one ledger transaction that carries the district record (and, when sending,
the outbox event) with it: the hold and "pending", the post and "posted", the void and "failed",
the credit and "credited" are written together or not at all. A decision on an incoming
transfer is stored before it is answered, so asking again (a retry, a sweep) gets the same
answer, even if the receiver's situation changed meanwhile.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from functions.core import clock
from functions.core.caller import Caller
from functions.core.errors import (BusinessRuleViolation, Conflict, Forbidden, IdempotencyMismatch, InvalidState,
                                   LimitExceeded, NotFound, NotRelative, UpstreamError)
from functions.core.events import EventRelay, Outbox
from functions.core.observability import count, logger
from functions.district.model import (CREDITED, FAILED, HUB_CLEARING, IN, KIND_IN, KIND_OUT, KIND_REFUND,
                                      LIMIT_EXCEEDED, NOT_RELATIVE, NOT_TRANSFERABLE, OUT, PENDING, POSTED, REFUSED,
                                      UNKNOWN_RECEIVER, Incoming, Outgoing, Refusal, Target, credit_id,
                                      in_flight, incoming_fingerprint, initiated_event, outgoing_fingerprint,
                                      post_id, reconcile, void_id)
from functions.district.ports import DistrictStore, Hub, Ledger, People
from functions.ledger.accounts import household_account, resident_account
from functions.ledger.model import DEFAULT_ASSET, POINT_KINDS

SWEEP_GRACE = timedelta(minutes=5)
RECONCILE_ATTEMPTS = 3  # the two views are read at different instants: a moving transfer settles


class NoDistrict(BusinessRuleViolation):
    code = "NO_DISTRICT"
    default_message = "本社区未加入区域通存通兑"


@dataclass(frozen=True)
class DistrictConfig:
    community_id: str
    district_id: str = ""
    max_transfer: int = 0   # minutes per transfer, 0 = no limit


class DistrictService:
    def __init__(self, config: DistrictConfig, store: DistrictStore, ledger: Ledger, people: People, hub: Hub,
                 outbox: Outbox, relay: EventRelay, now: Callable[[], datetime] = clock.now):
        self.config = config
        self.store, self.ledger, self.people, self.hub = store, ledger, people, hub
        self.outbox, self.relay, self.now = outbox, relay, now

    @property
    def me(self) -> str:
        return self.config.community_id

    # --- sending (the ledger's CrossCommunity port) ---------------------------------------------
    def send(self, caller: Caller, transfer_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if not self.config.district_id:
            raise NoDistrict(details={"community": body["to"]["community"]})
        target = Target.of(body["to"])
        asset, amount, memo = body.get("asset", DEFAULT_ASSET), body["amount"], body.get("memo", "")
        payer = resident_account(caller.resident_id) if body.get("from") == "resident" \
            else household_account(caller.household_id)
        fingerprint = outgoing_fingerprint(payer, target, asset, amount, memo)
        existing = self.store.get_outgoing(transfer_id)
        if existing is not None:
            return self._replayed(existing, fingerprint)
        if self.config.max_transfer and amount > self.config.max_transfer:
            raise LimitExceeded("超出跨社区单笔限额", {"limit": "district_transfer", "max": self.config.max_transfer})
        declared = tuple(self.people.remote_declarations(caller.household_id, target.community))
        if target.household_id is not None and target.household_id not in declared:
            # The rule at home: the payer's household declared that household. (The other side
            # checks its own declaration when the credits arrive.)
            raise NotRelative(details={"household_id": target.household_id, "community": target.community})
        person = self.people.caller(caller)
        if target.self_ and person.phone_hash is None:
            raise UpstreamError(details={"reason": "phone hash unavailable"})
        transfer = Outgoing(id=transfer_id, status=PENDING, payer_account=payer, payer_household=caller.household_id,
                            payer_resident=caller.resident_id, target=target, asset=asset, amount=amount, memo=memo,
                            created_at=self.now(), content_hash=fingerprint, phone_hash=person.phone_hash,
                            declared=declared)
        event = initiated_event(transfer)
        try:
            self.ledger.hold(transfer_id, debit=payer, credit=HUB_CLEARING, asset=asset, amount=amount, kind=KIND_OUT,
                             memo=memo or f"转至{target.community}", actor=caller.resident_id,
                             also=[self.store.put_outgoing(transfer), self.outbox.write(event)])
        except InvalidState:
            # A concurrent replay of the same key committed first.
            stored = self.store.get_outgoing(transfer_id)
            if stored is None:
                raise
            return self._replayed(stored, fingerprint)
        self.relay.dispatch([event])
        count("DistrictTransferSent")
        return {"id": transfer_id, "status": PENDING}

    @staticmethod
    def _replayed(existing: Outgoing, fingerprint: str) -> dict[str, Any]:
        if existing.content_hash != fingerprint:
            raise IdempotencyMismatch()
        return {"id": existing.id, "status": existing.status}

    def forward(self, transfer_id: str) -> str:
        """Hand a pending transfer to the hub (the outbox event's consumer, and the sweep);
        apply the outcome at once if the hub already has one. Raises when the hub does not answer."""
        transfer = self.store.get_outgoing(transfer_id)
        if transfer is None:
            raise NotFound(details={"transfer_id": transfer_id})
        if transfer.status != PENDING:
            return transfer.status
        answer = self.hub.submit(transfer.message(self.me))
        if answer.get("status") in (CREDITED, REFUSED):
            return self.apply_outcome(transfer_id, answer).status
        return transfer.status

    def apply_outcome(self, transfer_id: str, outcome: Mapping[str, Any]) -> Outgoing:
        """The hub's outcome of a transfer sent from here: post the hold (credited) or void it
        (refused), once. A second, equal outcome changes nothing; a contrary one is refused."""
        status = outcome["status"]
        if status not in (CREDITED, REFUSED):
            raise InvalidState(details={"status": status})
        for _ in range(2):
            transfer = self.store.get_outgoing(transfer_id)
            if transfer is None:
                raise NotFound(details={"transfer_id": transfer_id})
            wanted = POSTED if status == CREDITED else FAILED
            if transfer.status != PENDING:
                if transfer.status != wanted:
                    logger.error("district outcome contradicts the stored one",
                                 extra={"transfer_id": transfer_id, "stored": transfer.status, "outcome": status})
                    count("DistrictOutcomeConflict")
                    raise Conflict("与已记录的结果不一致", {"transfer_id": transfer_id, "status": transfer.status})
                return transfer
            resolved = transfer.resolved(wanted, self.now(), outcome.get("failure_code"),
                                         outcome.get("failure_details"))
            try:
                if status == CREDITED:
                    self.ledger.post_pending(post_id(transfer_id), transfer_id, kind=KIND_OUT, memo=transfer.memo,
                                             also=[self.store.resolve_outgoing(resolved)])
                else:
                    self.ledger.void_pending(void_id(transfer_id), transfer_id, reason=outcome.get("failure_code") or "",
                                             kind=KIND_REFUND, also=[self.store.resolve_outgoing(resolved)])
            except InvalidState:
                continue  # resolved concurrently: decide again on what is stored
            count("DistrictTransferPosted" if status == CREDITED else "DistrictTransferFailed")
            return resolved
        raise Conflict("操作冲突，请重试")

    # --- receiving (the hub's delivery) ---------------------------------------------------------
    def receive(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Decide an incoming transfer once; asking again answers the stored decision."""
        transfer_id, fingerprint = message["id"], incoming_fingerprint(message)
        existing = self.store.get_incoming(transfer_id)
        if existing is not None:
            return self._same_incoming(existing, fingerprint)
        base = dict(id=transfer_id, source=message["source"], asset=message["asset"], amount=message["amount"],
                    created_at=self.now(), content_hash=fingerprint)
        try:
            account = self._receiver(message)
            if self.config.max_transfer and message["amount"] > self.config.max_transfer:
                raise Refusal(LIMIT_EXCEEDED, {"limit": "district_transfer", "max": self.config.max_transfer})
            decided = Incoming(status=CREDITED, receiver_account=account, **base)
            try:
                self.ledger.transfer(credit_id(transfer_id), debit=HUB_CLEARING, credit=account,
                                     asset=message["asset"], amount=message["amount"], kind=KIND_IN,
                                     memo=message.get("memo") or f"来自{message['source']}",
                                     also=[self.store.put_incoming(decided)],
                                     # A transfer someone chose to send: refused past the cap (the
                                     # payer keeps it), never donated to this community's pool.
                                     cap_excess="refuse")
            except LimitExceeded as error:
                raise Refusal(LIMIT_EXCEEDED, {"limit": "household_cap", **{
                    k: v for k, v in error.details.items() if k == "cap"}}) from None
        except Refusal as refusal:
            decided = Incoming(status=REFUSED, failure_code=refusal.code, failure_details=refusal.details, **base)
            try:
                self.ledger.execute([], also=[self.store.put_incoming(decided)])
            except InvalidState:
                pass  # decided concurrently: the stored decision stands
        except (InvalidState, IdempotencyMismatch):
            pass  # decided concurrently (its write won): the stored decision stands
        stored = self.store.get_incoming(transfer_id)
        if stored is None:  # pragma: no cover - one of the writes above committed
            raise Conflict()
        count("DistrictTransferReceived" if stored.status == CREDITED else "DistrictTransferRefused")
        return self._same_incoming(stored, fingerprint)

    @staticmethod
    def _same_incoming(existing: Incoming, fingerprint: str) -> dict[str, Any]:
        if existing.content_hash != fingerprint:
            raise Conflict("同一转账编号内容不同", {"transfer_id": existing.id})
        return existing.answer()

    def _receiver(self, message: Mapping[str, Any]) -> str:
        """The account to credit, or ``Refusal``: who may receive across communities is the
        rule at home, applied here too — declared relatives in both directions, or the payer
        themself (a verified resident here with the same keyed phone hash)."""
        if not POINT_KINDS.get(message["asset"]) or not POINT_KINDS[message["asset"]].transferable:
            raise Refusal(NOT_TRANSFERABLE, {"asset": message["asset"]})
        to, payer, source = message["to"], message["payer"], message["source"]
        phone_hash, declared = payer.get("phone_hash"), set(payer.get("declared") or ())

        def relatives(household_id: str) -> bool:
            return household_id in declared and self.people.declared_remote(household_id, source,
                                                                            payer["household_id"])

        if to.get("self"):
            person = self.people.by_phone_hash(phone_hash) if phone_hash else None
            if person is None:
                raise Refusal(UNKNOWN_RECEIVER, {"to": "self"})
            return resident_account(person.resident_id)
        if to.get("resident_id"):
            person = self.people.resident(to["resident_id"])
            if person is None or not person.verified:
                raise Refusal(UNKNOWN_RECEIVER, {"resident_id": to["resident_id"]})
            if not ((phone_hash and person.phone_hash == phone_hash) or relatives(person.household_id)):
                raise Refusal(NOT_RELATIVE, {"resident_id": person.resident_id})
            return resident_account(person.resident_id)
        household_id = to.get("household_id") or ""
        if not self.people.household_exists(household_id):
            raise Refusal(UNKNOWN_RECEIVER, {"household_id": household_id})
        if not relatives(household_id):
            moved = self.people.by_phone_hash(phone_hash) if phone_hash else None
            if moved is None or moved.household_id != household_id:
                raise Refusal(NOT_RELATIVE, {"household_id": household_id})
        return household_account(household_id)

    # --- reading --------------------------------------------------------------------------------
    def outgoing(self, caller: Caller, transfer_id: str) -> Outgoing | None:
        """A transfer sent from here, to the payer's household or an admin (None otherwise)."""
        transfer = self.store.get_outgoing(transfer_id)
        if transfer is None:
            return None
        if not caller.is_admin and transfer.payer_household != caller.household_id:
            raise Forbidden("只能查看本户的转账")
        return transfer

    # --- stuck transfers ------------------------------------------------------------------------
    def sweep(self, grace: timedelta = SWEEP_GRACE) -> dict[str, int]:
        """Ask the hub again about every transfer pending longer than ``grace``: the hub answers
        its state (and takes the transfer if it never got it). A timeout is never taken for a
        refusal: without an answer the transfer stays pending."""
        asked = resolved = unanswered = 0
        for transfer in self.store.pending_outgoing(self.now() - grace):
            asked += 1
            try:
                if self.forward(transfer.id) != PENDING:
                    resolved += 1
            except Exception as error:  # noqa: BLE001 - counted; asked again next time
                unanswered += 1
                logger.warning("district transfer still unanswered",
                               extra={"transfer_id": transfer.id, "error": type(error).__name__})
        if unanswered:
            count("DistrictSweepUnanswered", unanswered)
        return {"asked": asked, "resolved": resolved, "unanswered": unanswered}

    # --- reconciliation -------------------------------------------------------------------------
    def reconcile(self, asset: str = DEFAULT_ASSET) -> dict[str, Any]:
        """This ledger's ``clearing:hub`` against the hub's position for this community, with
        what is in flight between them; read again while a moving transfer makes them differ."""
        report: dict[str, Any] = {}
        for _ in range(RECONCILE_ATTEMPTS):
            view = self.hub.position()
            ours = {a: totals.posted for a, totals in self.ledger.balances(HUB_CLEARING).items()}
            open_transfers = view.get("open") or []
            outgoing = self.store.statuses(OUT, [t["id"] for t in open_transfers if t["source"] == self.me])
            incoming = self.store.statuses(IN, [t["id"] for t in open_transfers if t["destination"] == self.me])
            flight = in_flight(self.me, open_transfers, outgoing, incoming)
            report = reconcile(self.me, ours, view.get("positions") or {}, flight, asset)
            if report["ok"]:
                break
        report["checked_at"] = clock.isoformat(self.now())
        return report
