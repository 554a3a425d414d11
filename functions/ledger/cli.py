"""``python -m functions.ledger.cli check``: the full audit of the ledger of the configured
endpoint (``AWS_ENDPOINT_URL`` for local moto, the account's DynamoDB otherwise): two Scans of
the ledger tables, every invariant over everything stored; it re-bases the daily incremental
check on what it read, prints the report as JSON and exits 1 when it is not ok. ``make
ledger-check`` runs this. An operator's command (after a restore, an upgrade, monthly): its cost
grows with the ledger's history, which is why the schedule and the admin endpoint never run it."""
from __future__ import annotations

import argparse
import json
import sys

from functions import bootstrap
from functions.core.observability import metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.ledger.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="full audit (Scans): reconcile balances with transfers, re-base the "
                                      "incremental check; exit 1 on any violation")
    parser.parse_args(argv)
    from functions.ledger.reconciliation import run_check

    report = run_check(bootstrap.ledger(), bootstrap.ledger_checks(), full=True)
    metrics.clear_metrics()  # a command has no CloudWatch agent to read EMF lines: drop, don't leak
    print(json.dumps(report, ensure_ascii=False, indent=2, sort_keys=True))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
