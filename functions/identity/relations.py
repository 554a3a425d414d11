"""Who may receive credits from whom: the identity side of ``POST /v1/transfers``.

``transfer_target(caller, to)`` turns the request's ``to`` into the ledger account to credit,
allowing only: the caller's own household, a resident of it, a household that declared the
caller's household as relatives AND was declared back (or a resident of such a household), and
the community pool. One-sided declarations count for nothing: otherwise anyone could route
credits to a stranger.

Cost: pool or own household 0 reads; another household 1 BatchGetItem (both declarations),
plus 1 GetItem only to tell an unknown household (404) from an unrelated one (422); a resident
id adds 1 Query on the member-id index first.
"""
from __future__ import annotations

from typing import Any

from functions.core.errors import Forbidden, NotFound, NotRelative, ValidationError
from functions.identity.caller import Caller
from functions.identity.domain import REJECTED, Resident
from functions.identity.service import IdentityService
from functions.identity.wiring import get_identity_service
from functions.ledger.accounts import POOL, household_account, resident_account

_TARGET_KEYS = ("household_id", "resident_id", "pool")
_ID_MAX = 100


def _malformed(reason: str) -> ValidationError:
    return ValidationError("收款方无效", {"fields": {"to": reason}})


def parse_target(to: Any) -> tuple[str, str | None]:
    """``("pool", None)``, ``("household_id", id)`` or ``("resident_id", id)``; 400 otherwise."""
    if not isinstance(to, dict):
        raise _malformed("must be an object")
    present = [key for key in _TARGET_KEYS if to.get(key) is not None]
    if len(present) != 1:
        raise _malformed("must name exactly one of household_id, resident_id, pool")
    key = present[0]
    value = to[key]
    if key == "pool":
        if value is not True:
            raise _malformed("pool must be true")
        return key, None
    if not isinstance(value, str) or not 0 < len(value) <= _ID_MAX:
        raise _malformed(f"{key} must be a non-empty string of at most {_ID_MAX} characters")
    return key, value


def transfer_target(caller: Caller, to: Any, service: IdentityService | None = None) -> str:
    """The ledger account id to credit for ``to``; NotFound / NotRelative / ValidationError."""
    kind, target_id = parse_target(to)
    if kind == "pool":
        return POOL
    if caller.household_id is None:
        raise Forbidden("请先登记居民信息")
    service = service or get_identity_service()
    if kind == "household_id":
        _require_relatives(service, caller.household_id, target_id)
        return household_account(target_id)
    resident = _resident(service, target_id)
    if resident.status == REJECTED:
        # A rejected claim to live somewhere makes nobody a member of that household.
        raise NotRelative(details={"resident_id": target_id})
    _require_relatives(service, caller.household_id, resident.household_id)
    return resident_account(resident.id)


def _resident(service: IdentityService, resident_id: str) -> Resident:
    member = service.find_member(resident_id)
    if not isinstance(member, Resident):
        raise NotFound("未找到该居民", {"resident_id": resident_id})
    return member


def _require_relatives(service: IdentityService, own_household: str, other_household: str) -> None:
    if service.are_relatives(own_household, other_household):
        return
    if service.store.get_household(other_household) is None:
        raise NotFound("未找到该住户", {"household_id": other_household})
    raise NotRelative(details={"household_id": other_household})
