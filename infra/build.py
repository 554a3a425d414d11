"""Build ONE community's deployable artefacts. Runs in a process of its own.

    python -m infra.build <community> [--out build] [--app functions.app]

Chalice caches the imported app and table/queue names are fixed when ``functions`` is
imported, so a process builds exactly one community: ``infra.package`` starts one per
community. Steps:

1. set the community's environment, then import the app and take its inventory (routes,
   queue consumers, schedules, queues, tables);
2. assemble a Chalice project in ``build/<id>/project/``: a generated ``app.py``, the
   ``.chalice`` config and scoped IAM policy, ``functions/`` and the pinned runtime
   dependencies under ``vendor/`` (Chalice silently drops code anywhere else);
3. run ``chalice package`` (offline: no requirements.txt, everything is vendored);
4. post-process the SAM template (``infra.template``) and write ``build/<id>/template.json``
   and ``build/<id>/deployment.zip`` next to each other.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import template as template_module
from infra.config import APPLICATION, STAGE, CommunityConfig, ConfigError, load_stack
from infra.errors import BuildError
from infra.vendoring import (REPO_ROOT, VendoringError, copy_code_package, runtime_distributions,
                             vendor_distributions)

DEFAULT_APP_MODULE = "functions.app"
HUB_APP_MODULE = "functions.hub_app"   # the district hub's stack
API_TIMEOUT_SECONDS = 29  # API Gateway gives up after 29 s; the handler must not run longer
API_MEMORY_MB = 512
# Scheduled jobs sweep many items (expiry, auto-confirmation, retention) and answer no client.
SCHEDULE_TIMEOUT_SECONDS = 300
PYTHON_RUNTIME = "python3.11"


@dataclass(frozen=True)
class QueueConsumer:
    function: str        # Chalice function name (config key, template resource)
    handler: str         # Lambda handler string, e.g. "functions.requests.routes.on_posted"
    queue: str           # logical queue name in functions.core.messaging.QUEUES
    batch_size: int
    timeout_seconds: int


@dataclass(frozen=True)
class Schedule:
    function: str
    handler: str
    expression: str


@dataclass
class Inventory:
    """What the app declares, read from the imported app and the registries."""
    routes: list[tuple[str, str]] = field(default_factory=list)  # (path, METHOD)
    consumers: list[QueueConsumer] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    pure_functions: list[tuple[str, str]] = field(default_factory=list)  # (name, handler)
    queues: dict[str, Any] = field(default_factory=dict)  # logical → QueueSpec
    tables: list[dict[str, Any]] = field(default_factory=list)
    # Handlers registered on the app itself get the handler string "app.<function>" whatever
    # module defines them: function name → defining module, re-exported by the entry module.
    entry_exports: dict[str, str] = field(default_factory=dict)

    def handlers(self) -> list[str]:
        return sorted({"app.app"} | {c.handler for c in self.consumers}
                      | {s.handler for s in self.schedules} | {h for _, h in self.pure_functions})


def community_environment(config: CommunityConfig) -> dict[str, str]:
    """Environment to set BEFORE ``functions`` is imported (names are fixed at import)."""
    return {**config.environment(), "AWS_DEFAULT_REGION": config.region,
            "AWS_REGION": config.region}


def take_inventory(app: Any) -> Inventory:
    from chalice.app import (CloudWatchEventConfig, S3EventConfig, ScheduledEventConfig,
                             SQSEventConfig)

    from functions.core.messaging import QUEUES, queue_name, stack_queues
    from functions.bootstrap import table_definitions

    # Only this stack's own queues and tables (a community, or the district hub).
    inventory = Inventory(queues=stack_queues(), tables=table_definitions())
    for path, methods in sorted(app.routes.items()):
        inventory.routes += [(path, method) for method in sorted(methods)]
    by_name = {queue_name(logical): logical for logical in QUEUES}
    for source in app.event_sources:
        if isinstance(source, SQSEventConfig):
            logical = by_name.get(source.queue or "")
            if logical is None:
                raise BuildError(
                    f"{source.handler_string} consumes queue {source.queue or source.queue_arn!r}, "
                    "which is not registered in functions.core.messaging.QUEUES: register it "
                    "(register_queue) and subscribe with queue=queue_name(<logical>)")
            spec = QUEUES[logical]
            inventory.consumers.append(QueueConsumer(
                function=source.name, handler=source.handler_string, queue=logical,
                batch_size=source.batch_size, timeout_seconds=spec.consumer_timeout_seconds))
        elif isinstance(source, ScheduledEventConfig):
            expression = source.schedule_expression
            inventory.schedules.append(Schedule(
                function=source.name, handler=source.handler_string,
                expression=expression if isinstance(expression, str) else expression.to_string()))
        elif isinstance(source, S3EventConfig):
            raise BuildError(f"{source.handler_string}: @app.on_s3_event cannot be packaged "
                             "(chalice package refuses it); route S3 notifications through SQS")
        elif isinstance(source, CloudWatchEventConfig):
            raise BuildError(f"{source.handler_string}: EventBridge pattern rules are not "
                             "provisioned by infra/ yet; use @app.schedule or a queue")
        else:
            raise BuildError(f"{source.handler_string}: event source {type(source).__name__} "
                             "is not provisioned by infra/")
    inventory.pure_functions = [(f.name, f.handler_string) for f in app.pure_lambda_functions]
    names = {c.handler: c.function for c in inventory.consumers}
    names.update({s.handler: s.function for s in inventory.schedules})
    names.update({handler: name for name, handler in inventory.pure_functions})
    for handler, name in names.items():
        if handler.startswith("app."):
            function = getattr(app.handler_map[name], "func", app.handler_map[name])
            inventory.entry_exports[handler.split(".", 1)[1]] = function.__module__
    if getattr(app, "websocket_handlers", None):
        raise BuildError("websocket handlers are not provisioned by infra/")
    for consumers in _group(inventory.consumers, lambda c: c.queue).values():
        if len(consumers) > 1:
            raise BuildError(f"queue {consumers[0].queue} has several consumers "
                             f"({', '.join(c.handler for c in consumers)}): one queue, one consumer")
    return inventory


def _group(items, key):
    groups: dict[Any, list] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


# ---- the Chalice project --------------------------------------------------------------------

def entry_module(app_module: str, inventory: Inventory) -> str:
    """``app.py`` of the package: Lambda resolves every handler string "app.<name>" in it."""
    lines = [
        '"""Lambda entry module, generated by infra/build.py: do not edit."""',
        f"from {app_module} import app  # noqa: F401",
    ]
    lines += [f"from {module} import {name}  # noqa: F401"
              for name, module in sorted(inventory.entry_exports.items())]
    return "\n".join(lines) + "\n"


def chalice_config(config: CommunityConfig, inventory: Inventory, policy_file: str) -> dict[str, Any]:
    per_function = {c.function: {"lambda_timeout": c.timeout_seconds} for c in inventory.consumers}
    per_function.update({s.function: {"lambda_timeout": SCHEDULE_TIMEOUT_SECONDS}
                         for s in inventory.schedules})
    return {
        "version": "2.0",
        "app_name": config.resource_prefix,
        "stages": {STAGE: {
            "api_gateway_stage": "api",
            # China regions have no edge-optimised endpoints; regional works everywhere.
            "api_gateway_endpoint_type": "REGIONAL",
            "autogen_policy": False,
            "iam_policy_file": policy_file,
            "environment_variables": config.environment(),
            "lambda_timeout": API_TIMEOUT_SECONDS,
            "lambda_memory_size": API_MEMORY_MB,
            "log_retention_in_days": config.log_retention_days,
            "tags": {"Application": APPLICATION, "Community": config.key},
            "lambda_functions": per_function,
        }},
    }


def assemble_project(project: Path, config: CommunityConfig, app_module: str,
                     inventory: Inventory, policy_document: dict[str, Any]) -> list[str]:
    """Write the Chalice project; return the vendored ``name==version`` pins."""
    if project.exists():
        shutil.rmtree(project)
    (project / ".chalice").mkdir(parents=True)
    vendor = project / "vendor"
    vendor.mkdir()
    (project / "app.py").write_text(entry_module(app_module, inventory), encoding="utf-8")
    policy_file = f"policy-{STAGE}.json"
    (project / ".chalice" / policy_file).write_text(json.dumps(policy_document, indent=2),
                                                    encoding="utf-8")
    (project / ".chalice" / "config.json").write_text(
        json.dumps(chalice_config(config, inventory, policy_file), indent=2, ensure_ascii=False),
        encoding="utf-8")
    for package in _code_packages(app_module, inventory):
        copy_code_package(package, vendor)
    pins = vendor_distributions(vendor, runtime_distributions())
    # Documentation of what was vendored; chalice installs nothing (there is no requirements.txt).
    (project / "vendored-requirements.txt").write_text("\n".join(pins) + "\n", encoding="utf-8")
    return pins


def _code_packages(app_module: str, inventory: Inventory) -> list[Path]:
    """Directories of the top-level packages holding the app and its handlers."""
    modules = {app_module, "functions", *inventory.entry_exports.values(),
               *(h.rsplit(".", 1)[0] for h in inventory.handlers() if not h.startswith("app."))}
    packages = set()
    for top in sorted({m.split(".")[0] for m in modules}):
        package = importlib.import_module(top)
        if not getattr(package, "__path__", None):
            raise BuildError(f"handlers must live in a package, not the module {top}")
        packages.add(Path(list(package.__path__)[0]))
    return sorted(packages)


def run_chalice_package(project: Path, out: Path) -> None:
    from chalice.cli import cli

    if out.exists():
        shutil.rmtree(out)
    try:
        cli.main(args=["--project-dir", str(project), "package", "--stage", STAGE, str(out)],
                 prog_name="chalice", obj={}, standalone_mode=False)
    except SystemExit as exc:  # click exits on errors even with standalone_mode=False
        if exc.code:
            raise BuildError(f"chalice package failed with exit code {exc.code}") from None


# ---- the whole build ------------------------------------------------------------------------

def build(community_id: str, out_root: Path, app_module: str = DEFAULT_APP_MODULE) -> dict[str, Any]:
    started = time.monotonic()
    config = load_stack(community_id)   # a community, or a district hub ("hub-<district>")
    if getattr(config, "is_hub", False) and app_module == DEFAULT_APP_MODULE:
        app_module = HUB_APP_MODULE
    # Table and queue names are fixed when the models and the app are imported.
    # The model modules (``@table``) and the app (queue names) read the settings when imported.
    already = sorted(m for m in sys.modules if m == app_module or (
        m.startswith("functions.") and (m.endswith(".dynamo") and m != "functions.adapters.dynamo"
                                        or m == "functions.adapters.outbox")))
    if already:
        raise BuildError(f"{', '.join(already)} already imported in this process: build one "
                         "community per process (python -m infra.package starts them)")
    os.environ.update(community_environment(config))
    from functions.core.settings import reset_settings

    reset_settings()
    app = importlib.import_module(app_module).app
    inventory = take_inventory(app)

    target = out_root / config.key
    target.mkdir(parents=True, exist_ok=True)
    # A failed build must not leave the previous artefacts looking current to `make deploy`.
    for stale in ("build.json", "template.json", "deployment.zip"):
        (target / stale).unlink(missing_ok=True)
    project = target / "project"
    policy = template_module.role_policy(config, inventory)
    pins = assemble_project(project, config, app_module, inventory, policy)
    chalice_out = target / "chalice"
    run_chalice_package(project, chalice_out)

    sam = json.loads((chalice_out / "sam.json").read_text(encoding="utf-8"))
    final = template_module.finalize(sam, config, inventory)
    (target / "template.json").write_text(json.dumps(final, indent=2, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    zip_path = target / "deployment.zip"
    shutil.move(str(chalice_out / "deployment.zip"), zip_path)
    shutil.rmtree(chalice_out)
    summary = {
        "community": config.key,
        "region": config.region,
        "template": str(target / "template.json"),
        "package": str(zip_path),
        "package_bytes": zip_path.stat().st_size,
        "handlers": inventory.handlers(),
        "routes": len(inventory.routes),
        "queues": sorted(inventory.queues),
        "tables": [t["TableName"] for t in inventory.tables],
        "schedules": [s.function for s in inventory.schedules],
        "vendored": pins,
        "seconds": round(time.monotonic() - started, 2),
    }
    (target / "build.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("community")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build")
    parser.add_argument("--app", default=DEFAULT_APP_MODULE,
                        help="module holding the Chalice app (default: functions.app)")
    args = parser.parse_args(argv)
    try:
        summary = build(args.community, args.out.resolve(), args.app)
    except (BuildError, ConfigError, VendoringError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
