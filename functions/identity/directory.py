"""What other domains may ask identity about people and households (read-only façade).

    from functions.identity.directory import get_directory
    get_directory().has_member(caller.household_id, beneficiary_member_id)
"""
from __future__ import annotations

from functions.identity.domain import REJECTED, Resident
from functions.identity.service import IdentityService
from functions.identity.store import Member
from functions.identity.wiring import get_identity_service


class HouseholdDirectory:
    def __init__(self, service: IdentityService | None = None):
        self._service = service

    @property
    def service(self) -> IdentityService:
        return self._service or get_identity_service()

    def member(self, household_id: str | None, member_id: str | None) -> Member | None:
        """A resident or dependant of this household (one consistent GetItem); rejected
        residents are no members — their claim to live there was refused."""
        if not household_id or not member_id or len(member_id) > 100:
            return None
        found = self.service.household_member(household_id, member_id)
        if isinstance(found, Resident) and found.status == REJECTED:
            return None
        return found

    def has_member(self, household_id: str | None, member_id: str | None) -> bool:
        return self.member(household_id, member_id) is not None


def get_directory() -> HouseholdDirectory:
    return HouseholdDirectory()
