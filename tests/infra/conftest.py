"""Package once per test session: every community of infra/communities/ (as ``make package``
does, through ``python -m infra.package --all``) and the sample app that adds a handler of each
kind (``tests/infra/sample_app.py``); meanwhile a fresh process reports what the app declares
(the expectations), so all three read the same code."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.config import community_ids, hub_ids
from infra.vendoring import REPO_ROOT


@dataclass(frozen=True)
class Built:
    community: str
    directory: Path
    template: dict[str, Any]
    summary: dict[str, Any]

    @property
    def template_path(self) -> Path:
        return self.directory / "template.json"

    @property
    def zip_path(self) -> Path:
        return self.directory / "deployment.zip"

    @property
    def resources(self) -> dict[str, Any]:
        return self.template["Resources"]

    def of_type(self, resource_type: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == resource_type}


@dataclass(frozen=True)
class Packaged:
    communities: dict[str, Built]
    sample: Built
    hubs: dict[str, Built]   # the district hubs of infra/hubs/, by district id
    output: str
    facts: dict[str, Any]  # what the product's app declares (APP_FACTS)


def _load(directory: Path, community: str) -> Built:
    target = directory / community
    return Built(community, target,
                 json.loads((target / "template.json").read_text(encoding="utf-8")),
                 json.loads((target / "build.json").read_text(encoding="utf-8")))


# What the product's app declares, read in a fresh process: tests in this process may have
# registered extra routes, queues or tables on the shared registries.
APP_FACTS = r"""
import json
from chalice.app import ScheduledEventConfig, SQSEventConfig
from functions.app import app
from functions.core.messaging import QUEUES
from functions.bootstrap import table_definitions

sources = []
for source in app.event_sources:
    fact = {"kind": type(source).__name__, "handler": source.handler_string}
    if isinstance(source, SQSEventConfig):
        fact["queue"] = source.queue
    elif isinstance(source, ScheduledEventConfig):
        expression = source.schedule_expression
        fact["expression"] = expression if isinstance(expression, str) else expression.to_string()
    sources.append(fact)
print(json.dumps({
    "routes": sorted([path, method] for path, methods in app.routes.items() for method in methods),
    "sources": sources,
    "pure_functions": [f.handler_string for f in app.pure_lambda_functions],
    "queues": {name: {"max_receive_count": spec.max_receive_count,
                      "consumer_timeout_seconds": spec.consumer_timeout_seconds}
               for name, spec in QUEUES.items()},
    "tables": table_definitions(),
}))
"""
FACTS_COMMUNITY = "facts"


def _facts_command() -> tuple[list[str], dict[str, str]]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
    environment.update({"TIMEBANK_COMMUNITY": FACTS_COMMUNITY, "TIMEBANK_STAGE": "test"})
    return [sys.executable, "-c", APP_FACTS], environment


@pytest.fixture(scope="session")
def packaged(tmp_path_factory) -> Packaged:
    real_out = tmp_path_factory.mktemp("packaged")
    sample_out = tmp_path_factory.mktemp("sample")
    commands = [
        [sys.executable, "-m", "infra.package", "--all", "--out", str(real_out)],
        [sys.executable, "-m", "infra.package", "--community", "demo",
         "--app", "tests.infra.sample_app", "--out", str(sample_out)],
    ]
    facts_command, facts_environment = _facts_command()
    # All at once: the facts are read from the same code as the builds.
    processes = [subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for command in commands]
    processes.append(subprocess.Popen(facts_command, cwd=REPO_ROOT, env=facts_environment,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=300) for process in processes]
    for command, process, (stdout, stderr) in zip([*commands, facts_command], processes, outputs):
        assert process.returncode == 0, f"{' '.join(command)[:200]} failed:\n{stdout}\n{stderr}"
    return Packaged(
        communities={c: _load(real_out, c) for c in community_ids()},
        hubs={d: _load(real_out, f"hub-{d}") for d in hub_ids()},
        sample=_load(sample_out, "demo"),
        output=outputs[0][0],
        facts=json.loads(outputs[2][0].strip().splitlines()[-1]),
    )


@pytest.fixture(scope="session")
def app_facts(packaged) -> dict[str, Any]:
    return packaged.facts
