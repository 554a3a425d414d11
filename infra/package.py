"""Package one, several or all communities: ``make package COMMUNITY=<id>``.

    python -m infra.package --community demo [fuyuan ...]
    python -m infra.package --all

Each community is built by ``python -m infra.build`` in a process of its own (Chalice caches
the imported app, and table and queue names are fixed at import, so two communities in one
process would share names). Builds run in parallel, one per core. Every community file is
validated before anything is built, so a typo fails fast.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from infra.build import DEFAULT_APP_MODULE
from infra.config import ConfigError, community_ids, hub_ids, load_stack
from infra.vendoring import REPO_ROOT

# Variables of the calling shell (a test session, `make run`) that must not reach a build.
LEAKY_PREFIXES = ("TIMEBANK_", "POWERTOOLS_")
LEAKY_NAMES = {"AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"}


@dataclass
class BuildResult:
    community: str
    returncode: int
    summary: dict | None
    stderr: str


def clean_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items()
            if not key.startswith(LEAKY_PREFIXES) and key not in LEAKY_NAMES}


def build_in_subprocess(community: str, out: Path, app_module: str) -> BuildResult:
    completed = subprocess.run(
        [sys.executable, "-m", "infra.build", community, "--out", str(out), "--app", app_module],
        cwd=REPO_ROOT, env=clean_environment(), capture_output=True, text=True, check=False)
    summary = None
    if completed.returncode == 0:
        summary = json.loads(completed.stdout.strip().splitlines()[-1])
    return BuildResult(community, completed.returncode, summary, completed.stderr)


def package(communities: list[str], out: Path, app_module: str = DEFAULT_APP_MODULE,
            jobs: int | None = None) -> list[BuildResult]:
    for community in communities:
        load_stack(community)  # every file valid before any build starts
    workers = max(1, min(jobs or os.cpu_count() or 1, len(communities)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda c: build_in_subprocess(c, out, app_module), communities))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--community", nargs="+", metavar="ID")
    which.add_argument("--all", action="store_true", help="every file in infra/communities/")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build")
    parser.add_argument("--app", default=DEFAULT_APP_MODULE, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=None, help="parallel builds (default: cores)")
    args = parser.parse_args(argv)

    communities = [*community_ids(), *(f"hub-{d}" for d in hub_ids())] if args.all \
        else list(dict.fromkeys(args.community))
    started = time.monotonic()
    try:
        results = package(communities, args.out.resolve(), args.app, args.jobs)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in results if r.returncode != 0 or not r.summary]
    for result in results:
        if result.returncode == 0 and result.summary:
            s = result.summary
            print(f"{s['community']}: {s['template']} and {s['package']} "
                  f"({s['package_bytes'] / 1e6:.1f} MB, {len(s['handlers'])} functions, "
                  f"{len(s['queues'])} queues, {len(s['tables'])} tables, {s['seconds']} s)",
                  flush=True)
        else:
            print(f"{result.community}: FAILED\n{result.stderr.rstrip()}", file=sys.stderr, flush=True)
    print(f"packaged {len(results) - len(failed)} of {len(results)} in {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
