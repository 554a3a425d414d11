"""The bench's own community on an in-process moto, set before ``functions`` is imported."""
from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

BENCH_ADMIN = "admin-bench"

BENCH_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
    "AWS_DEFAULT_REGION": "cn-north-1",
    "AWS_REGION": "cn-north-1",
    "TIMEBANK_COMMUNITY": "bench",
    "TIMEBANK_STAGE": "local",
    "TIMEBANK_ADMIN_OPENIDS": BENCH_ADMIN,
    "TIMEBANK_STARTING_CREDITS": "300",
    # The demo community's point kinds (conversions, expiry), as `make run` serves them.
    "TIMEBANK_ASSETS": json.dumps(tomllib.loads(
        (Path(__file__).resolve().parent.parent / "infra" / "communities" / "demo.toml").read_text("utf-8"))["assets"],
        ensure_ascii=False),
    # The business metrics' EMF lines would interleave with the figures on stdout.
    "POWERTOOLS_METRICS_DISABLED": "true",
    # Benches check in and complete at once (they measure cost, not a service's real time).
    "TIMEBANK_CHECKIN_EARLY_MINUTES": str(365 * 24 * 60),
    "TIMEBANK_CLAIM_TOLERANCE_MINUTES": "1440",
}


def bench_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_ENDPOINT_URL", "AWS_PROFILE") and not k.startswith("TIMEBANK_")}
    env.update(BENCH_ENVIRONMENT)
    return env


def use_bench_environment() -> None:
    os.environ.clear()
    os.environ.update(bench_environment())
