"""What leaves the volunteers domain over HTTP."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from functions.core import clock
from functions.volunteers.model import Skill, VolunteerProfile, VolunteerStats


def stats_view(stats: VolunteerStats, now: datetime) -> dict[str, Any]:
    return {"accepted": stats.accepted, "completed": stats.completed, "failed": stats.failed,
            "rating": round(stats.rating_sum / stats.rating_count, 2) if stats.rating_count else None,
            "rating_count": stats.rating_count, "recent_services": stats.load(now)}


def profile_view(profile: VolunteerProfile, now: datetime) -> dict[str, Any]:
    return {
        "resident_id": profile.resident_id,
        "categories": list(profile.categories),
        "availability": [w.to_dict() for w in profile.availability],
        "accepting": profile.accepting,
        "skills": list(profile.skills),
        "matched_categories": sorted(profile.matchable_categories()),
        "stats": stats_view(profile.stats, now),
        "updated_at": clock.isoformat(profile.updated_at) if profile.updated_at else None,
    }


def skill_view(skill: Skill) -> dict[str, Any]:
    return {"id": skill.id, "resident_id": skill.resident_id, "name": skill.name,
            "description": skill.description, "status": skill.status,
            "created_at": clock.isoformat(skill.created_at),
            "reviewed_at": clock.isoformat(skill.reviewed_at) if skill.reviewed_at else None,
            "reason": skill.reason}
