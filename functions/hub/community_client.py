"""The community stacks of the district, as the hub calls them: signed HTTP
(``adapters.signed_calls``), each with the key it shares with the hub."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from functions.adapters.signed_calls import SignedClient, Transport
from functions.core.signing import HUB

INCOMING = "/v1/district/incoming"
OUTCOMES = "/v1/district/outcomes"
RECONCILE = "/v1/district/reconcile"


class CommunityClients:
    """The ``hub.ports.Communities`` port over the hub's registry (``settings.hub_communities``:
    community id → ``{"url", "key_secret"}``)."""

    def __init__(self, registry: Mapping[str, Mapping[str, str]], key: Callable[[str], bytes],
                 transport: Transport):
        self._registry = dict(registry)
        self._key = key
        self._transport = transport

    def known(self, community: str) -> bool:
        return community in self._registry

    def ids(self) -> list[str]:
        return sorted(self._registry)

    def _client(self, community: str) -> SignedClient:
        entry = self._registry[community]
        return SignedClient(HUB, community, entry["url"], lambda: self._key(entry["key_secret"]), self._transport)

    def deliver(self, community: str, message: Mapping[str, Any]) -> dict[str, Any]:
        return self._client(community).call("POST", INCOMING, message)

    def outcome(self, community: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._client(community).call("POST", OUTCOMES, body)

    def reconcile(self, community: str) -> dict[str, Any]:
        return self._client(community).call("GET", RECONCILE)
