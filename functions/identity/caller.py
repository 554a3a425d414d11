"""Who is calling: what every handler gets as ``ctx.caller`` once authenticated."""
from __future__ import annotations

from dataclasses import dataclass, field


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
    def is_verified(self) -> bool:
        return self.status == "verified"
