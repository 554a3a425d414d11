"""Runtime options: command-line flags over environment variables over defaults."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

DEFAULT_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8000
DEFAULT_MOTO_PORT = 5005


@dataclass(frozen=True)
class RuntimeConfig:
    host: str = DEFAULT_HOST
    api_port: int = DEFAULT_API_PORT      # 0 = any free port (tests)
    moto_port: int = DEFAULT_MOTO_PORT    # 0 = any free port (tests)
    real_aws: bool = False                # TIMEBANK_AWS=real: the deployed stack's resources
    seed: bool = True                     # categories + demo residents
    demo_residents: bool = True
    consumers: bool = True                # drain queues into the on_sqs_message handlers
    schedules: bool = True                # fire the schedule handlers
    poll_interval_seconds: float = 1.0    # idle wait between empty receives
    retry_delay_seconds: float = 5.0      # a failed message is visible again after this
    schedule_max_interval_seconds: float = 0.0  # 0 = fire at the real rate; >0 caps it
    district: bool = True                 # also the district's other communities and its hub
    moto_endpoint: str = ""               # an already running moto (a district's child process)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    return float(raw) if raw not in (None, "") else default


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise SystemExit(f"{name}={raw!r} is not a TCP port")
    return int(raw)


def parse_config(argv: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None) -> RuntimeConfig:
    env = os.environ if env is None else env
    aws_mode = env.get("TIMEBANK_AWS", "moto").strip().lower() or "moto"
    if aws_mode not in ("moto", "real"):
        raise SystemExit(f"TIMEBANK_AWS={aws_mode!r}: use 'moto' (default) or 'real'")
    real = aws_mode == "real"

    parser = argparse.ArgumentParser(
        prog="python -m local.run",
        description="Run Timebank locally: moto (or real AWS with TIMEBANK_AWS=real), the HTTP "
                    "API, queue consumers and schedules in one process.")
    parser.add_argument("--host", default=env.get("TIMEBANK_LOCAL_HOST", DEFAULT_HOST))
    parser.add_argument("--port", type=int, dest="api_port",
                        default=_port(env, "TIMEBANK_LOCAL_PORT", DEFAULT_API_PORT),
                        help="HTTP API port (env TIMEBANK_LOCAL_PORT, default 8000, 0 = any)")
    parser.add_argument("--moto-port", type=int,
                        default=_port(env, "TIMEBANK_MOTO_PORT", DEFAULT_MOTO_PORT),
                        help="embedded moto port (env TIMEBANK_MOTO_PORT, default 5005, 0 = any)")
    # In real-AWS mode the deployed Lambdas already consume the queues and run the schedules,
    # so a developer's laptop must not compete with them unless asked.
    parser.add_argument("--seed", action=argparse.BooleanOptionalAction,
                        default=_flag(env, "TIMEBANK_LOCAL_SEED", not real))
    parser.add_argument("--demo-residents", action=argparse.BooleanOptionalAction,
                        default=_flag(env, "TIMEBANK_LOCAL_DEMO_RESIDENTS", True))
    parser.add_argument("--consumers", action=argparse.BooleanOptionalAction,
                        default=_flag(env, "TIMEBANK_LOCAL_CONSUMERS", not real))
    parser.add_argument("--schedules", action=argparse.BooleanOptionalAction,
                        default=_flag(env, "TIMEBANK_LOCAL_SCHEDULES", not real))
    parser.add_argument("--poll-interval", type=float, dest="poll_interval_seconds",
                        default=_number(env, "TIMEBANK_LOCAL_POLL_SECONDS", 1.0))
    parser.add_argument("--retry-delay", type=float, dest="retry_delay_seconds",
                        default=_number(env, "TIMEBANK_LOCAL_RETRY_SECONDS", 5.0))
    parser.add_argument("--schedule-max-interval", type=float,
                        dest="schedule_max_interval_seconds",
                        default=_number(env, "TIMEBANK_LOCAL_SCHEDULE_MAX_SECONDS", 0.0),
                        help="fire every schedule at least this often (0 = at its own rate)")
    # 通存通兑: a community of a district brings up the district (local/district.py).
    parser.add_argument("--district", action=argparse.BooleanOptionalAction,
                        default=_flag(env, "TIMEBANK_LOCAL_DISTRICT", not real),
                        help="also run the district's other communities and its hub (env TIMEBANK_LOCAL_DISTRICT)")
    args = parser.parse_args(argv)
    for name in ("api_port", "moto_port"):
        if not 0 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be a TCP port")
    return RuntimeConfig(real_aws=real, moto_endpoint=env.get("TIMEBANK_LOCAL_MOTO_ENDPOINT", ""), **vars(args))
