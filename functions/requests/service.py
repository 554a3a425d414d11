"""Service-request use cases: what the HTTP handlers, the queue consumers and the schedules call.

Money and state always move together: posting writes the request and its hold in one
transaction; confirmation, auto-confirmation and dispute resolution all go through ``settle``,
which posts the hold and moves the request to ``settled`` in one transaction; cancellation and
expiry void the hold in the transaction that moves the state.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Protocol

from functions.core import clock
from functions.core.errors import IdempotencyMismatch, InvalidState, NotFound, ValidationError
from functions.core.ids import content_hash, derived_id
from functions.core.messaging import Publisher
from functions.identity.caller import Caller
from functions.ledger.accounts import ESCROW, household_account, resident_account
from functions.requests import lifecycle as lc
from functions.requests.catalog import CategoryCatalog
from functions.requests.categories import credit_minutes
from functions.requests.lifecycle import ServiceRequest
from functions.requests.store import RequestStore

MATCHING_QUEUE = "matching"
INSURANCE_QUEUE = "insurance"
DEFAULT_AUTO_CONFIRM = timedelta(hours=48)


class InsuranceRegister(Protocol):
    def has_record(self, request_id: str) -> bool: ...


class Household(Protocol):
    def has_member(self, household_id: str, member_id: str) -> bool: ...


class EvidenceUploads(Protocol):
    def verify_upload(self, request_id: str, key: str) -> None:
        """Raise a 422 unless the photo under ``key`` was uploaded and is acceptable (a refused
        photo is deleted)."""


class VolunteerStats(Protocol):
    """Completion, ratings and recent load that matching ranks by; idempotent per request."""
    def record_accepted(self, request: ServiceRequest) -> bool: ...
    def record_outcome(self, request: ServiceRequest) -> bool: ...


@dataclass
class NewRequest:
    category: str
    title: str
    description: str
    start_at: datetime
    duration_minutes: int
    beneficiary_member_id: str | None = None
    pay_from_resident: bool = False


class RequestService:
    def __init__(self, store: RequestStore, ledger: Any, catalog: CategoryCatalog, publisher: Publisher,
                 insurance: InsuranceRegister, households: Household, stats: VolunteerStats,
                 evidence: EvidenceUploads, now: Callable[[], datetime] = clock.now):
        self.store, self.ledger, self.catalog = store, ledger, catalog
        self.publisher, self.insurance, self.households, self.now = publisher, insurance, households, now
        self.stats, self.evidence = stats, evidence

    # --- posting ----------------------------------------------------------------------------
    def post(self, caller: Caller, new: NewRequest, idempotency_key: str) -> ServiceRequest:
        category = self.catalog.get(new.category)
        if new.duration_minutes > category.max_minutes:
            raise ValidationError(details={"fields": {
                "duration_minutes": f"at most {category.max_minutes} for {category.id}"}})
        now = self.now()
        if new.start_at <= now:
            raise ValidationError(details={"fields": {"start_at": "must be in the future"}})
        if new.beneficiary_member_id and not self.households.has_member(caller.household_id,
                                                                        new.beneficiary_member_id):
            raise ValidationError(details={"fields": {"beneficiary_member_id": "is not a member of your household"}})
        request_id = derived_id("req", caller.resident_id, idempotency_key)
        fingerprint = content_hash(new.category, new.title, new.description, clock.isoformat(new.start_at),
                                   new.duration_minutes, new.beneficiary_member_id, new.pay_from_resident)
        existing = self.store.find(request_id)
        if existing is not None:
            return self._replayed(existing, fingerprint)
        payer = resident_account(caller.resident_id) if new.pay_from_resident \
            else household_account(caller.household_id)
        request = ServiceRequest(
            id=request_id, status=lc.OPEN, category=category.id, title=new.title,
            description=new.description, start_at=new.start_at, duration_minutes=new.duration_minutes,
            requester_id=caller.resident_id, household_id=caller.household_id, payer_account=payer,
            hold_transfer_id=derived_id("tr", "hold", request_id),
            credits_held=credit_minutes(category, new.duration_minutes),
            created_at=now, content_hash=fingerprint, beneficiary_member_id=new.beneficiary_member_id,
        )
        create = self.store.write(request)
        try:
            if request.credits_held > 0:
                self.ledger.hold(transfer_id=request.hold_transfer_id, debit=payer, credit=ESCROW,
                                 asset="service", amount=request.credits_held, kind="hold",
                                 memo=f"{category.name}需求冻结", actor=caller.resident_id,
                                 request_id=request.id, also=[create])
            else:
                self.ledger.execute([], also=[create])
        except (InvalidState, IdempotencyMismatch):
            # A concurrent replay of the same key got there first.
            return self._replayed(self.store.get(request_id), fingerprint)
        self.publisher.publish(MATCHING_QUEUE, {"type": "request.posted", "request_id": request.id},
                               deduplication_id=f"posted:{request.id}")
        return request

    @staticmethod
    def _replayed(existing: ServiceRequest, fingerprint: str) -> ServiceRequest:
        if existing.content_hash != fingerprint:
            raise IdempotencyMismatch()
        return existing

    # --- reading ----------------------------------------------------------------------------
    def get(self, request_id: str) -> ServiceRequest:
        return self.store.get(request_id)

    def feed(self, caller: Caller, category: str | None, limit: int, cursor: dict | None):
        if category:
            self.catalog.get(category)
        return self.store.feed(category, limit, cursor, exclude_household=caller.household_id)

    # --- lifecycle --------------------------------------------------------------------------
    def accept(self, caller: Caller, request_id: str) -> ServiceRequest:
        request = self.store.get(request_id)
        changes = lc.accept(request, caller, self.now())
        try:
            accepted = self.store.transition(request, changes)
        except InvalidState:
            raise lc.AlreadyAccepted() from None
        self.publisher.publish(INSURANCE_QUEUE, {"type": "request.accepted", "request_id": request_id},
                               deduplication_id=f"accepted:{request_id}")
        # After the commit and idempotent: a crash here leaves stats a little stale, never wrong twice.
        self.stats.record_accepted(accepted)
        return accepted

    def check_in(self, caller: Caller, request_id: str, evidence_key: str | None) -> ServiceRequest:
        request = self.store.get(request_id)
        category = self.catalog.get(request.category)
        self._check_evidence_key(request, evidence_key)
        needs_insurance = category.requires_insurance
        insured = self.insurance.has_record(request_id) if needs_insurance and request.is_volunteer(caller) else True
        changes = lc.check_in(request, caller, self.now(), evidence_key, insured, needs_insurance)
        self._verify_upload(request, evidence_key)
        return self.store.transition(request, changes)

    def complete(self, caller: Caller, request_id: str, minutes: int, evidence_key: str | None) -> ServiceRequest:
        request = self.store.get(request_id)
        category = self.catalog.get(request.category)
        self._check_evidence_key(request, evidence_key)
        changes = lc.complete(request, caller, self.now(), minutes, evidence_key, category.requires_evidence)
        self._verify_upload(request, evidence_key)
        return self.store.transition(request, changes)

    def confirm(self, caller: Caller, request_id: str, rating: int | None, comment: str | None) -> ServiceRequest:
        request = self.store.get(request_id)
        lc.may_confirm(request, caller)
        actor = caller.resident_id or caller.openid
        return self.settle(request, request.completed_minutes or 0, actor,
                           extra={"rating": rating, "comment": comment})

    def settle(self, request: ServiceRequest, minutes: int, actor: str,
               extra: dict[str, Any] | None = None, reason: str | None = None) -> ServiceRequest:
        """The one settlement: pay the volunteer for ``minutes`` (capped by the hold), release the
        rest, and mark the request settled, all in one transaction."""
        category = self.catalog.get(request.category)
        amount = min(credit_minutes(category, minutes), request.credits_held)
        settlement_id = derived_id("tr", "settle", request.id)
        changes = {"status": lc.SETTLED, "credits_paid": amount, "settled_at": self.now(),
                   "settlement_transfer_id": settlement_id if amount else None, "closed_by": actor,
                   **{k: v for k, v in (extra or {}).items() if v is not None}}
        if reason:
            changes["reason"] = reason
        write = self.store.write(request, changes, expected_status=request.status)
        if request.credits_held == 0:
            self.ledger.execute([], also=[write])
        elif amount == 0:
            self.ledger.void_pending(transfer_id=derived_id("tr", "void", request.id),
                                     pending_id=request.hold_transfer_id, actor=actor,
                                     reason="服务未产生积分", also=[write])
        else:
            self.ledger.settle_hold(settlement_id=settlement_id, pending_id=request.hold_transfer_id,
                                    payee=resident_account(request.volunteer_id), amount=amount,
                                    actor=actor, also=[write])
        return self._closed(request.id)

    def _closed(self, request_id: str) -> ServiceRequest:
        closed = self.store.get(request_id)
        if closed.volunteer_id:
            self.stats.record_outcome(closed)
        return closed

    def cancel(self, caller: Caller, request_id: str, reason: str) -> ServiceRequest:
        request = self.store.get(request_id)
        lc.may_cancel(request, caller)
        cancelled = self._release(request, lc.CANCELLED, caller.resident_id or caller.openid, reason)
        if request.status == lc.ACCEPTED:
            # The insured window will not be used: the insurance record is marked cancelled.
            self.publisher.publish(INSURANCE_QUEUE, {"type": "request.cancelled", "request_id": request_id},
                                   deduplication_id=f"cancelled:{request_id}")
        return cancelled

    def _release(self, request: ServiceRequest, status: str, actor: str, reason: str) -> ServiceRequest:
        write = self.store.write(request, {"status": status, "reason": reason, "closed_by": actor,
                                           "credits_paid": 0}, expected_status=request.status)
        if request.credits_held:
            self.ledger.void_pending(transfer_id=derived_id("tr", "void", request.id),
                                     pending_id=request.hold_transfer_id, actor=actor, reason=reason,
                                     also=[write])
        else:
            self.ledger.execute([], also=[write])
        return self._closed(request.id)

    def dispute(self, caller: Caller, request_id: str, reason: str) -> ServiceRequest:
        request = self.store.get(request_id)
        return self.store.transition(request, lc.dispute(request, caller, self.now(), reason))

    def resolve(self, caller: Caller, request_id: str, outcome: str, minutes: int | None,
                reason: str) -> ServiceRequest:
        request = self.store.get(request_id)
        lc.may_resolve(request, caller)
        if outcome == "pay":
            return self.settle(request, minutes if minutes is not None else request.completed_minutes or 0,
                               caller.openid, reason=reason)
        return self._release(request, lc.CANCELLED, caller.openid, reason)

    def _check_evidence_key(self, request: ServiceRequest, key: str | None) -> None:
        # Keys are issued per request by the evidence endpoint; refuse anything else so one
        # request cannot point at another's photos.
        if key is not None and not key.startswith(f"evidence/{request.id}/"):
            raise ValidationError(details={"fields": {"evidence_key": "was not issued for this request"}})

    def _verify_upload(self, request: ServiceRequest, key: str | None) -> None:
        # After the lifecycle rules, so only the volunteer, in the right state, gets a photo
        # looked at (and a refused one deleted).
        if key is not None:
            self.evidence.verify_upload(request.id, key)

    # --- schedules --------------------------------------------------------------------------
    def expire_due(self) -> int:
        """Unaccepted needs whose start time has passed expire and release their hold."""
        count = 0
        for request in self.store.due(lc.OPEN, self.now()):
            try:
                self._release(request, lc.EXPIRED, "system", "无人接单，已过期")
                count += 1
            except InvalidState:
                continue  # accepted or cancelled meanwhile
        return count

    def auto_confirm_due(self) -> int:
        """Completions nobody confirmed within the period settle as if confirmed."""
        count = 0
        for request in self.store.due(lc.COMPLETED, self.now()):
            try:
                self.settle(request, request.completed_minutes or 0, "system", reason="超时自动确认")
                count += 1
            except InvalidState:
                continue
        return count

    def starting_between(self, start: datetime, end: datetime) -> Iterable[ServiceRequest]:
        return self.store.due(lc.ACCEPTED, end, since=start)
