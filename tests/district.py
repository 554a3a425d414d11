"""A district in one test process: two communities (``demo``, ``demo-east``) and the hub, each
a stack of its own (``local.inprocess``) on one moto account, calling each other through an
in-process transport that goes through the real routes and signature checks.

    with district_world() as world:
        headers, alice = verified_resident(world.demo, "alice")     # tests.helpers work per stack
        world.demo.http.post("/v1/transfers", ...)
        world.settle()                                              # drain every queue until quiet

``world.transport.down`` / ``.lose_answers`` make a stack unreachable or lose its answers.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import boto3
from moto import mock_aws

from infra.config import district_secret_names, hub_key_secret_name
from local.inprocess import InProcessTransport, Stack, activate, drain, fire, forget_clients, provision

DISTRICT = "demo"
ADMINS = "admin-test"


def community_environment(community: str, hub_url: str, **extra: str) -> dict[str, str]:
    return {"TIMEBANK_COMMUNITY": community, "TIMEBANK_STAGE": "test", "TIMEBANK_ADMIN_OPENIDS": ADMINS,
            "TIMEBANK_TOKEN_SECRET": "test-token-secret", "TIMEBANK_STARTING_CREDITS": "300",
            "TIMEBANK_DISTRICT": DISTRICT, "TIMEBANK_HUB_URL": hub_url, **district_secret_names(community), **extra}


def hub_environment(communities: list[Stack]) -> dict[str, str]:
    registry = {s.name: {"url": s.url, "key_secret": hub_key_secret_name(DISTRICT, s.name)} for s in communities}
    return {"TIMEBANK_STACK": "hub", "TIMEBANK_COMMUNITY": f"hub-{DISTRICT}", "TIMEBANK_STAGE": "test",
            "TIMEBANK_RESOURCE_PREFIX": f"timebank-hub-{DISTRICT}", "TIMEBANK_DISTRICT": DISTRICT,
            "TIMEBANK_HUB_COMMUNITIES": json.dumps(registry)}


class StackHttp:
    """``chalice.test.Client().http`` of one stack, activating it around every request."""

    def __init__(self, stack: Stack):
        self.stack = stack

    def request(self, method: str, path: str, headers: dict | None = None, body: Any = b"") -> Any:
        with activate(self.stack):
            return self.stack.client().http.request(method, path, headers=headers or {}, body=body)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


class StackClient:
    """Looks like the ``client`` fixture to ``tests.helpers``."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.http = StackHttp(stack)

    def call(self, factory: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``bootstrap.<factory>().<method>(...)`` with this stack active."""
        from functions import bootstrap

        with activate(self.stack):
            return getattr(getattr(bootstrap, factory)(), method)(*args, **kwargs)

    def run(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        with activate(self.stack):
            return function(*args, **kwargs)


@dataclass
class World:
    demo: StackClient
    east: StackClient
    hub: StackClient
    transport: InProcessTransport
    stacks: list[Stack] = field(default_factory=list)

    def settle(self, rounds: int = 10) -> int:
        """Drain every stack's queues until nothing moves."""
        total = 0
        for _ in range(rounds):
            moved = sum(drain(stack) for stack in self.stacks)
            total += moved
            if not moved:
                break
        return total

    @contextmanager
    def configure(self, client: StackClient, **environment: str) -> Iterator[None]:
        """Run with more settings on one stack (its composition root rebuilt, the transport kept)."""
        stack = client.stack
        saved, kept = dict(stack.environment), stack.built.get("transport")
        stack.environment.update(environment)
        stack.built.clear()
        stack.built["transport"] = kept
        try:
            yield
        finally:
            stack.environment.clear()
            stack.environment.update(saved)
            stack.built.clear()
            stack.built["transport"] = kept

    def fire(self, stack: StackClient, schedule: str) -> Any:
        return fire(stack.stack, schedule)

    def ledger_check(self, client: StackClient) -> dict:
        return client.call("ledger", "check")

    def reconcile(self, client: StackClient) -> dict:
        return client.call("district", "reconcile")


@contextmanager
def district_world(east_cap: int = 0) -> Iterator[World]:
    """A fresh moto account with the three stacks provisioned."""
    forget_clients()
    with mock_aws():
        import functions.app  # noqa: F401  (the community app: registers its tables and queues)
        import functions.hub_app  # noqa: F401

        transport = InProcessTransport()
        hub = Stack("hub", {}, app_module="functions.hub_app")
        hub_url = hub.url
        demo = Stack("demo", community_environment("demo", hub_url))
        east = Stack("demo-east", community_environment(
            "demo-east", hub_url, **({"TIMEBANK_HOUSEHOLD_BALANCE_CAP": str(east_cap)} if east_cap else {})))
        hub.environment = hub_environment([demo, east])
        stacks = [demo, east, hub]
        for stack in stacks:
            transport.add(stack)
            stack.built["transport"] = transport
            provision(stack)
        try:
            yield World(StackClient(demo), StackClient(east), StackClient(hub), transport, stacks)
        finally:
            forget_clients()
