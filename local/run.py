"""``make run``: the whole product in one local process.

    make run                       # moto, API on http://127.0.0.1:8000, consumers, schedules
    TIMEBANK_LOCAL_PORT=8080 TIMEBANK_MOTO_PORT=5055 make run
    TIMEBANK_AWS=real make run     # the deployed stack's tables/queues with your AWS credentials

Stops cleanly (exit code 0) on Ctrl-C or SIGTERM. Options: ``python -m local.run --help``.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Sequence

from local.config import parse_config
from local.moto_compat import MotoCompatError
from local.moto_server import PortBusy
from local.runtime import LocalRuntime

log = logging.getLogger("local")


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)-16s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("local")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    began = time.monotonic()
    configure_logging()
    config = parse_config(argv)
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping (%s)", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    runtime = LocalRuntime(config)
    try:
        runtime.start()
    except (PortBusy, MotoCompatError) as exc:
        log.error("%s", exc)
        return 2
    if runtime.app is not None and "/admin" in runtime.app.routes:
        log.info("staff dashboard: %s/admin/ (demo admin: 本地演示登录)", runtime.api_url)
    log.info("ready in %.1fs — %s/v1/health ; Ctrl-C stops", time.monotonic() - began,
             runtime.api_url)
    # A timed wait keeps the main thread responsive to signals on every platform.
    parent = os.getppid()
    while not stop_requested.wait(0.5):
        if config.moto_endpoint and os.getppid() != parent:
            # A district's child (local/district.py) whose `make run` died without stopping it.
            log.info("stopping (the district's make run is gone)")
            break
    runtime.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
