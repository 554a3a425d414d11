"""In-memory twin of the identity store: dicts with the same conditional semantics as the
DynamoDB adapter (single process)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from functions.core.errors import AlreadyExists, LimitExceeded, ValidationError
from functions.identity.model import (
    ROLE_RESIDENT, Dependant, Household, Login, Member, RelativeDeclaration, Resident,
)


class _Write:
    """A write joining a transaction of the in-memory ledger (or the recording one of the tests):
    its condition is checked with all the others before any is applied."""

    def __init__(self, holds: Any, apply: Any) -> None:
        self._holds, self._apply = holds, apply

    def holds_in_memory(self) -> bool:
        return bool(self._holds())

    def apply_in_memory(self) -> None:
        self._apply()


class InMemoryIdentityStore:
    """Dict-backed store with the same conditional semantics as DynamoDB (single process)."""

    def __init__(self) -> None:
        self.logins: dict[str, Login] = {}
        self.members: dict[tuple[str, str], Member] = {}
        self.households: dict[str, Household] = {}
        self.addresses: dict[str, str] = {}
        self.declarations: dict[tuple[str, str], RelativeDeclaration] = {}

    def get_login(self, openid: str) -> Login | None:
        return self.logins.get(openid)

    def create_resident(self, resident: Resident, household: Household, address_key: str) -> str:
        login = self.logins.get(resident.openid) or Login(openid=resident.openid)
        if login.resident_id is not None:
            raise AlreadyExists("您已登记过居民信息", {"resident_id": login.resident_id})
        household_id = self.addresses.get(address_key, household.id)
        resident = replace(resident, household_id=household_id)
        if (household_id, resident.id) in self.members:
            raise AlreadyExists(details={"resident_id": resident.id})
        self.logins[resident.openid] = replace(
            login, resident_id=resident.id, household_id=household_id, status=resident.status,
            roles=login.roles | {ROLE_RESIDENT})
        self.members[(household_id, resident.id)] = resident
        if address_key not in self.addresses:
            self.addresses[address_key] = household.id
            self.households[household.id] = household
        return household_id

    def get_resident(self, household_id: str, resident_id: str, consistent: bool = True) -> Resident | None:
        member = self.members.get((household_id, resident_id))
        return member if isinstance(member, Resident) else None

    def find_member(self, member_id: str) -> Member | None:
        for (_, stored_id), member in self.members.items():
            if stored_id == member_id:
                return member
        return None

    def get_member(self, household_id: str, member_id: str, consistent: bool = True) -> Member | None:
        return self.members.get((household_id, member_id))

    def find_by_phone_hash(self, phone_hash: str) -> list[Resident]:
        return [m for m in self.members.values() if isinstance(m, Resident) and m.phone_hash == phone_hash]

    def residents_with_phone(self, phone: str) -> list[Resident]:
        return [m for m in self.members.values() if isinstance(m, Resident) and m.phone == phone]

    def residents_with_phones(self, phones: list[str]) -> dict[str, list[Resident]]:
        return {phone: self.residents_with_phone(phone) for phone in phones}

    def households_at(self, address_keys: list[str]) -> dict[str, str]:
        return {key: self.addresses[key] for key in address_keys if key in self.addresses}

    def get_households(self, household_ids: list[str]) -> dict[str, Household]:
        return {hid: self.households[hid] for hid in household_ids if hid in self.households}

    def import_writes(self, residents: list[Resident], new_household: Household | None, address_key: str,
                      grant_mark_at: datetime | None) -> list[Any]:
        writes: list[Any] = [_Write(lambda r=r: (r.household_id, r.id) not in self.members,
                                    lambda r=r: self.members.__setitem__((r.household_id, r.id), r))
                             for r in residents]
        if new_household is not None:
            writes.append(_Write(lambda: new_household.id not in self.households and address_key not in self.addresses,
                                 lambda: (self.households.__setitem__(new_household.id, new_household),
                                          self.addresses.__setitem__(address_key, new_household.id))))
        elif grant_mark_at is not None:
            household_id = residents[0].household_id
            writes.append(_Write(
                lambda: household_id in self.households and self.households[household_id].credits_granted_at is None,
                lambda: self.households.__setitem__(household_id, replace(self.households[household_id],
                                                                          credits_granted_at=grant_mark_at))))
        return writes

    def claim_resident(self, resident: Resident, openid: str) -> bool:
        login = self.logins.get(openid) or Login(openid=openid)
        if login.resident_id is not None:
            raise AlreadyExists("您已登记过居民信息", {"resident_id": login.resident_id})
        stored = self.get_resident(resident.household_id, resident.id)
        if stored is None or stored.openid:
            return False
        self.members[(resident.household_id, resident.id)] = replace(stored, openid=openid)
        self.logins[openid] = replace(login, resident_id=resident.id, household_id=resident.household_id,
                                      status=stored.status, roles=login.roles | stored.roles | {ROLE_RESIDENT})
        return True

    def list_members(self, household_id: str) -> list[Member]:
        return [m for (hid, _), m in sorted(self.members.items()) if hid == household_id]

    def create_dependant(self, dependant: Dependant, limit: int) -> bool:
        key = (dependant.household_id, dependant.id)
        if key in self.members:
            return False
        if sum(1 for (hid, _), m in self.members.items()
               if hid == dependant.household_id and isinstance(m, Dependant)) >= limit:
            raise LimitExceeded("家庭成员数量已达上限", {"max_dependants": limit})
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
        if resident.openid:
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

    def get_household(self, household_id: str, consistent: bool = True) -> Household | None:
        return self.households.get(household_id)

    def status_writes(self, resident: Resident, expected_status: str | None,
                      grant_mark_at: datetime | None) -> list[Any]:
        writes: list[Any] = []
        if expected_status is not None:
            writes.append(_Write(
                lambda: (stored := self.get_resident(resident.household_id, resident.id)) is not None
                and stored.status == expected_status,
                lambda: self._store_status(resident)))
        if grant_mark_at is not None:
            writes.append(_Write(
                lambda: resident.household_id in self.households
                and self.households[resident.household_id].credits_granted_at is None,
                lambda: self.households.__setitem__(resident.household_id, replace(
                    self.households[resident.household_id], credits_granted_at=grant_mark_at))))
        return writes

    def _store_status(self, resident: Resident) -> None:
        self.members[(resident.household_id, resident.id)] = resident
        self.logins[resident.openid] = replace(self.logins[resident.openid], status=resident.status)

    def put_declaration(self, declaration: RelativeDeclaration, limit: int) -> bool:
        key = (declaration.household_id, declaration.relative_household_id)
        if key in self.declarations:
            return False
        if len(self.declarations_by(declaration.household_id)) >= limit:
            raise LimitExceeded("亲属住户数量已达上限", {"max_relatives": limit})
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

    def grant_role(self, openid: str, role: str) -> "InMemoryRoleGrant":
        return InMemoryRoleGrant(self, openid, role)

    def revocation_version(self, max_age: float = 0) -> int:
        return getattr(self, "revocations", 0)

    def bump_token_version(self, openid: str) -> int:
        self.revocations = getattr(self, "revocations", 0) + 1
        login = self.logins.get(openid) or Login(openid=openid)
        self.logins[openid] = replace(login, token_version=login.token_version + 1)
        return login.token_version + 1

    def set_proxy(self, resident: Resident) -> bool:
        stored = self.members.get((resident.household_id, resident.id))
        if not isinstance(stored, Resident) or (resident.proxy_since is not None and stored.status != "verified"):
            return False
        self.members[(resident.household_id, resident.id)] = replace(stored, proxy_since=resident.proxy_since)
        return True

    def add_reputation(self, change) -> bool:
        from functions.identity.model import applied

        marks = self.__dict__.setdefault("reputation_marks", set())
        stored = self.members.get((change.household_id, change.resident_id))
        if change.mark in marks or not isinstance(stored, Resident):
            return False
        marks.add(change.mark)
        self.members[(change.household_id, change.resident_id)] = replace(
            stored, reputation=applied(stored.reputation, change))
        return True


class InMemoryRoleGrant:
    """``grant_role``'s write, for in-memory transactions (``holds_in_memory``/``apply_in_memory``)."""

    def __init__(self, store: InMemoryIdentityStore, openid: str, role: str):
        self.store, self.openid, self.role = store, openid, role

    def holds_in_memory(self) -> bool:
        return True

    def apply_in_memory(self) -> None:
        login = self.store.logins.get(self.openid) or Login(openid=self.openid)
        self.store.logins[self.openid] = replace(login, roles=login.roles | {self.role})
