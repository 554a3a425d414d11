"""What the hub answers: transfer states and positions (ids and figures only — the hub never
sees a name or a phone, only the keyed hash the destination compares)."""
from __future__ import annotations

from typing import Any

from functions.hub.model import HubTransfer


def answer_view(transfer: HubTransfer) -> dict[str, Any]:
    return transfer.answer()
