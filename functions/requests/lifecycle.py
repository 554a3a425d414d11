"""The life of a service request (order), as plain rules.

    open → accepted → in_service → completed → settled
    open → cancelled | expired            accepted → cancelled
    completed → disputed → resolved (settled or cancelled)

Each rule checks who may act and from which state, and returns the changes to store; the
service applies them with a storage condition on the state it read, so two racing actors
cannot both win (first-wins accept, confirm once).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from functions.core.errors import BusinessRuleViolation, Forbidden, InvalidState, ValidationError
from functions.identity.caller import Caller

OPEN, ACCEPTED, IN_SERVICE, COMPLETED, SETTLED = "open", "accepted", "in_service", "completed", "settled"
CANCELLED, EXPIRED, DISPUTED = "cancelled", "expired", "disputed"
STATUSES = (OPEN, ACCEPTED, IN_SERVICE, COMPLETED, SETTLED, CANCELLED, EXPIRED, DISPUTED)
FINAL = frozenset({SETTLED, CANCELLED, EXPIRED})

MAX_SERVICE_MINUTES = 24 * 60


class OwnRequest(BusinessRuleViolation):
    code = "OWN_REQUEST"
    default_message = "不能接自己家庭发布的需求"


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
        raise BusinessRuleViolation("保险记录尚未生成，暂不能开始服务", code="INSURANCE_PENDING")
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
        raise BusinessRuleViolation("该类服务需要上传服务影像", code="EVIDENCE_REQUIRED")
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
