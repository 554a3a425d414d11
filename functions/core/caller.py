"""Who is calling: what every handler gets as ``ctx.caller`` once authenticated, and the
levels a route may require of them."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Auth(enum.Enum):
    PUBLIC = "public"          # no token needed
    LOGIN = "login"            # a valid token, registered or not
    REGISTERED = "registered"  # a resident record exists (any status)
    VERIFIED = "verified"      # a verified resident
    ADMIN = "admin"            # an admin of this community
    VERIFIED_OR_ADMIN = "verified_or_admin"  # acts of a party that admins may also take (confirm, cancel)
    MERCHANT = "merchant"      # a merchant's owner (role merchant)


@dataclass(frozen=True)
class Caller:
    openid: str
    resident_id: str | None = None        # None until registered
    household_id: str | None = None
    status: str | None = None             # pending / verified / rejected
    roles: frozenset[str] = field(default_factory=frozenset)  # resident, admin, merchant

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def actor(self) -> str:
        """Who did it, as ledger transfers and audit entries record it."""
        return self.resident_id or self.openid

    @property
    def is_verified(self) -> bool:
        return self.status == "verified"
