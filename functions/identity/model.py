"""Identity rules in plain Python: households from addresses, resident status transitions,
relations between households, roles and phone masking.

Nothing here talks to storage or HTTP; ``service.py`` applies these rules through the ports.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime
from fractions import Fraction
from typing import Any, Iterable, Mapping

from functions.core.errors import BusinessRuleViolation, Conflict, Forbidden, InvalidState, TimebankError
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


def address_key(community_id: str, address: Address) -> str:
    """Where a flat's household is looked up: the same normalised flat always gives the same key.

    Household ids themselves are random (never derived from the address): anyone may type any
    address, and an id computed from it would let a stranger name — and probe — any flat's
    household. This key is internal: it leaves no API."""
    return derived_id("addr", community_id, *address.normalised())


# --- residents and dependants -----------------------------------------------------------


@dataclass(frozen=True)
class Reputation:
    """What a resident's reputation (0–100, never an asset) is computed from: services completed
    as the volunteer, the ratings they got, and no-shows. Counters only, so the score does not
    depend on the order events arrive in."""
    completed: int = 0
    no_shows: int = 0
    rating_sum: int = 0
    rating_count: int = 0

    @property
    def score(self) -> int:
        """40 % reliability (completions against no-shows, one free completion as prior), 40 %
        ratings (two 4-star ratings as prior), 20 % experience (up to 20 completions): a
        newcomer starts at 70, one no-show in a short history weighs heavily, a long good
        record approaches 100."""
        reliability = Fraction(self.completed + 1, self.completed + self.no_shows + 1)
        rating = (Fraction(self.rating_sum + 8, self.rating_count + 2) - 1) / 4
        experience = Fraction(min(self.completed, REPUTATION_FULL_EXPERIENCE), REPUTATION_FULL_EXPERIENCE)
        score = 100 * (Fraction(2, 5) * reliability + Fraction(2, 5) * rating + Fraction(1, 5) * experience)
        return max(0, min(100, int(score + Fraction(1, 2))))


REPUTATION_FULL_EXPERIENCE = 20

# The request lifecycle's events reputation is fed by (``functions.requests.model`` defines
# them; identity sits below requests, so it names them). ``request.no_show`` — or a
# ``request.cancelled`` whose data says ``no_show: true`` — is the no-show outcome of issue 9.
SETTLED_EVENT = "request.settled"
CANCELLED_EVENT = "request.cancelled"
NO_SHOW_EVENT = "request.no_show"
REPUTATION_EVENTS: tuple[str, ...] = (SETTLED_EVENT, CANCELLED_EVENT, NO_SHOW_EVENT)
COMPLETED, NO_SHOW = "completed", "no_show"


@dataclass(frozen=True)
class ReputationChange:
    """One outcome of one request for one resident: applied once, whatever the redeliveries."""
    resident_id: str
    household_id: str | None
    request_id: str
    outcome: str                 # completed / no_show
    rating: int | None = None

    @property
    def mark(self) -> str:
        return f"{self.resident_id}#{self.request_id}#{self.outcome}"


def reputation_change(event_type: str, subject: str, data: Mapping[str, Any]) -> ReputationChange | None:
    """What a lifecycle event changes in the volunteer's reputation (None: nothing)."""
    volunteer = data.get("volunteer_id")
    if not isinstance(volunteer, str) or not volunteer:
        return None
    household = data.get("volunteer_household_id")
    household = household if isinstance(household, str) and household else None
    if event_type == SETTLED_EVENT:
        if not data.get("credits_paid") and not data.get("minutes"):
            return None  # settled for nothing (a refund resolved as pay 0): no completion to count
        rating = data.get("rating")
        rating = rating if isinstance(rating, int) and not isinstance(rating, bool) and 1 <= rating <= 5 else None
        return ReputationChange(volunteer, household, subject, COMPLETED, rating)
    if event_type == NO_SHOW_EVENT or (event_type == CANCELLED_EVENT and data.get("no_show") is True):
        return ReputationChange(volunteer, household, subject, NO_SHOW)
    return None


def applied(reputation: Reputation, change: ReputationChange) -> Reputation:
    if change.outcome == NO_SHOW:
        return replace(reputation, no_shows=reputation.no_shows + 1)
    rated = change.rating is not None
    return replace(reputation, completed=reputation.completed + 1,
                   rating_sum=reputation.rating_sum + (change.rating or 0),
                   rating_count=reputation.rating_count + (1 if rated else 0))


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
    proxy_since: datetime | None = None       # named 亲情代理 of the household
    reputation: Reputation = field(default_factory=Reputation)
    # 通存通兑: HMAC of the phone under the district-wide key, so another community can
    # recognise the same person after a move without the phone leaving either stack.
    phone_hash: str | None = None
    # Imported from a roster (``import_id``); unclaimed until a login registers with its phone
    # and address (``openid`` empty until then).
    import_id: str | None = None


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


class ImportedElsewhere(Conflict):
    """A registration with the phone of an imported resident at another address."""
    code = "PHONE_ADDRESS_MISMATCH"
    default_message = "该手机号已由社区登记在另一地址，请核对楼栋、单元、房号，或联系社区工作人员"


# --- roster import (the rules: ``roster.py``, imported only by an import) ----------------------

CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CONTENT_TYPES = (CSV, XLSX)


class ImportInvalid(BusinessRuleViolation):
    code = "IMPORT_INVALID"
    default_message = "名单有误，未导入任何居民；请按逐行报告修改后重新上传"


class ImportEmpty(BusinessRuleViolation):
    code = "IMPORT_EMPTY"
    default_message = "文件中没有居民数据（第 1 行为表头，从第 2 行起每行一位居民）"


class ImportTooLarge(TimebankError):
    status = 413
    code = "IMPORT_TOO_LARGE"
    default_message = "文件过大，无法通过接口导入；请由区里信息化人员用命令行导入：" \
                      "make import-residents COMMUNITY=<社区> FILE=<文件>"


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


# --- family rules: roles, proxies (亲情代理), age -------------------------------------------

HEAD, MEMBER, PROXY = "head", "member", "proxy"


class InvalidProxy(BusinessRuleViolation):
    code = "INVALID_PROXY"
    default_message = "只有本户已认证的居民可以担任亲情代理人"


class AgeRestricted(BusinessRuleViolation):
    code = "AGE_RESTRICTED"
    default_message = "未达到本社区规定的年龄，暂不能进行此操作"


def age_in(year: int, birth_year: int) -> int:
    """Age by calendar year (birth dates are not collected: PIPL, collect only what is needed)."""
    return year - birth_year


def household_head(members: Iterable[Member]) -> str | None:
    """The household's head: its earliest verified resident (the one whose verification
    brought the starting credits, unless the household was imported)."""
    residents = [m for m in members if isinstance(m, Resident) and m.status == VERIFIED]
    if not residents:
        return None
    return min(residents, key=lambda r: (r.created_at, r.id)).id


def role_in_household(member: Member, head_id: str | None) -> str:
    if isinstance(member, Resident) and member.proxy_since is not None:
        return PROXY
    if isinstance(member, Resident) and member.id == head_id:
        return HEAD
    return MEMBER


def may_be_served_by_proxy(member: Member, year: int, elderly_age: int) -> bool:
    """A proxy acts for the household's dependants and its elderly residents."""
    if isinstance(member, Dependant):
        return True
    return member.status != REJECTED and age_in(year, member.birth_year) >= elderly_age


@dataclass(frozen=True)
class ActingFor:
    """A proxy (or an admin) acting for a member: ``caller`` is who the request is made as
    (the member's household, the requester), ``proxy_id`` who acted."""
    caller: Any
    member_id: str
    proxy_id: str
    by_admin: bool
