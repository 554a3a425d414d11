"""Service requests as plain rules: the categories ("6+X") and their tariffs, and the life of a
request (order).

``credit_minutes`` is THE tariff function: the hold taken when a need is posted and the
payment made at settlement both come from it, so the two can never disagree. Arithmetic is
exact (``Fraction``): credits are integer minutes and a multiplier such as 1.5 must not drift
through floats.

    open → accepted → in_service → completed → settled
    open → cancelled | expired            accepted → cancelled
    completed → disputed → resolved (settled or cancelled)

Each lifecycle rule checks who may act and from which state, and returns the changes to store;
the service applies them with a storage condition on the state it read, so two racing actors
cannot both win (first-wins accept, confirm once).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Mapping

from functions.core.caller import Caller
from functions.core.errors import BusinessRuleViolation, Forbidden, InvalidState, ValidationError
from functions.core.events import DomainEvent, new_event
from functions.core.validation import Bool, Dec, Int, ListOf, Schema, Str, field_error

MAX_SERVICE_MINUTES = 24 * 60
CREDIT_MODES = ("per_hour", "per_service")




@dataclass(frozen=True)
class RoundingBand:
    """Minutes past the last whole hour up to ``max_minutes`` (inclusive) earn ``credit_minutes``."""
    max_minutes: int
    credit_minutes: int


# The community's customary rounding: ≤15 min → 0, 15–45 → half an hour, 45–60 → an hour.
HALF_HOUR_ROUNDING: tuple[RoundingBand, ...] = (
    RoundingBand(15, 0), RoundingBand(45, 30), RoundingBand(60, 60),
)


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    credit_mode: str = "per_hour"
    multiplier: Decimal = Decimal("1")
    rounding: tuple[RoundingBand, ...] = HALF_HOUR_ROUNDING  # empty = exact minutes
    max_minutes: int = 240
    credit_per_service: int = 60  # per_service: minutes of credit for one service
    credit_eligible: bool = True
    requires_insurance: bool = False
    requires_evidence: bool = False
    builtin: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "credit_mode": self.credit_mode,
            "multiplier": float(self.multiplier),
            "rounding": [{"max_minutes": b.max_minutes, "credit_minutes": b.credit_minutes}
                         for b in self.rounding],
            "max_minutes": self.max_minutes,
            "credit_per_service": self.credit_per_service,
            "credit_eligible": self.credit_eligible,
            "requires_insurance": self.requires_insurance,
            "requires_evidence": self.requires_evidence,
        }


BUILTIN_CATEGORIES: dict[str, Category] = {c.id: c for c in (
    Category("pickup", "接送帮", credit_mode="per_service", credit_per_service=30, max_minutes=120,
             requires_insurance=True, requires_evidence=True),
    Category("childcare", "托管帮", max_minutes=240, requires_insurance=True, requires_evidence=True),
    Category("tutoring", "辅导帮", max_minutes=180),
    Category("parcel", "快递帮", credit_mode="per_service", credit_per_service=15, max_minutes=60),
    Category("companion", "陪护帮", max_minutes=240, requires_insurance=True, requires_evidence=True),
    Category("pet", "宠爱帮", max_minutes=480, requires_insurance=False, requires_evidence=True),
    Category("volunteer", "志愿帮", max_minutes=240),
)}


def credit_minutes(category: Category, minutes: int) -> int:
    """Credit earned for ``minutes`` of service in ``category``.

    Minutes beyond ``max_minutes`` earn nothing; per-hour credit counts whole hours in full and
    rounds the rest of the last hour by the category's bands; the multiplier applies last and
    rounds half up to a whole minute.
    """
    if minutes < 0:
        raise ValueError("minutes must not be negative")
    if not category.credit_eligible or minutes == 0:
        return 0
    if category.credit_mode == "per_service":
        base = category.credit_per_service
    else:
        served = min(minutes, category.max_minutes)
        whole_hours, rest = divmod(served, 60)
        base = whole_hours * 60 + _round_rest(category.rounding, rest)
    credit = Fraction(base) * Fraction(category.multiplier)
    return int(credit + Fraction(1, 2)) if credit > 0 else 0


def _round_rest(bands: tuple[RoundingBand, ...], rest: int) -> int:
    if rest == 0 or not bands:
        return rest
    for band in bands:
        if rest <= band.max_minutes:
            return band.credit_minutes
    return rest  # bands always end at 60 (validated), so this is unreachable for rest < 60


# ---- admin changes -------------------------------------------------------------------------

def _bands_in_order(changes: dict[str, Any]) -> None:
    bands = changes.get("rounding")
    if not bands:
        return
    tops = [band["max_minutes"] for band in bands]
    if any(b <= a for a, b in zip(tops, tops[1:])):
        raise field_error("rounding", "计分档位须按 max_minutes 递增")
    if tops[-1] != 60:
        raise field_error("rounding", "最后一个计分档位须止于 60 分钟")


ROUNDING_BAND = Schema({"max_minutes": Int(min=1, max=60), "credit_minutes": Int(min=0, max=60)})
CATEGORY_CHANGES = Schema({
    "name": Str(max_len=20, required=False, label="名称"),
    "credit_mode": Str(choices=CREDIT_MODES, required=False, label="计分方式"),
    "multiplier": Dec(min=Decimal("0"), max=Decimal("10"), places=2, required=False, label="积分系数"),
    "rounding": ListOf(ROUNDING_BAND, max_items=12, required=False, label="计分档位",
                       description="bands in increasing max_minutes, the last ending at 60; [] = exact minutes"),
    "max_minutes": Int(min=1, max=MAX_SERVICE_MINUTES, required=False, label="单次最长分钟"),
    "credit_per_service": Int(min=0, max=MAX_SERVICE_MINUTES, required=False, label="每次积分"),
    "credit_eligible": Bool(required=False, label="是否计积分"),
    "requires_insurance": Bool(required=False, label="是否需要保险"),
    "requires_evidence": Bool(required=False, label="是否需要影像"),
}, name="CategoryChanges", description="only the fields given change (null or absent: unchanged)",
    check=_bands_in_order)


def apply_changes(current: Category, changes: Mapping[str, Any]) -> Category:
    """Validate a tariff change (``PUT /v1/admin/categories/{id}``, and infra/'s tariff overrides
    of a community file) and return the new category."""
    updates = CATEGORY_CHANGES.validate(dict(changes))
    if "rounding" in updates:
        updates["rounding"] = tuple(RoundingBand(b["max_minutes"], b["credit_minutes"]) for b in updates["rounding"])
    return replace(current, **updates)


# ---- the lifecycle ----------------------------------------------------------------------------

OPEN, ACCEPTED, IN_SERVICE, COMPLETED, SETTLED = "open", "accepted", "in_service", "completed", "settled"
CANCELLED, EXPIRED, DISPUTED = "cancelled", "expired", "disputed"
STATUSES = (OPEN, ACCEPTED, IN_SERVICE, COMPLETED, SETTLED, CANCELLED, EXPIRED, DISPUTED)
FINAL = frozenset({SETTLED, CANCELLED, EXPIRED})



class OwnRequest(BusinessRuleViolation):
    code = "OWN_REQUEST"
    default_message = "不能接自己家庭发布的需求"


class InsurancePending(BusinessRuleViolation):
    code = "INSURANCE_PENDING"
    default_message = "保险记录尚未生成，暂不能开始服务"


class EvidenceRequired(BusinessRuleViolation):
    code = "EVIDENCE_REQUIRED"
    default_message = "该类服务需要上传服务影像"


class AlreadyAccepted(InvalidState):
    code = "ALREADY_ACCEPTED"
    default_message = "该需求已被其他志愿者接单"


@dataclass
class ServiceRequest:
    id: str
    status: str
    category: str
    title: str
    description: str
    start_at: datetime
    duration_minutes: int
    requester_id: str
    household_id: str
    payer_account: str
    hold_transfer_id: str
    credits_held: int
    created_at: datetime
    content_hash: str
    beneficiary_member_id: str | None = None
    volunteer_id: str | None = None
    volunteer_household_id: str | None = None
    credits_paid: int | None = None
    accepted_at: datetime | None = None
    checked_in_at: datetime | None = None
    completed_at: datetime | None = None
    completed_minutes: int | None = None
    settled_at: datetime | None = None
    settlement_transfer_id: str | None = None
    evidence_keys: list[str] = field(default_factory=list)
    rating: int | None = None
    comment: str | None = None
    reason: str | None = None          # of cancellation, dispute or resolution
    disputed_by: str | None = None
    closed_by: str | None = None       # who confirmed/cancelled/resolved (resident id, admin openid, "system")
    proxy_id: str | None = None        # 亲情代理 who posted it for the beneficiary (on_behalf_of)

    # --- who is who ---------------------------------------------------------------------
    def is_requester_side(self, caller: Caller) -> bool:
        return caller.household_id is not None and caller.household_id == self.household_id

    def is_volunteer(self, caller: Caller) -> bool:
        return caller.resident_id is not None and caller.resident_id == self.volunteer_id

    def is_party(self, caller: Caller) -> bool:
        return self.is_requester_side(caller) or self.is_volunteer(caller)


def _require_state(request: ServiceRequest, *allowed: str) -> None:
    if request.status not in allowed:
        raise InvalidState(f"需求当前状态为 {request.status}，不能执行此操作",
                           {"status": request.status, "allowed": list(allowed)})


def accept(request: ServiceRequest, caller: Caller, now: datetime) -> dict[str, Any]:
    if request.is_requester_side(caller):
        raise OwnRequest()
    if request.status in (ACCEPTED, IN_SERVICE, COMPLETED, SETTLED, DISPUTED):
        raise AlreadyAccepted()
    _require_state(request, OPEN)
    return {"status": ACCEPTED, "volunteer_id": caller.resident_id,
            "volunteer_household_id": caller.household_id, "accepted_at": now}


def check_in(request: ServiceRequest, caller: Caller, now: datetime, evidence_key: str | None,
             has_insurance: bool, requires_insurance: bool) -> dict[str, Any]:
    if not request.is_volunteer(caller):
        raise Forbidden("只有接单的志愿者可以签到")
    _require_state(request, ACCEPTED)
    if requires_insurance and not has_insurance:
        raise InsurancePending()
    changes: dict[str, Any] = {"status": IN_SERVICE, "checked_in_at": now}
    if evidence_key:
        changes["evidence_keys"] = [*request.evidence_keys, evidence_key]
    return changes


def complete(request: ServiceRequest, caller: Caller, now: datetime, minutes: int,
             evidence_key: str | None, requires_evidence: bool) -> dict[str, Any]:
    if not request.is_volunteer(caller):
        raise Forbidden("只有接单的志愿者可以完成服务")
    _require_state(request, IN_SERVICE)
    if not 1 <= minutes <= MAX_SERVICE_MINUTES:
        raise ValidationError(details={"fields": {"minutes": f"must be from 1 to {MAX_SERVICE_MINUTES}"}})
    keys = [*request.evidence_keys, evidence_key] if evidence_key else list(request.evidence_keys)
    if requires_evidence and not keys:
        raise EvidenceRequired()
    return {"status": COMPLETED, "completed_at": now, "completed_minutes": minutes, "evidence_keys": keys}


def may_confirm(request: ServiceRequest, caller: Caller) -> None:
    if not (request.is_requester_side(caller) or caller.is_admin):
        raise Forbidden("只有需求方家庭或管理员可以确认")
    _require_state(request, COMPLETED)


def may_cancel(request: ServiceRequest, caller: Caller) -> None:
    if not (request.is_requester_side(caller) and caller.resident_id == request.requester_id) \
            and not caller.is_admin:
        raise Forbidden("只有发布者或管理员可以取消")
    _require_state(request, OPEN, ACCEPTED)


def dispute(request: ServiceRequest, caller: Caller, now: datetime, reason: str) -> dict[str, Any]:
    if not request.is_party(caller):
        raise Forbidden("只有服务双方可以提出争议")
    _require_state(request, COMPLETED)
    return {"status": DISPUTED, "reason": reason, "disputed_by": caller.resident_id}


def may_resolve(request: ServiceRequest, caller: Caller) -> None:
    if not caller.is_admin:
        raise Forbidden()
    _require_state(request, DISPUTED)


def auto_confirm_due(request: ServiceRequest, period: timedelta) -> datetime | None:
    if request.status != COMPLETED or request.completed_at is None:
        return None
    return request.completed_at + period


# ---- domain events ------------------------------------------------------------------------------
# What the other domains learn of a request, written in the transaction of the change. The data
# is ids and figures only (no titles or names): consumers that need more read it by id.

POSTED_EVENT, ACCEPTED_EVENT, CANCELLED_EVENT, SETTLED_EVENT = (
    "request.posted", "request.accepted", "request.cancelled", "request.settled")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def posted_event(request: ServiceRequest) -> DomainEvent:
    return new_event(POSTED_EVENT, request.id, request.created_at, {
        "category": request.category, "household_id": request.household_id,
        "start_at": _iso(request.start_at), "duration_minutes": request.duration_minutes,
        "credits_held": request.credits_held, "proxy_id": request.proxy_id})


def accepted_event(request: ServiceRequest) -> DomainEvent:
    return new_event(ACCEPTED_EVENT, request.id, request.accepted_at or request.created_at, {
        "category": request.category, "volunteer_id": request.volunteer_id,
        "volunteer_household_id": request.volunteer_household_id, "start_at": _iso(request.start_at),
        "duration_minutes": request.duration_minutes, "posted_at": _iso(request.created_at)})


def cancelled_event(before: ServiceRequest, after: ServiceRequest, at: datetime) -> DomainEvent:
    """Cancelled or expired (``status``); ``was_accepted`` tells insurance to cancel a record."""
    return new_event(CANCELLED_EVENT, after.id, at, {
        "status": after.status, "category": after.category, "was_accepted": before.status != OPEN,
        "volunteer_id": after.volunteer_id, "closed_by": after.closed_by,
        "by_requester": after.closed_by == after.requester_id, "posted_at": _iso(after.created_at)})


def settled_event(request: ServiceRequest, at: datetime) -> DomainEvent:
    return new_event(SETTLED_EVENT, request.id, at, {
        "category": request.category, "volunteer_id": request.volunteer_id,
        "volunteer_household_id": request.volunteer_household_id, "household_id": request.household_id,
        "credits_paid": request.credits_paid or 0, "minutes": request.completed_minutes or 0,
        "rating": request.rating, "accepted_at": _iso(request.accepted_at),
        "posted_at": _iso(request.created_at)})
