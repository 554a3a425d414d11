"""What leaves risk over HTTP: flags (ids and figures only)."""
from __future__ import annotations

from typing import Any

from functions.core import clock
from functions.risk.model import Flag


def flag_view(flag: Flag) -> dict[str, Any]:
    return {
        "id": flag.id, "kind": flag.kind, "subjects": flag.subjects, "count": flag.count,
        "window_days": flag.window_days, "window_hours": flag.window_hours, "status": flag.status,
        "request_ids": list(flag.request_ids), "created_at": clock.isoformat(flag.created_at),
        "updated_at": clock.isoformat(flag.updated_at),
        "resolution": None if flag.outcome is None else {
            "outcome": flag.outcome, "reason": flag.reason, "resolved_by": flag.resolved_by,
            "resolved_at": clock.isoformat(flag.resolved_at) if flag.resolved_at else None,
            "reversal_ids": list(flag.reversal_ids)},
    }
