"""The district hub as this community calls it: signed HTTP (``adapters.signed_calls``)."""
from __future__ import annotations

from typing import Any, Mapping

from functions.adapters.signed_calls import SignedClient

SUBMIT = "/v1/hub/transfers"
POSITION = "/v1/hub/position"


class HubClient:
    """The ``district.ports.Hub`` port."""

    def __init__(self, client: SignedClient):
        self._client = client

    def submit(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return self._client.call("POST", SUBMIT, message)

    def position(self) -> dict[str, Any]:
        return self._client.call("GET", POSITION)
