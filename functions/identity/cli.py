"""``python -m functions.identity.cli import-residents FILE [--dry-run]``: the roster import for
district IT (``make import-residents COMMUNITY=<id> FILE=<path> [DRY_RUN=1]``).

The same use case as ``POST /v1/admin/imports/residents`` (``IdentityService.import_residents``)
without the endpoint's limits (API Gateway's 29 s, Lambda's 6 MB): every row checked first, then
the writes in batches of whole households, with a progress bar on stderr. Interrupted (Ctrl-C,
a lost connection)? Run the same command again: the committed batches are found, the rest are
written, nothing twice. Exit 0 imported (or checked, with ``--dry-run``), 1 refused with the
per-row report on stderr, 2 bad usage.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from functions import bootstrap
from functions.core import clock
from functions.core.errors import TimebankError
from functions.core.observability import metrics
from functions.identity.roster import CSV, XLSX, parse_roster

ACTOR = "cli:import-residents"


def _kind(path: Path) -> str:
    return XLSX if path.suffix.lower() in (".xlsx", ".xlsm") else CSV


def _report(error: TimebankError, out: TextIO) -> None:
    print(f"{error.code}: {error.message}", file=out)
    for entry in error.details.get("rows", []):
        reasons = "；".join(f"{field}: {reason}" for field, reason in entry["errors"].items())
        print(f"  第 {entry['row']} 行  {reasons}", file=out)
    if "file" in error.details:
        print(f"  文件：{error.details['file']}", file=out)


def import_residents(path: Path, dry_run: bool, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm  # lazily: a dev tool, never in the Lambda's import path

    data = path.read_bytes()
    try:
        rows = parse_roster(data, _kind(path), clock.now().year)
        bars: dict[str, Any] = {}

        def progress(stage: str, n: int) -> None:
            if stage not in bars:
                for bar in bars.values():
                    bar.close()
                label = "检查手机号" if stage == "check" else "写入"
                bars[stage] = tqdm(total=len(rows), desc=label, unit="行", file=err)
            bars[stage].update(n)

        try:
            result = bootstrap.identity().import_residents(ACTOR, rows, dry_run=dry_run, progress=progress)
        finally:
            for bar in bars.values():
                bar.close()
    except TimebankError as error:
        _report(error, err)
        return 1
    finally:
        metrics.clear_metrics()  # a command has no CloudWatch agent to read EMF lines
    print(json.dumps(result.view(), ensure_ascii=False, indent=2), file=out)
    return 0


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    parser = argparse.ArgumentParser(prog="python -m functions.identity.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("import-residents", help="import the community's roster (xlsx or csv)")
    command.add_argument("file", type=Path)
    command.add_argument("--dry-run", action="store_true", help="check every row and count; write nothing")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"no such file: {args.file}", file=err)
        return 2
    return import_residents(args.file, args.dry_run, out, err)


if __name__ == "__main__":
    sys.exit(main())
