"""In-memory twin of the identity store: dicts with the same conditional semantics as the
DynamoDB adapter (single process)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from functions.core.errors import AlreadyExists, ValidationError
from functions.identity.model import (
    ROLE_RESIDENT, Dependant, Household, Login, Member, RelativeDeclaration, Resident,
)


class InMemoryIdentityStore:
    """Dict-backed store with the same conditional semantics as DynamoDB (single process)."""

    def __init__(self) -> None:
        self.logins: dict[str, Login] = {}
        self.members: dict[tuple[str, str], Member] = {}
        self.households: dict[str, Household] = {}
        self.declarations: dict[tuple[str, str], RelativeDeclaration] = {}

    def get_login(self, openid: str) -> Login | None:
        return self.logins.get(openid)

    def create_resident(self, resident: Resident, household: Household) -> None:
        login = self.logins.get(resident.openid) or Login(openid=resident.openid)
        if login.resident_id is not None:
            raise AlreadyExists("您已登记过居民信息", {"resident_id": login.resident_id})
        if (resident.household_id, resident.id) in self.members:
            raise AlreadyExists(details={"resident_id": resident.id})
        self.logins[resident.openid] = replace(
            login, resident_id=resident.id, household_id=resident.household_id, status=resident.status,
            roles=login.roles | {ROLE_RESIDENT})
        self.members[(resident.household_id, resident.id)] = resident
        self.households.setdefault(household.id, household)

    def get_resident(self, household_id: str, resident_id: str) -> Resident | None:
        member = self.members.get((household_id, resident_id))
        return member if isinstance(member, Resident) else None

    def find_member(self, member_id: str) -> Member | None:
        for (_, stored_id), member in self.members.items():
            if stored_id == member_id:
                return member
        return None

    def get_member(self, household_id: str, member_id: str) -> Member | None:
        return self.members.get((household_id, member_id))

    def find_by_phone_hash(self, phone_hash: str) -> list[Resident]:
        return [m for m in self.members.values() if isinstance(m, Resident) and m.phone_hash == phone_hash]

    def list_members(self, household_id: str) -> list[Member]:
        return [m for (hid, _), m in sorted(self.members.items()) if hid == household_id]

    def create_dependant(self, dependant: Dependant) -> bool:
        key = (dependant.household_id, dependant.id)
        if key in self.members:
            return False
        self.members[key] = dependant
        return True

    def update_resident_status(self, resident: Resident, expected_status: str) -> bool:
        stored = self.get_resident(resident.household_id, resident.id)
        if stored is None or stored.status != expected_status:
            return False
        self.members[(resident.household_id, resident.id)] = resident
        login = self.logins[resident.openid]
        self.logins[resident.openid] = replace(login, status=resident.status)
        return True

    def set_roles(self, resident: Resident, roles: frozenset[str]) -> None:
        self.members[(resident.household_id, resident.id)] = replace(resident, roles=roles)
        self.logins[resident.openid] = replace(self.logins[resident.openid], roles=roles)

    def list_residents_by_status(self, status: str, limit: int,
                                 cursor: dict[str, Any] | None) -> tuple[list[Resident], dict[str, Any] | None]:
        matching = sorted((m for m in self.members.values()
                           if isinstance(m, Resident) and m.status == status),
                          key=lambda r: r.id)  # ids are time-ordered
        start = 0
        if cursor is not None:
            if set(cursor) != {"after"}:
                raise ValidationError(details={"fields": {"cursor": "is not a cursor this API returned"}})
            ids = [r.id for r in matching]
            start = ids.index(cursor["after"]) + 1 if cursor["after"] in ids else len(ids)
        page = matching[start:start + limit]
        more = start + limit < len(matching)
        return page, ({"after": page[-1].id} if more and page else None)

    def get_household(self, household_id: str) -> Household | None:
        return self.households.get(household_id)

    def mark_credits_granted(self, household_id: str, at: datetime) -> None:
        household = self.households[household_id]
        if household.credits_granted_at is None:
            self.households[household_id] = replace(household, credits_granted_at=at)

    def put_declaration(self, declaration: RelativeDeclaration) -> bool:
        key = (declaration.household_id, declaration.relative_household_id)
        if key in self.declarations:
            return False
        self.declarations[key] = declaration
        return True

    def get_declaration(self, household_id: str, relative_household_id: str) -> RelativeDeclaration | None:
        return self.declarations.get((household_id, relative_household_id))

    def declarations_between(self, first: str, second: str) -> set[tuple[str, str]]:
        return {key for key in ((first, second), (second, first)) if key in self.declarations}

    def declarations_by(self, household_id: str) -> list[RelativeDeclaration]:
        return [d for (hid, _), d in sorted(self.declarations.items()) if hid == household_id]

    def declarations_of(self, relative_household_id: str) -> list[RelativeDeclaration]:
        return [d for (_, rid), d in sorted(self.declarations.items()) if rid == relative_household_id]

    def delete_declaration(self, household_id: str, relative_household_id: str) -> bool:
        return self.declarations.pop((household_id, relative_household_id), None) is not None

    def bump_token_version(self, openid: str) -> int:
        login = self.logins.get(openid) or Login(openid=openid)
        self.logins[openid] = replace(login, token_version=login.token_version + 1)
        return login.token_version + 1

