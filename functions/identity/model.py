"""Identity rules in plain Python: households from addresses, resident status transitions,
relations between households, roles and phone masking.

Nothing here talks to storage or HTTP; ``service.py`` applies these rules through the ports.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Iterable

from functions.core.errors import Forbidden, InvalidState
from functions.core.ids import derived_id

# --- statuses and roles ---------------------------------------------------------------

PENDING = "pending"
VERIFIED = "verified"
REJECTED = "rejected"
STATUSES: tuple[str, ...] = (PENDING, VERIFIED, REJECTED)

ROLE_RESIDENT = "resident"
ROLE_ADMIN = "admin"
ROLE_MERCHANT = "merchant"
ROLES: tuple[str, ...] = (ROLE_RESIDENT, ROLE_ADMIN, ROLE_MERCHANT)

# Family relations a dependant or a relative household may have to the declaring resident.
RELATIONS: tuple[str, ...] = ("parent", "grandparent", "child", "grandchild", "spouse", "sibling", "other")

KIND_RESIDENT = "resident"
KIND_DEPENDANT = "dependant"

PHONE_PATTERN = r"1[3-9]\d{9}"
MIN_BIRTH_YEAR = 1900


def effective_roles(stored: Iterable[str], openid: str, admin_openids: Iterable[str]) -> frozenset[str]:
    """Stored roles plus ``admin`` for the community's configured admins."""
    roles = set(stored)
    if openid in set(admin_openids):
        roles.add(ROLE_ADMIN)
    return frozenset(roles)


def mask_phone(phone: str | None) -> str | None:
    """``13812345678`` → ``138****5678``; anything unexpected is masked entirely."""
    if not phone:
        return None
    if len(phone) == 11 and phone.isdigit():
        return f"{phone[:3]}****{phone[7:]}"
    return "*" * len(phone)


# --- addresses and households ------------------------------------------------------------

# Residents write the same flat in several ways: "3幢", "3栋", "3号楼", "３"; "1单元"; "502室".
# The suffixes carry no information inside one community, so they are dropped before hashing.
_BUILDING_SUFFIXES = ("号楼", "幢", "栋", "楼", "座", "号")
_UNIT_SUFFIXES = ("单元", "门")
_ROOM_SUFFIXES = ("室", "号", "房")
_SPACES = re.compile(r"\s+")


def _normalise_part(value: str, suffixes: tuple[str, ...]) -> str:
    text = unicodedata.normalize("NFKC", value).casefold()
    text = _SPACES.sub("", text)
    if text.startswith("第") and len(text) > 1:
        text = text[1:]
    for suffix in suffixes:
        if text.endswith(suffix) and len(text) > len(suffix):
            text = text[: -len(suffix)]
            break
    # "03" and "3" are the same building; strip leading zeros of purely numeric parts.
    if text.isdigit():
        text = str(int(text))
    return text


@dataclass(frozen=True)
class Address:
    building: str
    unit: str
    room: str

    def normalised(self) -> tuple[str, str, str]:
        return (_normalise_part(self.building, _BUILDING_SUFFIXES),
                _normalise_part(self.unit, _UNIT_SUFFIXES),
                _normalise_part(self.room, _ROOM_SUFFIXES))


def household_id_for(community_id: str, address: Address) -> str:
    """The household of an address: the same normalised flat always gives the same id, so
    concurrent registrations of one flat meet on one item without reading first."""
    return derived_id("hh", community_id, *address.normalised())


# --- residents and dependants -----------------------------------------------------------


@dataclass(frozen=True)
class Resident:
    id: str
    openid: str
    household_id: str
    name: str
    phone: str
    address: Address
    birth_year: int
    status: str
    roles: frozenset[str]
    created_at: datetime
    reviewed_at: datetime | None = None
    reviewed_by: str | None = None
    rejection_reason: str | None = None
    # 通存通兑: HMAC of the phone under the district-wide key, so another community can
    # recognise the same person after a move without the phone leaving either stack.
    phone_hash: str | None = None


@dataclass(frozen=True)
class Dependant:
    id: str
    household_id: str
    name: str
    birth_year: int
    relation: str
    created_by: str
    created_at: datetime
    content_hash: str = ""


@dataclass(frozen=True)
class Household:
    id: str
    address: Address          # as first registered (display); the id comes from the normalised form
    created_at: datetime
    credits_granted_at: datetime | None = None


@dataclass(frozen=True)
class RelativeDeclaration:
    """``household_id`` declares ``relative_household_id`` as relatives."""
    household_id: str
    relative_household_id: str
    relation: str
    declared_by: str
    created_at: datetime


@dataclass(frozen=True)
class Login:
    """What authentication needs about an openid, kept on one item (one GetItem per call)."""
    openid: str
    resident_id: str | None = None
    household_id: str | None = None
    status: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    token_version: int = 0


Member = Resident | Dependant


class NotRegistered(Forbidden):
    """The caller logged in but has no resident record yet (register with POST /v1/residents)."""
    code = "NOT_REGISTERED"
    default_message = "请先登记居民信息"


# --- verification transitions -------------------------------------------------------------
#
#   pending  --verify-->  verified     pending  --reject-->  rejected
#   rejected --verify-->  verified     (an admin may correct a rejection after checking again)
#   verified --verify-->  verified     (idempotent: 200, nothing changes; starting credits are
#                                       still ensured, so a retry after a crash completes them)
#   rejected --reject-->  rejected     (idempotent: 200, the first reason is kept)
#   verified --reject-->  409 INVALID_STATE (a verified resident may hold credits and history;
#                                       removing one is a separate, audited operation)

def verify_changes(current_status: str) -> bool:
    """Whether verifying a resident in ``current_status`` changes it (False: already verified)."""
    if current_status in (PENDING, REJECTED):
        return True
    if current_status == VERIFIED:
        return False
    raise InvalidState(details={"status": current_status})


def reject_changes(current_status: str) -> bool:
    """Whether rejecting changes the resident; a verified resident cannot be rejected."""
    if current_status == PENDING:
        return True
    if current_status == REJECTED:
        return False
    raise InvalidState("已认证的居民不能被驳回", {"status": current_status})


def verified(resident: Resident, actor: str, at: datetime) -> Resident:
    return replace(resident, status=VERIFIED, reviewed_at=at, reviewed_by=actor, rejection_reason=None)


def rejected(resident: Resident, actor: str, at: datetime, reason: str) -> Resident:
    return replace(resident, status=REJECTED, reviewed_at=at, reviewed_by=actor, rejection_reason=reason)


# --- relations between households ----------------------------------------------------------


# A household of another community of the district, as a relative: "<community>:<household>".
# Local household ids never contain ":", so the two kinds cannot be confused.
REMOTE_SEPARATOR = ":"


def remote_household_key(community_id: str, household_id: str) -> str:
    return f"{community_id}{REMOTE_SEPARATOR}{household_id}"


def split_household_key(key: str) -> tuple[str | None, str]:
    """(community or None for a local household, household id)."""
    community, separator, household = key.partition(REMOTE_SEPARATOR)
    return (community, household) if separator else (None, key)


def are_relatives(own_household: str, other_household: str, declared: set[tuple[str, str]]) -> bool:
    """Two different households are relatives only when each declared the other.

    One-sided declarations count for nothing: otherwise anyone could declare a stranger's
    household and move credits out of their own household to it.
    """
    if own_household == other_household:
        return True
    return (own_household, other_household) in declared and (other_household, own_household) in declared
