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
from functions.core.errors import BusinessRuleViolation, Forbidden, InvalidState, LimitExceeded, ValidationError
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


class Backdated(BusinessRuleViolation):
    code = "BACKDATED"
    default_message = "已超过可补录的时间范围"


class TooEarly(BusinessRuleViolation):
    code = "CHECK_IN_TOO_EARLY"
    default_message = "还没到签到时间"


NO_SHOW_RELEASE, NO_SHOW_CANCEL = "release", "cancel"
OVERDUE_COMPLETE, OVERDUE_FLAG = "complete", "flag"


@dataclass(frozen=True)
class Limits:
    """What a community allows of a service's times and claims (``infra/communities/<id>.toml``)."""
    horizon: timedelta = timedelta(days=90)            # how far ahead a need may be posted
    check_in_early: timedelta = timedelta(hours=2)     # check-in from this long before the start
    backdating: timedelta = timedelta(hours=48)        # … until this long after it (BACKDATED)
    claim_tolerance: timedelta = timedelta(minutes=15)  # minutes claimed beyond the checked-in time
    no_show_after: timedelta = timedelta(minutes=30)   # accepted, not checked in, this long past start
    no_show_action: str = NO_SHOW_RELEASE              # back to the feed, or cancelled
    overdue_after: timedelta = timedelta(hours=12)     # in service this long past its booked end
    overdue_action: str = OVERDUE_FLAG                 # flagged for an admin, or completed as booked


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
    open_until: datetime | None = None  # released after a no-show: open to others until the booked end
    overdue_flagged_at: datetime | None = None  # in service long past its end, waiting for an admin
    no_shows: int = 0                  # volunteers who accepted and never came
    proxy_id: str | None = None        # 亲情代理 who posted it for the beneficiary (on_behalf_of)
    insured: bool | None = None        # this acceptance's insurance record was written with it

    @property
    def booked_end(self) -> datetime:
        return self.start_at + timedelta(minutes=self.duration_minutes)

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


def check_start(start_at: datetime, now: datetime, limits: Limits) -> None:
    if start_at <= now:
        raise field_error("start_at", "服务时间须晚于现在")
    if start_at > now + limits.horizon:
        raise field_error("start_at", f"服务时间最多提前 {limits.horizon.days} 天发布")


def check_in(request: ServiceRequest, caller: Caller, now: datetime, evidence_key: str | None,
             has_insurance: bool, requires_insurance: bool, limits: Limits = Limits()) -> dict[str, Any]:
    if not request.is_volunteer(caller):
        raise Forbidden("只有接单的志愿者可以签到")
    _require_state(request, ACCEPTED)
    # Outside testing checked in 400 days early: the check-in time is what the credit rests on.
    if now < request.start_at - limits.check_in_early:
        raise TooEarly(f"服务开始前 {int(limits.check_in_early.total_seconds() // 60)} 分钟内才能签到",
                       {"earliest": (request.start_at - limits.check_in_early).isoformat()})
    if now > request.start_at + limits.backdating:
        raise Backdated(details={"limit": "backdating_window",
                                 "hours": int(limits.backdating.total_seconds() // 3600)})
    if requires_insurance and not has_insurance:
        raise InsurancePending()
    changes: dict[str, Any] = {"status": IN_SERVICE, "checked_in_at": now}
    if evidence_key:
        changes["evidence_keys"] = [*request.evidence_keys, evidence_key]
    return changes


def complete(request: ServiceRequest, caller: Caller, now: datetime, minutes: int,
             evidence_key: str | None, requires_evidence: bool, category_max: int = MAX_SERVICE_MINUTES,
             limits: Limits = Limits()) -> dict[str, Any]:
    if not request.is_volunteer(caller):
        raise Forbidden("只有接单的志愿者可以完成服务")
    _require_state(request, IN_SERVICE)
    if not 1 <= minutes <= MAX_SERVICE_MINUTES:
        raise field_error("minutes", f"服务分钟须在 1 到 {MAX_SERVICE_MINUTES} 之间")
    # A claim is bounded by what the category allows and by the time actually checked in (with a
    # tolerance for a late check-in): outside testing claimed 1,440 minutes on a 20-minute parcel.
    if minutes > category_max:
        raise LimitExceeded(f"该类服务单次最多 {category_max} 分钟", {"limit": "max_minutes", "max": category_max})
    served = int(((now - (request.checked_in_at or now)) + limits.claim_tolerance).total_seconds() // 60)
    if minutes > served:
        raise LimitExceeded(f"签到至今最多可记 {served} 分钟", {"limit": "checked_in_minutes", "max": served})
    keys = [*request.evidence_keys, evidence_key] if evidence_key else list(request.evidence_keys)
    if requires_evidence and not keys:
        raise EvidenceRequired()
    return {"status": COMPLETED, "completed_at": now, "completed_minutes": minutes, "evidence_keys": keys}


def may_confirm(request: ServiceRequest, caller: Caller) -> None:
    if not (request.is_requester_side(caller) or caller.is_admin):
        raise Forbidden("只有需求方家庭或管理员可以确认")
    _require_state(request, COMPLETED)


def may_cancel(request: ServiceRequest, caller: Caller) -> None:
    if caller.is_admin:
        _require_state(request, OPEN, ACCEPTED, IN_SERVICE)  # an admin may end a service gone wrong
        return
    if not (request.is_requester_side(caller) and caller.resident_id == request.requester_id):
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
    _require_state(request, DISPUTED, IN_SERVICE)


def no_show(request: ServiceRequest, now: datetime, limits: Limits) -> dict[str, Any] | None:
    """Accepted, never checked in, ``no_show_after`` past the start: what changes (None: not yet).
    Released, the need is open to other volunteers until its booked end; cancelled, the hold goes
    back. Either way the volunteer's reliability counts it."""
    if request.status != ACCEPTED or now < request.start_at + limits.no_show_after:
        return None
    if limits.no_show_action == NO_SHOW_CANCEL or now >= request.booked_end:
        return {"status": CANCELLED, "reason": "志愿者未到场", "closed_by": "system", "credits_paid": 0}
    return {"status": OPEN, "volunteer_id": None, "volunteer_household_id": None, "accepted_at": None,
            "insured": None, "open_until": request.booked_end, "no_shows": request.no_shows + 1}


def overdue(request: ServiceRequest, now: datetime, limits: Limits) -> dict[str, Any] | None:
    """In service ``overdue_after`` past the booked end: completed for the booked minutes, or
    flagged for an admin (who cancels or resolves it), by the community's choice."""
    if request.status != IN_SERVICE or request.overdue_flagged_at is not None \
            or now < request.booked_end + limits.overdue_after:
        return None
    if limits.overdue_action == OVERDUE_COMPLETE:
        return {"status": COMPLETED, "completed_at": now, "completed_minutes": request.duration_minutes,
                "closed_by": "system"}
    return {"overdue_flagged_at": now}


def auto_confirm_due(request: ServiceRequest, period: timedelta) -> datetime | None:
    if request.status != COMPLETED or request.completed_at is None:
        return None
    return request.completed_at + period


# ---- domain events ------------------------------------------------------------------------------
# What the other domains learn of a request, written in the transaction of the change. The data
# is ids and figures only (no titles or names): consumers that need more read it by id.

POSTED_EVENT, ACCEPTED_EVENT, CANCELLED_EVENT, SETTLED_EVENT, RELEASED_EVENT = (
    "request.posted", "request.accepted", "request.cancelled", "request.settled", "request.released")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


MAX_NEED_TEXT = 100


def posted_event(request: ServiceRequest, need_text: bool = False) -> DomainEvent:
    """``need_text``: the need is not a credit item (志愿帮, non-eligible categories), so its title
    travels with the event: statistics collect those texts to suggest new credit items."""
    data = {"category": request.category, "household_id": request.household_id,
            "requester_id": request.requester_id, "start_at": _iso(request.start_at),
            "duration_minutes": request.duration_minutes, "credits_held": request.credits_held,
            "proxy_id": request.proxy_id}
    if need_text:
        data["text"] = request.title[:MAX_NEED_TEXT]
    return new_event(POSTED_EVENT, request.id, request.created_at, data)


def accepted_event(request: ServiceRequest) -> DomainEvent:
    # One per acceptance: a need released after a no-show may be accepted again by another.
    # ``insured``: the record committed with the acceptance, so the insurance queue has nothing to do.
    data = {"category": request.category, "volunteer_id": request.volunteer_id,
            "volunteer_household_id": request.volunteer_household_id, "start_at": _iso(request.start_at),
            "duration_minutes": request.duration_minutes, "posted_at": _iso(request.created_at)}
    if request.insured:
        data["insured"] = True
    return new_event(ACCEPTED_EVENT, request.id, request.accepted_at or request.created_at, data,
                     discriminator=request.volunteer_id or "")


def released_event(before: ServiceRequest, at: datetime) -> DomainEvent:
    """The volunteer never came; the need is open again (``no_show`` counts against them)."""
    return new_event(RELEASED_EVENT, before.id, at, {
        "category": before.category, "volunteer_id": before.volunteer_id, "no_show": True,
        "accepted_at": _iso(before.accepted_at)}, discriminator=before.volunteer_id or "")


def cancelled_event(before: ServiceRequest, after: ServiceRequest, at: datetime) -> DomainEvent:
    """Cancelled or expired (``status``); ``was_accepted`` tells insurance to cancel a record."""
    return new_event(CANCELLED_EVENT, after.id, at, {
        "status": after.status, "category": after.category, "was_accepted": before.status != OPEN,
        "volunteer_id": after.volunteer_id, "closed_by": after.closed_by,
        "by_requester": after.closed_by == after.requester_id, "posted_at": _iso(after.created_at),
        "accepted_at": _iso(after.accepted_at),
        "no_show": before.status == ACCEPTED and after.closed_by == "system"})


def settled_event(request: ServiceRequest, at: datetime) -> DomainEvent:
    return new_event(SETTLED_EVENT, request.id, at, {
        "category": request.category, "volunteer_id": request.volunteer_id,
        "volunteer_household_id": request.volunteer_household_id, "household_id": request.household_id,
        "requester_id": request.requester_id, "credits_paid": request.credits_paid or 0, "minutes": request.completed_minutes or 0,
        "rating": request.rating, "accepted_at": _iso(request.accepted_at),
        "posted_at": _iso(request.created_at)})
