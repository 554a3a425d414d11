"""In-memory twins of the district protocol's ports (see tests/property/district_world.py for
the full in-memory district the state machine drives)."""
from __future__ import annotations

from typing import Any, Mapping


class StubHub:
    """A hub that takes every transfer and never answers: for routes that only need a hub to exist."""

    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []

    def submit(self, message: Mapping[str, Any]) -> dict[str, Any]:
        self.submitted.append(dict(message))
        return {"id": message["id"], "status": "forwarding"}

    def position(self) -> dict[str, Any]:
        return {"positions": {}, "open": []}
