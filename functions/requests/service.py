"""Service-request use cases: what the HTTP handlers, the queue consumers and the schedules call.

Money and state always move together: posting writes the request and its hold in one
transaction; confirmation, auto-confirmation and dispute resolution all go through ``settle``,
which posts the hold and moves the request to ``settled`` in one transaction; cancellation and
expiry void the hold in the transaction that moves the state.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, Mapping

from functions.core import clock
from functions.core.caller import Caller
from functions.core.errors import (BusinessRuleViolation, Forbidden, IdempotencyMismatch, InvalidState, NotFound,
                                   NotVerified, ValidationError)
from functions.core.events import DomainEvent, EventRelay, Outbox
from functions.core.ids import content_hash, derived_id
from functions.core.validation import field_error
from functions.core.observability import count, logger
from functions.ledger.accounts import ESCROW, household_account, resident_account
from functions.requests import model as lc
from functions.requests.model import (BUILTIN_CATEGORIES, Category, ServiceRequest, accepted_event, apply_changes,
                                      cancelled_event, credit_minutes, posted_event, settled_event)
from functions.requests.ports import (CategoryStore, EvidenceUploads, Households, InsuranceRegister, Ledger,
                                      RequestStore, RiskControls)

DEFAULT_AUTO_CONFIRM = timedelta(hours=48)


@contextmanager
def _closed_by_another(request: ServiceRequest) -> Iterator[None]:
    """Closing transfers have ids derived from the request, so whoever closes it second meets
    the first one's transfer: with other content (another reason) the ledger calls that an
    idempotency mismatch, but no key was sent — the request simply changed state meanwhile."""
    try:
        yield
    except IdempotencyMismatch:
        raise InvalidState("需求状态已变化，请刷新后重试", {"request_id": request.id}) from None


@dataclass
class NewRequest:
    category: str
    title: str
    description: str
    start_at: datetime
    duration_minutes: int
    beneficiary_member_id: str | None = None
    pay_from_resident: bool = False
    on_behalf_of: str | None = None     # 亲情代理: the member a proxy (or an admin) posts for


class RequestService:
    def __init__(self, store: RequestStore, ledger: Ledger, catalog: "CategoryCatalog", outbox: Outbox,
                 relay: EventRelay, *, insurance: InsuranceRegister, households: Households,
                 evidence: EvidenceUploads, risk: RiskControls | None = None, limits: lc.Limits = lc.Limits(),
                 now: Callable[[], datetime] = clock.now):
        self.store, self.ledger, self.catalog, self.limits = store, ledger, catalog, limits
        self.outbox, self.relay = outbox, relay
        self.insurance, self.households, self.evidence, self.now = insurance, households, evidence, now
        self.risk = risk

    # --- posting ----------------------------------------------------------------------------
    def post(self, caller: Caller, new: NewRequest, idempotency_key: str) -> ServiceRequest:
        caller, new, proxy_id = self._as_proxy(caller, new)
        category = self.catalog.get(new.category)
        if new.duration_minutes > category.max_minutes:
            raise field_error("duration_minutes", f"{category.name}单次最长 {category.max_minutes} 分钟")
        now = self.now()
        lc.check_start(new.start_at, now, self.limits)
        if new.beneficiary_member_id and not self.households.has_member(caller.household_id,
                                                                        new.beneficiary_member_id):
            raise field_error("beneficiary_member_id", "受助人不是本户成员")
        request_id = derived_id("req", caller.resident_id, idempotency_key)
        fingerprint = content_hash(new.category, new.title, new.description, clock.isoformat(new.start_at),
                                   new.duration_minutes, new.beneficiary_member_id, new.pay_from_resident)
        # Eventually consistent: a replay that this read misses meets the request's
        # attribute_not_exists below and is answered from a consistent read there.
        existing = self.store.find(request_id, consistent=False)
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
            proxy_id=proxy_id,
        )
        event = posted_event(request, need_text=category.id == "volunteer" or not category.credit_eligible)
        writes = [self.store.write(request), self.outbox.write(event)]
        try:
            if request.credits_held > 0:
                self.ledger.hold(transfer_id=request.hold_transfer_id, debit=payer, credit=ESCROW,
                                 asset="service", amount=request.credits_held, kind="hold",
                                 memo=f"{category.name}需求冻结", actor=caller.resident_id,
                                 request_id=request.id, also=writes)
            else:
                self.ledger.execute([], also=writes)
        except (InvalidState, IdempotencyMismatch):
            # A concurrent replay of the same key got there first.
            return self._replayed(self.store.get(request_id), fingerprint)
        self._published([event], "RequestPosted")
        return request

    def _as_proxy(self, caller: Caller, new: NewRequest) -> tuple[Caller, NewRequest, str | None]:
        """With ``on_behalf_of`` the request is made as the member's household (identity decides
        who may act for whom); without it the caller posts for their own household."""
        if not new.on_behalf_of:
            if caller.household_id is None:
                raise Forbidden("管理员代居民发布需求须指明 on_behalf_of")
            if not caller.is_verified:
                raise NotVerified()
            return caller, new, None
        acting = self.households.act_for(caller, new.on_behalf_of)
        if new.beneficiary_member_id not in (None, acting.member_id):
            raise field_error("beneficiary_member_id", "须与 on_behalf_of 为同一人")
        if acting.by_admin and new.pay_from_resident:
            raise field_error("from", "管理员代办只能从住户账户付款")
        return acting.caller, replace(new, beneficiary_member_id=acting.member_id), acting.proxy_id

    @staticmethod
    def _replayed(existing: ServiceRequest, fingerprint: str) -> ServiceRequest:
        if existing.content_hash != fingerprint:
            raise IdempotencyMismatch()
        return existing

    # --- reading ----------------------------------------------------------------------------
    def get(self, request_id: str) -> ServiceRequest:
        return self.store.get(request_id)

    def view(self, caller: Caller, request_id: str) -> ServiceRequest:
        """An open need is in the feed for every verified resident; once taken, a request is
        seen by its parties (the requester's household, the volunteer and theirs) and admins
        only. Anyone else is told it does not exist."""
        request = self.store.get(request_id)
        if request.status == lc.OPEN or caller.is_admin or request.is_party(caller) or (
                caller.household_id is not None and caller.household_id == request.volunteer_household_id):
            return request
        raise NotFound("没有这个需求", {"request_id": request_id})

    def feed(self, caller: Caller, category: str | None, limit: int, cursor: dict | None):
        if category:
            self.catalog.get(category)
        return self.store.feed(category, limit, cursor, exclude_household=caller.household_id)

    # --- lifecycle --------------------------------------------------------------------------
    def accept(self, caller: Caller, request_id: str) -> ServiceRequest:
        request = self.store.get(request_id)
        changes = lc.accept(request, caller, self.now())
        # Insured the moment it is accepted, in the same transaction: a volunteer at a school gate
        # never waits for a queue before checking in. The request and its event say so, so
        # check-in and the insurance queue need not look the record up.
        insured = self.insurance.record_write(replace(request, **changes))
        changes["insured"] = True if insured is not None else None
        event = accepted_event(replace(request, **changes))
        writes = [self.outbox.write(event), *([insured] if insured is not None else [])]
        try:
            accepted = self.store.transition(request, changes, also=writes)
        except InvalidState:
            raise lc.AlreadyAccepted() from None
        self._published([event], "RequestAccepted")
        return accepted

    def check_in(self, caller: Caller, request_id: str, evidence_key: str | None) -> ServiceRequest:
        request = self.store.get(request_id)
        category = self.catalog.get(request.category)
        self._check_evidence_key(request, evidence_key)
        needs_insurance = category.requires_insurance
        insured = (request.insured or self.insurance.has_record(request_id)
                   if needs_insurance and request.is_volunteer(caller) else True)
        changes = lc.check_in(request, caller, self.now(), evidence_key, insured, needs_insurance, self.limits)
        self._verify_upload(request, evidence_key)
        return self.store.transition(request, changes)

    def complete(self, caller: Caller, request_id: str, minutes: int, evidence_key: str | None) -> ServiceRequest:
        request = self.store.get(request_id)
        category = self.catalog.get(request.category)
        self._check_evidence_key(request, evidence_key)
        changes = lc.complete(request, caller, self.now(), minutes, evidence_key, category.requires_evidence,
                              category.max_minutes, self.limits)
        self._verify_upload(request, evidence_key)
        return self.store.transition(request, changes)

    def confirm(self, caller: Caller, request_id: str, rating: int | None, comment: str | None,
                on_behalf_of: str | None = None) -> ServiceRequest:
        request = self.store.get(request_id)
        actor = caller.actor
        if on_behalf_of:
            if on_behalf_of not in (request.beneficiary_member_id, request.requester_id):
                raise field_error("on_behalf_of", "不是该需求的受助人")
            caller = self.households.act_for(caller, on_behalf_of).caller
        lc.may_confirm(request, caller)
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
        settled = replace(request, **changes)
        event = settled_event(settled, changes["settled_at"])
        writes = [self.store.write(request, changes, expected_status=request.status), self.outbox.write(event)]
        if self.risk is not None and amount > 0:
            # The community's limits, as conditional counters inside this very transaction.
            writes += self.risk.settlement_writes(settled, amount, changes["settled_at"])
        with _closed_by_another(request):
            if request.credits_held == 0:
                self.ledger.execute([], also=writes)
            elif amount == 0:
                self.ledger.void_pending(transfer_id=derived_id("tr", "void", request.id),
                                         pending_id=request.hold_transfer_id, actor=actor,
                                         reason="服务未产生积分", also=writes)
            else:
                self.ledger.settle_hold(settlement_id=settlement_id, pending_id=request.hold_transfer_id,
                                        payee=resident_account(request.volunteer_id), amount=amount,
                                        actor=actor, also=writes)
        self._published([event], "RequestSettled")
        return settled

    def _published(self, events: list[DomainEvent], metric: str) -> None:
        """After the commit: hand the events to the relay now (it never raises; what it cannot
        send now its sweep sends later) and count the business event."""
        self.relay.dispatch(events)
        count(metric)

    def cancel(self, caller: Caller, request_id: str, reason: str) -> ServiceRequest:
        request = self.store.get(request_id)
        lc.may_cancel(request, caller)
        return self._release(request, lc.CANCELLED, caller.actor, reason)

    def _release(self, request: ServiceRequest, status: str, actor: str, reason: str) -> ServiceRequest:
        """Cancel or expire: void the hold, close the request and tell the others (insurance
        cancels the record of an accepted one), in one transaction."""
        changes = {"status": status, "reason": reason, "closed_by": actor, "credits_paid": 0}
        closed = replace(request, **changes)
        event = cancelled_event(request, closed, self.now())
        writes = [self.store.write(request, changes, expected_status=request.status), self.outbox.write(event)]
        with _closed_by_another(request):
            if request.credits_held:
                self.ledger.void_pending(transfer_id=derived_id("tr", "void", request.id),
                                         pending_id=request.hold_transfer_id, actor=actor, reason=reason,
                                         also=writes)
            else:
                self.ledger.execute([], also=writes)
        self._published([event], "RequestCancelled" if status == lc.CANCELLED else "RequestExpired")
        return closed

    def dispute(self, caller: Caller, request_id: str, reason: str) -> ServiceRequest:
        request = self.store.get(request_id)
        return self.store.transition(request, lc.dispute(request, caller, self.now(), reason))

    def resolve(self, caller: Caller, request_id: str, outcome: str, minutes: int | None,
                reason: str) -> ServiceRequest:
        request = self.store.get(request_id)
        lc.may_resolve(request, caller)
        if outcome == "pay":
            # In service with no completion: the booked minutes, unless the admin says otherwise.
            claimed = request.completed_minutes if request.status == lc.DISPUTED else request.duration_minutes
            return self.settle(request, minutes if minutes is not None else claimed or 0, caller.openid,
                               reason=reason)
        return self._release(request, lc.CANCELLED, caller.openid, reason)

    def _check_evidence_key(self, request: ServiceRequest, key: str | None) -> None:
        # Keys are issued per request by the evidence endpoint; refuse anything else so one
        # request cannot point at another's photos.
        if key is not None and not key.startswith(f"evidence/{request.id}/"):
            raise field_error("evidence_key", "该影像不是为此需求签发的")

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
            except BusinessRuleViolation as refused:
                # A community limit (risk controls) refuses it today: it stays completed for an
                # admin to resolve, and the next run tries again.
                logger.info("auto-confirm refused", extra={"request_id": request.id, "code": refused.code})
                continue
        return count

    def watch_due(self) -> dict[str, int]:
        """Every non-final state has an exit: accepted services nobody checked in to, and services
        in progress long past their end, are dealt with as the community configured."""
        now, counts = self.now(), {"released": 0, "cancelled": 0, "completed": 0, "flagged": 0}
        for request in self.store.due(lc.ACCEPTED, now - self.limits.no_show_after):
            changes = lc.no_show(request, now, self.limits)
            if changes is None:
                continue
            try:
                if changes["status"] == lc.CANCELLED:
                    self._release(request, lc.CANCELLED, "system", changes["reason"])
                    counts["cancelled"] += 1
                else:
                    event = lc.released_event(request, now)
                    self.store.transition(request, changes, also=[self.outbox.write(event)])
                    self._published([event], "RequestReleased")
                    counts["released"] += 1
            except InvalidState:
                continue  # checked in or cancelled meanwhile
        for request in self.store.due(lc.IN_SERVICE, now - self.limits.overdue_after):
            changes = lc.overdue(request, now, self.limits)
            if changes is None:
                continue
            try:
                self.store.transition(request, changes)
            except InvalidState:
                continue  # completed meanwhile
            counts["completed" if changes.get("status") == lc.COMPLETED else "flagged"] += 1
        return counts

    def starting_between(self, start: datetime, end: datetime) -> Iterable[ServiceRequest]:
        return self.store.due(lc.ACCEPTED, end, since=start)


# --- categories --------------------------------------------------------------------------------


# Every order step reads its category's tariff; a warm function keeps the handful of
# categories for this long instead of one Query per step. An admin's change is seen at once by
# the function that made it and within this time by the others.
CACHE_SECONDS = 30.0


class CategoryCatalog:
    def __init__(self, store: CategoryStore, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 cache_seconds: float = CACHE_SECONDS, monotonic: Callable[[], float] = time.monotonic):
        self._store = store
        self._defaults = _with_overrides(overrides or {})
        self._cache_seconds, self._monotonic = cache_seconds, monotonic
        self._stored: dict[str, Category] | None = None
        self._loaded_at = 0.0

    def forget(self) -> None:
        """Drop the cached copy (tests start each case on a fresh account)."""
        self._stored = None

    def _load(self) -> dict[str, Category]:
        now = self._monotonic()
        if self._stored is None or now - self._loaded_at >= self._cache_seconds:
            self._stored, self._loaded_at = self._store.load_all(), now
        return self._stored

    def all(self) -> list[Category]:
        merged = {**self._defaults, **self._load()}
        return [merged[key] for key in sorted(merged, key=_builtin_order)]

    def get(self, category_id: str) -> Category:
        stored = self._load()
        category = stored.get(category_id) or self._defaults.get(category_id)
        if category is None:
            raise NotFound("没有这个服务类别", {"category": category_id})
        return category

    def update(self, category_id: str, changes: Mapping[str, Any], actor: str) -> Category:
        self._stored = None  # decide on what is stored now, not on a cached copy
        updated = apply_changes(self.get(category_id), changes)
        self._store.save(updated, actor)
        self._stored = None
        return updated

    def add_credit_item(self, category_id: str, name: str, actor: str) -> Category:
        """A new credit-eligible category with the 志愿帮 tariff (an accepted high-frequency need);
        adding the same id again returns what is stored."""
        self._stored = None
        existing = self._load().get(category_id)
        if existing is not None:
            return existing
        category = replace(BUILTIN_CATEGORIES["volunteer"], id=category_id, name=name[:20], credit_eligible=True,
                           builtin=False)
        self._store.save(category, actor)
        self._stored = None
        return category

    def seed(self, actor: str = "seed") -> int:
        """Write the defaults that are not stored yet (demo/local); returns how many were written."""
        stored = self._store.load_all()
        missing = [c for key, c in self._defaults.items() if key not in stored]
        for category in missing:
            self._store.save(category, actor)
        self._stored = None
        return len(missing)


def _builtin_order(category_id: str) -> tuple[int, str]:
    order = list(BUILTIN_CATEGORIES)
    return (order.index(category_id) if category_id in order else len(order), category_id)


def _with_overrides(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Category]:
    categories = dict(BUILTIN_CATEGORIES)
    for category_id, changes in overrides.items():
        if category_id not in categories:
            raise ValidationError(f"tariff override names unknown category {category_id}")
        categories[category_id] = apply_changes(categories[category_id], changes)
    return categories


def configured_overrides() -> dict[str, dict[str, Any]]:
    """``TIMEBANK_TARIFF_OVERRIDES`` is JSON written by infra/ from the community config."""
    raw = os.environ.get("TIMEBANK_TARIFF_OVERRIDES", "")
    return json.loads(raw) if raw else {}


def auto_confirm_period() -> timedelta:
    hours = os.environ.get("TIMEBANK_AUTO_CONFIRM_HOURS")
    return timedelta(hours=int(hours)) if hours else DEFAULT_AUTO_CONFIRM
