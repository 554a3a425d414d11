"""``make run`` runs the whole district (通存通兑) when the community belongs to one: the other
communities of its hub file (``infra/hubs/<district>.toml``) and the hub itself, each a
``python -m local.run`` child process of its own on the one embedded moto endpoint.

Why processes and not threads: Chalice caches the imported app and the functions read their
table and queue names when they are imported, so two stacks in one process would share them
(``local/inprocess.py`` swaps them for tests, one call at a time, which a server with
consumer threads cannot do). Each child gets the environment its deployment would have, with
local URLs: the communities call the hub at ``http://127.0.0.1:<hub port>``, the hub calls
each community at its local port; the keys are provisioned by each stack in (moto's) Secrets
Manager, derived from the ids so both sides of a pair hold the same one
(``local.provision.local_secret_value``).

    demo       http://127.0.0.1:8000   (this process; admin admin-demo)
    demo-east  http://127.0.0.1:8001   (admin admin-east, one verified demo household)
    hub-demo   http://127.0.0.1:8002   (signed calls only)

The children's log lines are this process's, prefixed with their name. Once every child is
ready, the demo households declare each other relatives in both directions (through each
community's own API), so credits can be sent across with curl (README, "Running locally").
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger("local.district")

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 30


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class Child:
    name: str
    port: int
    environment: dict[str, str]
    url: str = ""
    process: subprocess.Popen | None = None
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None


def hub_of(community_id: str) -> Any:
    """The hub file of the district ``community_id`` clears through, or None."""
    from infra.config import COMMUNITIES_DIR, HUBS_DIR, load_community, load_hub

    if not (COMMUNITIES_DIR / f"{community_id}.toml").is_file():
        return None
    community = load_community(community_id)
    if community.district is None or not (HUBS_DIR / f"{community.district.id}.toml").is_file():
        return None
    hub = load_hub(community.district.id)
    return hub if community_id in hub.communities else None


def plan(community_id: str, host: str, api_port: int) -> tuple[dict[str, str], list[Child]]:
    """(the variables this process's community needs, the children to start) for the district
    of ``community_id``; ``api_port`` is this process's (already fixed) port."""
    hub = hub_of(community_id)
    if hub is None:
        return {}, []
    ports: dict[str, int] = {}
    others = [c for c in sorted(hub.communities) if c != community_id]
    default = api_port == 8000
    hub_name = f"hub-{hub.id}"
    for offset, name in enumerate([*others, hub_name], start=1):
        ports[name] = api_port + offset if default else free_port(host)
    urls = {community_id: f"http://{host}:{api_port}", **{n: f"http://{host}:{p}" for n, p in ports.items()}}
    hub_url = urls[hub_name]
    children = [Child(name, ports[name], {"TIMEBANK_COMMUNITY": name, "TIMEBANK_HUB_URL": hub_url}, urls[name])
                for name in others]
    hub_environment = {k: v for k, v in hub.environment().items()
                       if k not in ("TIMEBANK_STAGE",) and not k.startswith("POWERTOOLS_")}
    registry = json.loads(hub_environment["TIMEBANK_HUB_COMMUNITIES"])
    for name, entry in registry.items():
        entry["url"] = urls.get(name, entry["url"])
    hub_environment["TIMEBANK_HUB_COMMUNITIES"] = json.dumps(registry, sort_keys=True, separators=(",", ":"))
    children.append(Child(hub_name, ports[hub_name], hub_environment, hub_url))
    return {"TIMEBANK_HUB_URL": hub_url}, children


class LocalDistrict:
    """Starts the children, forwards their logs, seeds the relatives, stops them."""

    def __init__(self, children: list[Child], moto_endpoint: str, host: str, options: Mapping[str, Any]):
        self.children = children
        self.moto_endpoint = moto_endpoint
        self.host = host
        self.options = dict(options)

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for child in self.children:
            if not child.ready.wait(max(0.1, deadline - time.monotonic())) or child.process.poll() is not None:
                raise RuntimeError(f"{child.name} did not start:\n" + "".join(child.lines[-30:]))
        log.info("district: %s", ", ".join(f"{c.name} {c.url}" for c in self.children))

    def _spawn(self, child: Child) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
        env.update(child.environment)
        env["TIMEBANK_LOCAL_MOTO_ENDPOINT"] = self.moto_endpoint
        env["TIMEBANK_LOCAL_DISTRICT"] = "off"   # a child never starts a district of its own
        args = [sys.executable, "-m", "local.run", "--host", self.host, "--port", str(child.port)]
        for flag in ("seed", "demo_residents", "consumers", "schedules"):
            if flag in self.options:
                args.append(f"--{'' if self.options[flag] else 'no-'}{flag.replace('_', '-')}")
        for flag in ("poll_interval", "retry_delay", "schedule_max_interval"):
            if self.options.get(flag) is not None:
                args += [f"--{flag.replace('_', '-')}", str(self.options[flag])]
        child.process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True, start_new_session=True)
        child.reader = threading.Thread(target=self._forward, args=(child,), name=f"log-{child.name}", daemon=True)
        child.reader.start()

    @staticmethod
    def _forward(child: Child) -> None:
        assert child.process is not None and child.process.stdout is not None
        for line in child.process.stdout:
            child.lines.append(line)
            sys.stderr.write(f"[{child.name}] {line}")
            if " ready in " in line:
                child.ready.set()
        child.ready.set()

    def community_urls(self) -> dict[str, str]:
        return {c.name: c.url for c in self.children if not c.name.startswith("hub-")}

    def stop(self) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(5)
            if child.reader is not None:
                child.reader.join(5)
