"""What the hub's use cases need: its store and the community stacks it talks to."""
from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

from functions.hub.model import HubTransfer


class HubStore(Protocol):
    def get(self, transfer_id: str) -> HubTransfer | None: ...

    def put_new(self, transfer: HubTransfer) -> Any:
        """A write of a new transfer (only if the id is new)."""

    def resolve(self, transfer: HubTransfer) -> Any:
        """A write of the destination's outcome (only while the transfer is forwarding)."""

    def move_position(self, community: str, asset: str, delta: int) -> Any:
        """A write adding ``delta`` to a community's net position."""

    def close(self, transfer: HubTransfer) -> Any:
        """A write marking the transfer closed (the source applied its outcome)."""

    def commit(self, writes: Sequence[Any]) -> None:
        """All of the writes (and outbox events) or none; ``InvalidState`` if a condition fails."""

    def open_transfers(self) -> list[HubTransfer]:
        """Transfers not closed yet."""

    def positions(self, community: str | None = None) -> dict[str, dict[str, int]]:
        """community -> asset -> net position."""

    def scan(self) -> list[HubTransfer]: ...


class Communities(Protocol):
    """The community stacks of the district, over signed HTTP; each call returns the
    community's answer or raises (no answer: nothing may be concluded)."""

    def known(self, community: str) -> bool: ...

    def ids(self) -> list[str]: ...

    def deliver(self, community: str, message: Mapping[str, Any]) -> dict[str, Any]: ...

    def outcome(self, community: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def reconcile(self, community: str) -> dict[str, Any]: ...
