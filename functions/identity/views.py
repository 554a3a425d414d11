"""JSON shapes of identity objects: the one place phones are masked on the way out."""
from __future__ import annotations

from typing import Any, Iterable

from functions.core import clock
from functions.identity.model import (KIND_DEPENDANT, KIND_RESIDENT, Dependant, Household, RelativeDeclaration,
                                      Resident, mask_phone, split_household_key)


def resident_view(resident: Resident, roles: Iterable[str] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": resident.id,
        "kind": KIND_RESIDENT,
        "status": resident.status,
        "household_id": resident.household_id,
        "name": resident.name,
        "phone": mask_phone(resident.phone),
        "building": resident.address.building,
        "unit": resident.address.unit,
        "room": resident.address.room,
        "birth_year": resident.birth_year,
        "roles": sorted(roles if roles is not None else resident.roles),
        "reputation": resident.reputation.score,
        "created_at": clock.isoformat(resident.created_at),
        "reviewed_at": clock.isoformat(resident.reviewed_at) if resident.reviewed_at else None,
    }
    if resident.rejection_reason is not None:
        view["rejection_reason"] = resident.rejection_reason
    return view


def member_summary(resident: Resident, role: str | None = None, head: bool = False) -> dict[str, Any]:
    """A resident as other members of the household see it (no address: it is the household's);
    ``role`` in the household: head / member / proxy (a proxy who is also the head: ``head`` true)."""
    view = {
        "id": resident.id,
        "kind": KIND_RESIDENT,
        "household_id": resident.household_id,
        "name": resident.name,
        "phone": mask_phone(resident.phone),
        "birth_year": resident.birth_year,
        "status": resident.status,
    }
    if role is not None:
        view.update(role=role, head=head,
                    proxy_since=clock.isoformat(resident.proxy_since) if resident.proxy_since else None)
    return view


def dependant_view(dependant: Dependant, role: str | None = None) -> dict[str, Any]:
    view = {
        "id": dependant.id,
        "kind": KIND_DEPENDANT,
        "household_id": dependant.household_id,
        "name": dependant.name,
        "birth_year": dependant.birth_year,
        "relation": dependant.relation,
        "created_at": clock.isoformat(dependant.created_at),
    }
    if role is not None:
        view["role"] = role
    return view


def household_view(household: Household) -> dict[str, Any]:
    return {
        "id": household.id,
        "building": household.address.building,
        "unit": household.address.unit,
        "room": household.address.room,
        "created_at": clock.isoformat(household.created_at),
        "starting_credits_granted": household.credits_granted_at is not None,
    }


def declaration_view(declaration: RelativeDeclaration, mutual: bool | None) -> dict[str, Any]:
    community, household_id = split_household_key(declaration.relative_household_id)
    view = {
        "household_id": household_id,
        "relation": declaration.relation,
        "mutual": mutual,
        "declared_at": clock.isoformat(declaration.created_at),
    }
    if community is not None:
        # Declared here for a household of another community: whether it declared back is
        # known there (and checked there when credits arrive), so ``mutual`` is null.
        view["community"] = community
    return view
