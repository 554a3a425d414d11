"""What leaves activities over HTTP."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from functions.activities import model as am
from functions.activities.codes import ShownCode
from functions.activities.model import Activity, CloseResult, Participant
from functions.core import clock


def _iso(value: datetime | None) -> str | None:
    return clock.isoformat(value) if value is not None else None


def activity_summary(activity: Activity, now: datetime) -> dict[str, Any]:
    """An entry of the list: ``status`` is the activity's (published / closed), ``phase`` where
    it is in time (upcoming / ongoing / ended / closed)."""
    return {
        "id": activity.id, "title": activity.title, "place": activity.place,
        "start_at": _iso(activity.start_at), "end_at": _iso(activity.end_at), "capacity": activity.capacity,
        "signed_up": activity.signed_up, "places_left": max(0, activity.capacity - activity.signed_up),
        "status": activity.status, "phase": activity.phase(now), "asset": activity.asset,
        "award": {"mode": activity.award.mode, "minutes": activity.award.minutes},
        "requires_insurance": activity.requires_insurance,
    }


def activity_view(activity: Activity, now: datetime, participant: Participant | None = None,
                  with_mine: bool = False) -> dict[str, Any]:
    view = {**activity_summary(activity, now), "description": activity.description,
            "created_at": _iso(activity.created_at), "awarded": activity.awarded,
            "minutes_total": activity.minutes_total, "closed_at": _iso(activity.closed_at)}
    if with_mine:
        active = participant is not None and participant.status in am.ACTIVE
        view["my_status"] = participant.status if active else am.NONE
        view["my_award_minutes"] = participant.award_minutes if active else None
    return view


def signup_view(participant: Participant) -> dict[str, Any]:
    return {"status": participant.status, "activity_id": participant.activity_id,
            "signed_up_at": _iso(participant.signed_up_at)}


def check_view(participant: Participant) -> dict[str, Any]:
    at = participant.checked_out_at if participant.status == am.CHECKED_OUT else participant.checked_in_at
    return {"status": participant.status, "at": _iso(at), "activity_id": participant.activity_id}


def code_view(shown: ShownCode) -> dict[str, Any]:
    return {"code": shown.code, "expires_at": _iso(shown.expires_at), "accepted_until": _iso(shown.accepted_until)}


def close_view(result: CloseResult) -> dict[str, Any]:
    return {"status": am.CLOSED, "awarded": result.awarded, "minutes_total": result.minutes_total}
