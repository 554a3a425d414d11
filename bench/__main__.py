"""``make bench``: prints figures; nothing here asserts on time. See bench/README.md.

``python -m bench soak [--orders 2000]`` (``make soak``): the optional soak of ``make run``."""
from __future__ import annotations

import sys
from pathlib import Path

if sys.argv[1:2] == ["soak"]:
    # Optional part, before the bench environment replaces this one: the soak runs make run's
    # own community in child processes (bench/soak.py).
    from bench.soak import main as soak_main

    sys.exit(soak_main(sys.argv[2:]))

from bench.environment import use_bench_environment  # noqa: E402

use_bench_environment()  # before anything imports functions/

if sys.argv[1:2] == ["scaling"]:
    from bench.scaling import main as scaling_main

    sys.exit(scaling_main(sys.argv[2:]))

if sys.argv[1:2] == ["cost"]:
    from bench.cost import main as cost_main

    sys.exit(cost_main(sys.argv[2:]))

from bench.imports import heaviest_imports, measure_imports  # noqa: E402
from bench.latency import OUTBOX_POLL_SECONDS, measure_notification_latency  # noqa: E402
from bench.operations import app_logs_to, measure_operations  # noqa: E402
from bench.report import import_table, latency_table, lifecycle_table, operations_table  # noqa: E402
from local.config import RuntimeConfig  # noqa: E402


BUILD = Path(__file__).resolve().parent.parent / "build"
APP_LOG = BUILD / "bench-app.log"
LATENCY_SAMPLES = 20
SHORT_POLL_SECONDS = 0.05
IMPORT_PAIRS = 21


def runtime_log(poll_interval: float) -> Path:
    return BUILD / f"bench-runtime-poll-{poll_interval:g}s.log"


def district_figures() -> str:
    """``bench.district`` in a process of its own: three stacks' import-time names."""
    import subprocess

    from bench.environment import bench_environment

    completed = subprocess.run([sys.executable, "-m", "bench.district"], cwd=BUILD.parent, env=bench_environment(),
                               capture_output=True, text=True, timeout=600)
    lines = [line for line in completed.stdout.splitlines() if not line.startswith("{")]
    return "\n".join(lines) if completed.returncode == 0 else \
        "\n".join(lines) + f"\n(bench.district failed: {completed.stderr.strip().splitlines()[-1:]})"


def main() -> int:
    print("DynamoDB cost per business operation (counted on moto; community 'bench')\n")
    results = measure_operations(APP_LOG)
    print(operations_table(results.operations))
    print("\nOne whole order, step by step: DynamoDB, SQS and S3 calls (same world; the "
          "consumers' own receive/delete not counted)\n")
    print(lifecycle_table(results.lifecycle))
    from bench.cost import VARIANTS, by_table, cost_table, run_variant

    print("\nCapacity units of one completed order by DynamoDB's billing rules (bench/cost.py; "
          "`python -m bench cost` alone)\n")
    with open(BUILD / "bench-cost.log", "w", encoding="utf-8") as cost_log, app_logs_to(cost_log):
        costs = [run_variant(v, cost_log) for v in VARIANTS]
    print(cost_table(costs))
    print("\nwhere the first variant's units go, by table\n")
    print(by_table(costs))
    from bench.scaling import main as scaling_main

    print("\nReads that must stay flat: 1,000 → 100,000 stored requests, 10 → 2,000 volunteers in a "
          "category (bench/scaling.py; about 6 minutes, mostly seeding moto)\n")
    scaling_main([])
    print("\nRewards: point kinds, a conversion, a voucher issued and redeemed, one 志愿汇 exchange confirmed "
          "(same world; the consumer's own receive/delete not counted)\n")
    print(operations_table(results.rewards))
    print("\nA community activity: sign-up and check-in over HTTP; with 100 participants a reminder run "
          "and the close (awards from issuance in batches of transactions)\n")
    print(operations_table(results.activities))
    facts = results.activity_facts
    if facts:
        print(f"\nthe close sent {facts['close_transactions']} TransactWriteItems; the largest had "
              f"{facts['largest_transaction']} items (DynamoDB's limit: 100; 20 participants per batch by design)")
    print("\nAdministration: audited admin actions (the audit entry included) and reversals\n")
    print(operations_table(results.admin))
    print("\nStatistics: one aggregated event from the stats queue and its redelivery; the admins' read of a "
          "30-day range (the store's two Queries, issuance's shards, the top volunteers' names)\n")
    print(operations_table(results.stats))
    from bench.roster_import import ROWS, facts_text

    print(f"\nRoster import of {ROWS:,} rows (2,000 households) through POST /v1/admin/imports/residents "
          "(the xlsx itself; the command line runs the same use case)\n")
    print(operations_table(results.roster))
    print("\n" + facts_text(results.roster_facts))
    print("\n通存通兑: one cross-community transfer, DynamoDB calls and items on each of the three stacks "
          "(source community, hub, destination; counted by the table each call names)\n")
    print(district_figures())
    default_poll = RuntimeConfig().poll_interval_seconds
    print(f"\nPosting a need → the match notification in the local runtime (`make run`), "
          f"{LATENCY_SAMPLES} samples each; outbox polled every {OUTBOX_POLL_SECONDS * 1000:.0f} ms\n")
    latencies = [measure_notification_latency(interval, LATENCY_SAMPLES, runtime_log(interval))
                 for interval in (SHORT_POLL_SECONDS, default_poll)]
    print(latency_table(latencies))
    print(f"\n`make run`'s consumer poll interval is {default_poll:g} s (--poll-interval / "
          "TIMEBANK_LOCAL_POLL_SECONDS), but the relay wakes a queue's consumer as soon as it sends "
          "to it, so the interval only bounds how late a message nobody announced is noticed. "
          "Goal at the default settings: median ≤ 200 ms, p95 ≤ 1 s.")
    print(f"\nCold import time, fresh interpreter each run, {IMPORT_PAIRS} alternating pairs\n")
    print(import_table(measure_imports(runs=IMPORT_PAIRS), heaviest_imports()))
    failed = [r for r in [*results.operations, *results.lifecycle, *results.rewards, *results.activities,
                                *results.admin, *results.stats, *results.roster]
              if r.outcome != "ok"]
    if failed:
        print(f"\n{len(failed)} operation(s) did not complete; their rows show what they cost "
              f"until they stopped. The application's log: {APP_LOG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
