"""What the volunteers' use cases need from outside: their store, where households live,
the requests they match, and a way to notify (the notifications domain, behind ``Notify``)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Protocol

from functions.requests.model import ServiceRequest
from functions.volunteers.model import Match, SaveResult, Skill, VolunteerProfile


class VolunteerStore(Protocol):
    def get_profile(self, resident_id: str, consistent: bool = True) -> VolunteerProfile | None:
        """``consistent=False`` for a read followed by a version-conditioned write."""

    def save_profile(self, profile: VolunteerProfile, previous: VolunteerProfile | None,
                     marker: str | None = None) -> SaveResult:
        """Write ``profile`` (version = previous.version + 1) and its category-index items
        (adding and removing per ``matchable_categories``), only if the stored version is still
        ``previous``'s, and, when given, only if ``marker`` was never written — all at once."""

    def has_marker(self, marker: str) -> bool:
        """(Markers written before profiles kept their applied events: see ``VolunteerProfile.applied``.)"""
        """Whether a ``save_profile(..., marker=...)`` with this marker was applied."""

    def candidates(self, category: str, building: str | None = None, turn: str = "") -> list[VolunteerProfile]:
        """The category index: every volunteer matchable for ``category`` (Query, not Scan)."""

    def create_skill(self, skill: Skill) -> bool: ...

    def get_skill(self, skill_id: str) -> Skill | None: ...

    def skills_of(self, resident_id: str) -> list[Skill]: ...

    def skills_by_status(self, status: str, limit: int,
                         cursor: dict[str, Any] | None) -> tuple[list[Skill], dict[str, Any] | None]: ...

    def update_skill(self, skill: Skill, expected_status: str) -> bool: ...

    def suggested_ids(self, volunteer_id: str, limit: int,
                      cursor: dict[str, Any] | None) -> tuple[list[str], dict[str, Any] | None]:
        """Request ids matched to the volunteer, newest suggestion first."""


class Places(Protocol):
    def building_of(self, household_id: str) -> str | None:
        """The household's normalised building (same building = same value)."""


class MatchStore(Protocol):
    def record_matches(self, matches: list[Match]) -> bool:
        """Write all matches of one request at once, only if that request was never matched
        before; False (nothing written) otherwise — a duplicate delivery."""

    def matches_for(self, request_id: str) -> list[Match]: ...


class RequestSource(Protocol):
    def find(self, request_id: str, consistent: bool = True) -> ServiceRequest | None: ...


class CandidateSource(Protocol):
    def candidates(self, category: str, building: str | None = None, turn: str = "") -> list[VolunteerProfile]:
        """A bounded set of the category's volunteers: the building's first, then others from a
        start that ``turn`` rotates (its size does not grow with the category)."""


class OpenRequests(Protocol):
    def get_many(self, request_ids: list[str]) -> dict[str, ServiceRequest]:
        """Requests by id (eventually consistent: for the suggestions list, not decisions)."""


class Notify(Protocol):
    """The notifications domain's ``deliver_once``: at most one message per key, only with the
    recipient's consent; returns an outcome whose ``value`` is "sent", "retry", …"""

    def deliver_once(self, key: str, *, openid: str, template: str, data: Mapping[str, str],
                     page: str | None = None, recipient_id: str, request_id: str | None = None) -> Any: ...
