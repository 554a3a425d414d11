"""What identity's use cases need from outside: its store, the ledger (starting credits), and
WeChat's login exchange."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, Sequence

from functions.identity.model import (Dependant, Household, Login, Member, RelativeDeclaration, ReputationChange,
                                     Resident)


class IdentityStore(Protocol):
    def get_login(self, openid: str) -> Login | None: ...

    def create_resident(self, resident: Resident, household: Household, address_key: str) -> str:
        """All or nothing: the login item gains the resident (only if it had none — else
        ``AlreadyExists``) and the resident is stored in the household of ``address_key``:
        the one registered there already, or ``household`` (new, with its address entry).
        Returns the household id the resident joined."""

    def get_resident(self, household_id: str, resident_id: str, consistent: bool = True) -> Resident | None: ...

    def find_member(self, member_id: str) -> Member | None:
        """A resident or dependant by id alone (eventually consistent index read)."""

    def get_member(self, household_id: str, member_id: str, consistent: bool = True) -> Member | None: ...

    def list_members(self, household_id: str) -> list[Member]: ...

    def find_by_phone_hash(self, phone_hash: str) -> list[Resident]:
        """Residents with this keyed phone hash (eventually consistent index read)."""

    def residents_with_phone(self, phone: str) -> list[Resident]:
        """Residents registered or imported with this phone (index, then consistent reads)."""

    def residents_with_phones(self, phones: list[str]) -> dict[str, list[Resident]]:
        """The same for many phones (phone → residents)."""

    def households_at(self, address_keys: list[str]) -> dict[str, str]:
        """address key → household id, for the keys a household is registered at."""

    def get_households(self, household_ids: list[str]) -> dict[str, Household]: ...

    def import_writes(self, residents: list[Resident], new_household: Household | None, address_key: str,
                      grant_mark_at: datetime | None) -> list[Any]:
        """One household's writes of a roster import (``add_to(transaction)``), each conditional
        on the item being absent (or the grant mark unset), to commit with its starting credits."""

    def claim_resident(self, resident: Resident, openid: str) -> bool:
        """Link ``openid``'s login to an imported resident nobody claimed; False if claimed meanwhile."""

    def create_dependant(self, dependant: Dependant, limit: int) -> bool:
        """Store it unless the id exists (False: the caller compares content), counting it on the
        household in the same transaction: ``LimitExceeded`` when the household has ``limit``."""

    def update_resident_status(self, resident: Resident, expected_status: str) -> bool:
        """Write the new status (and review fields) of ``resident`` on the resident and its
        login, only if the stored status is still ``expected_status``; False otherwise."""

    def status_writes(self, resident: Resident, expected_status: str | None,
                      grant_mark_at: datetime | None) -> list[Any]:
        """The writes of a verification, to commit with the starting-credits transfer: the
        resident's new status (conditional on ``expected_status``; None: unchanged) and, when
        ``grant_mark_at``, the household's "credits granted" mark (conditional on none yet)."""

    def list_residents_by_status(self, status: str, limit: int,
                                 cursor: dict[str, Any] | None) -> tuple[list[Resident], dict[str, Any] | None]: ...

    def set_roles(self, resident: Resident, roles: frozenset[str]) -> None:
        """Store the resident's roles on the resident and its login together."""

    def get_household(self, household_id: str, consistent: bool = True) -> Household | None: ...


    def put_declaration(self, declaration: RelativeDeclaration, limit: int) -> bool:
        """False when this household already declared that one (nothing is written); counted
        on the household in the same transaction: ``LimitExceeded`` at ``limit``."""

    def get_declaration(self, household_id: str, relative_household_id: str) -> RelativeDeclaration | None: ...

    def declarations_between(self, first: str, second: str) -> set[tuple[str, str]]:
        """Which of (first→second, second→first) exist."""

    def declarations_by(self, household_id: str) -> list[RelativeDeclaration]: ...

    def declarations_of(self, relative_household_id: str) -> list[RelativeDeclaration]:
        """Declarations other households made naming this one."""

    def delete_declaration(self, household_id: str, relative_household_id: str) -> bool: ...

    def bump_token_version(self, openid: str) -> int: ...

    def revocation_version(self, max_age: float = ...) -> int:
        """The community's revocation version (logouts and downgrades), at most ``max_age`` seconds old."""

    def grant_role(self, openid: str, role: str) -> Any:
        """A write (``add_to(transaction)``) adding ``role`` to the login of ``openid``, creating
        the login item if the openid never logged in."""
    def set_proxy(self, resident: Resident) -> bool:
        """Store ``resident.proxy_since`` (naming needs the resident still verified); False if not."""

    def add_reputation(self, change: ReputationChange) -> bool:
        """Count ``change`` once (its mark and the counters together); False if counted before."""


class StartingLedger(Protocol):
    """The part of the ledger identity uses: one transfer (issuance → household), joined with
    identity's own writes (``also``) into one transaction."""

    def transfer(self, transfer_id: str, debit: str, credit: str, asset: str = "service", amount: int = 0,
                 kind: str = "transfer", memo: str = "", actor: str | None = None,
                 request_id: str | None = None, also: Sequence[Any] = ()) -> Any: ...

    def execute(self, commands: Sequence[Any], also: Sequence[Any] = ()) -> Any:
        """``also`` alone, in one transaction (a failed condition: ``InvalidState``)."""

    def get_transfer(self, transfer_id: str) -> Any: ...


class PhoneHasher(Protocol):
    """The keyed hash of a phone under the district-wide key (通存通兑); None outside a district."""

    def __call__(self, phone: str) -> str | None: ...


class WeChatLogin(Protocol):
    def code_to_session(self, code: str) -> Any:
        """The ``WeChatSession`` (openid) of a ``wx.login`` code."""
