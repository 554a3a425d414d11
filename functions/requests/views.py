"""What leaves the requests domain over HTTP."""
from __future__ import annotations

from typing import Any

from functions.core import clock
from functions.requests.model import Category, ServiceRequest


def request_view(request: ServiceRequest) -> dict[str, Any]:
    """The request as residents see it; evidence keys stay private (links come from /evidence)."""
    def iso(value):
        return clock.isoformat(value) if value else None

    return {
        "id": request.id, "status": request.status, "category": request.category,
        "title": request.title, "description": request.description,
        "start_at": iso(request.start_at), "duration_minutes": request.duration_minutes,
        "requester_id": request.requester_id, "household_id": request.household_id,
        "beneficiary_member_id": request.beneficiary_member_id, "proxy_id": request.proxy_id,
        "volunteer_id": request.volunteer_id, "credits_held": request.credits_held,
        "credits_paid": request.credits_paid, "created_at": iso(request.created_at),
        "accepted_at": iso(request.accepted_at), "checked_in_at": iso(request.checked_in_at),
        "completed_at": iso(request.completed_at), "completed_minutes": request.completed_minutes,
        "settled_at": iso(request.settled_at), "rating": request.rating,
        "evidence_count": len(request.evidence_keys), "reason": request.reason,
        "overdue": request.overdue_flagged_at is not None, "no_shows": request.no_shows,
    }


def category_view(category: Category) -> dict[str, Any]:
    return category.to_dict()
