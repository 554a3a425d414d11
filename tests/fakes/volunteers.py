"""In-memory twin of the volunteer store: the same conditional semantics in one process."""
from __future__ import annotations

from typing import Any

from functions.volunteers.model import Match, SaveResult, Skill, VolunteerProfile


class InMemoryVolunteerStore:
    """The same conditional semantics in one process (domain tests)."""

    def __init__(self) -> None:
        self.profiles: dict[str, VolunteerProfile] = {}
        self.index: dict[tuple[str, str], VolunteerProfile] = {}
        self.markers: set[str] = set()
        self.skills: dict[str, Skill] = {}
        self.matches: dict[tuple[str, str], Match] = {}

    def get_profile(self, resident_id: str, consistent: bool = True) -> VolunteerProfile | None:
        return self.profiles.get(resident_id)

    def has_marker(self, marker: str) -> bool:
        return marker in self.markers

    def save_profile(self, profile: VolunteerProfile, previous: VolunteerProfile | None,
                     marker: str | None = None) -> SaveResult:
        stored = self.profiles.get(profile.resident_id)
        if (stored.version if stored else None) != (previous.version if previous else None):
            return SaveResult.CONFLICT
        if marker is not None and marker in self.markers:
            return SaveResult.ALREADY_COUNTED
        for category in (previous.matchable_categories() if previous else ()):
            self.index.pop((category, profile.resident_id), None)
        for category in profile.matchable_categories():
            self.index[(category, profile.resident_id)] = profile
        self.profiles[profile.resident_id] = profile
        if marker is not None:
            self.markers.add(marker)
        return SaveResult.SAVED

    def candidates(self, category: str, building: str | None = None, turn: str = "") -> list[VolunteerProfile]:
        return [p for (c, _), p in sorted(self.index.items()) if c == category]

    def create_skill(self, skill: Skill) -> bool:
        if skill.id in self.skills:
            return False
        self.skills[skill.id] = skill
        return True

    def get_skill(self, skill_id: str) -> Skill | None:
        return self.skills.get(skill_id)

    def skills_of(self, resident_id: str) -> list[Skill]:
        return sorted((s for s in self.skills.values() if s.resident_id == resident_id), key=lambda s: s.created_at)

    def skills_by_status(self, status: str, limit: int, cursor: dict[str, Any] | None):
        matching = sorted((s for s in self.skills.values() if s.status == status), key=lambda s: (s.created_at, s.id))
        return matching[:limit], None

    def update_skill(self, skill: Skill, expected_status: str) -> bool:
        if self.skills[skill.id].status != expected_status:
            return False
        self.skills[skill.id] = skill
        return True

    def record_matches(self, matches: list[Match]) -> bool:
        if not matches:
            return True
        if f"matched#{matches[0].request_id}" in self.markers:
            return False
        self.markers.add(f"matched#{matches[0].request_id}")
        for m in matches:
            self.matches[(m.request_id, m.volunteer_id)] = m
        return True

    def matches_for(self, request_id: str) -> list[Match]:
        return [m for (r, _), m in sorted(self.matches.items()) if r == request_id]
