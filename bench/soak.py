"""``python -m bench soak``: ``make run`` under a scripted day of traffic (issue 14).

The target: a day of traffic (2,000 orders) stays under 1 GB RSS and keeps its first-hour
throughput within 20 %. This prints figures against it; it asserts nothing.

Each variant runs in a fresh interpreter (``python -m bench.soak --child``), because the
runtime, moto's backends and the compat layer are process-wide: the child starts the real local
runtime in-process (``local.runtime.LocalRuntime`` with the product app, ``make run``'s
defaults: community ``demo``, seeded, consumers and schedules on, 1 s consumer poll), registers
a pool of residents through the HTTP API (one household each, verified by ``admin-demo``, each
a declared volunteer of the category), then runs whole orders over HTTP, one after another:

    POST /v1/requests (Idempotency-Key) → POST …/accept (the next resident in the ring)
    → POST …/check-in → POST …/complete (60 min) → POST …/confirm (rating 5)

in a category that needs neither insurance nor evidence (``tutoring`` when
``GET /v1/categories`` offers it). The ring keeps every balance bounded: the volunteer of one
order is the requester of the next, and requests after a resident's first are paid from the
credits that resident earned (``"from": "resident"``), so 2,000 orders never run out of credit.

Every ``--every`` orders the child prints orders done, the throughput of that window
(orders/s), and its RSS (``VmRSS`` of ``/proc/self/status``: the runtime, moto and this driver
are one process, as ``make run`` is); at the end the last/first window throughput ratio and the
maximum RSS (``VmHWM``), then an (untimed) ledger check.

Variants: ``--compat on`` (the layer, as ``make run`` has it), ``--compat off`` (moto as
shipped: ``TIMEBANK_MOTO_COMPAT=off``), ``--compat both`` (default: off first, capped at
``--stock-orders`` because its memory grows quadratically, then on), followed by a side-by-side
table. ``--max-rss-mb`` stops a variant whose RSS passes it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Sequence

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"
RESULT_PREFIX = "SOAK-RESULT "
TARGET_RSS_MB = 1024
TARGET_RATIO = 0.8
PREFERRED_CATEGORY = "tutoring"
ORDER_MINUTES = 60
CHINA = timezone(timedelta(hours=8))


@dataclass
class Window:
    orders: int            # orders done at the end of the window
    seconds: float         # the window's wall-clock time
    per_second: float      # orders completed in the window / its time
    rss_mb: float


@dataclass
class SoakResult:
    variant: str
    compat_layer: bool
    orders_asked: int
    orders_done: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    setup_seconds: float = 0.0
    run_seconds: float = 0.0
    rss_after_setup_mb: float = 0.0
    max_rss_mb: float = 0.0
    stopped: str = ""
    ledger: str = ""
    items_stored: int = 0        # DynamoDB items in moto's tables at the end
    items_alive: int = 0         # moto Item objects alive at the end (stored + retained copies)
    category: str = ""

    @property
    def ratio(self) -> float | None:
        if len(self.windows) < 2 or self.windows[0].per_second <= 0:
            return None
        return self.windows[-1].per_second / self.windows[0].per_second


def rss_mb(field_name: str = "VmRSS") -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


# --- the child: one variant, in this process ------------------------------------------------

class Driver:
    def __init__(self, base_url: str, admin: str, residents: int):
        from bench.latency import Api

        self.api = Api(base_url)
        self.admin = admin
        self.openids = [f"soak-resident-{n:03d}" for n in range(residents)]
        self.has_earned: set[str] = set()

    def choose_category(self) -> str:
        items = self.api.call("GET", "/v1/categories", self.admin)["items"]
        plain = [c for c in items if c["credit_eligible"] and not c["requires_insurance"]
                 and not c["requires_evidence"]]
        if not plain:
            raise RuntimeError(f"no credit-eligible category without insurance and evidence: {items}")
        ids = [c["id"] for c in plain]
        return PREFERRED_CATEGORY if PREFERRED_CATEGORY in ids else ids[0]

    def register_pool(self, category: str) -> None:
        for n, openid in enumerate(self.openids):
            # One flat each: a household of its own with its starting credits.
            resident = self.api.call("POST", "/v1/residents", openid, {
                "name": "压测居民", "phone": f"139{n:08d}", "building": str(30 + n // 40),
                "unit": "1", "room": f"{100 + n % 40}", "birth_year": 1980})
            self.api.call("POST", f"/v1/admin/residents/{resident['id']}/verify", self.admin)
            self.api.login(openid)  # a token that carries the verified state
            self.api.call("PUT", "/v1/volunteers/me", openid,
                          {"categories": [category], "availability": [], "accepting": True})

    def order(self, index: int, category: str) -> None:
        requester = self.openids[index % len(self.openids)]
        volunteer = self.openids[(index + 1) % len(self.openids)]
        need = {"category": category, "title": "辅导作业", "description": f"soak {index}",
                "duration_minutes": ORDER_MINUTES,
                "start_at": (datetime.now(CHINA) + timedelta(days=1)).replace(microsecond=0).isoformat()}
        if requester in self.has_earned:
            need["from"] = "resident"
        posted = self.api.call("POST", "/v1/requests", requester, need,
                               idempotency_key=f"soak-{index}")
        path = f"/v1/requests/{posted['id']}"
        self.api.call("POST", f"{path}/accept", volunteer)
        self.api.call("POST", f"{path}/check-in", volunteer, {})
        self.api.call("POST", f"{path}/complete", volunteer, {"minutes": ORDER_MINUTES})
        settled = self.api.call("POST", f"{path}/confirm", requester, {"rating": 5})
        if settled.get("status") != "settled":
            raise RuntimeError(f"order {index} ended {settled.get('status')!r}")
        self.has_earned.add(volunteer)

    def ledger_check(self) -> str:
        report = self.api.call("GET", "/v1/admin/ledger/check", self.admin)
        if report.get("ok"):
            return "ok"
        return f"{len(report.get('violations', []))} violation(s): {report.get('violations', [])[:3]}"


def run_child(orders: int, every: int, residents: int, max_rss: float, variant: str,
              report: IO[str]) -> SoakResult:
    from local import moto_compat
    from local.config import RuntimeConfig
    from local.runtime import LocalRuntime

    result = SoakResult(variant=variant, compat_layer=False, orders_asked=orders)
    began = time.perf_counter()
    runtime = LocalRuntime(RuntimeConfig(api_port=0, moto_port=0))
    runtime.start()
    try:
        result.compat_layer = moto_compat.is_installed()
        from local.environment import COMMUNITY_DEFAULTS

        admin = os.environ.get("TIMEBANK_ADMIN_OPENIDS",
                               COMMUNITY_DEFAULTS["TIMEBANK_ADMIN_OPENIDS"]).split(",")[0]
        driver = Driver(runtime.api_url, admin, residents)
        result.category = driver.choose_category()
        driver.register_pool(result.category)
        result.setup_seconds = time.perf_counter() - began
        result.rss_after_setup_mb = rss_mb()
        print(f"[{variant}] {moto_compat.describe()}; {residents} residents registered in "
              f"{result.setup_seconds:.1f}s, RSS {result.rss_after_setup_mb:.0f} MB; "
              f"{orders} orders of {result.category!r}, a line every {every}", file=report, flush=True)

        run_began = window_began = time.perf_counter()
        window_done = 0
        for index in range(orders):
            try:
                driver.order(index, result.category)
                result.orders_done += 1
                window_done += 1
            except Exception as exc:  # noqa: BLE001 - counted and shown, the soak goes on
                result.failed += 1
                if len(result.failures) < 5:
                    result.failures.append(f"order {index}: {exc}")
            if (index + 1) % every == 0 or index + 1 == orders:
                now = time.perf_counter()
                seconds = now - window_began
                window = Window(orders=index + 1, seconds=seconds,
                                per_second=window_done / seconds if seconds > 0 else 0.0,
                                rss_mb=rss_mb())
                result.windows.append(window)
                print(f"[{variant}] {window.orders:5d} orders  {window.per_second:5.2f} orders/s "
                      f"(last {window_done} in {seconds:6.1f}s)  RSS {window.rss_mb:6.0f} MB  "
                      f"{result.failed} failed", file=report, flush=True)
                window_began, window_done = now, 0
                if window.rss_mb > max_rss:
                    result.stopped = f"RSS {window.rss_mb:.0f} MB passed --max-rss-mb {max_rss:g}"
                    break
        result.run_seconds = time.perf_counter() - run_began
        result.max_rss_mb = rss_mb("VmHWM")
        try:
            result.ledger = driver.ledger_check()
        except Exception as exc:  # noqa: BLE001
            result.ledger = f"not checked: {exc}"
    finally:
        runtime.stop()
    # After stop: nothing calls moto any more, and its backends stay in memory.
    result.items_stored, result.items_alive = moto_item_counts()
    return result


def moto_item_counts() -> tuple[int, int]:
    """What memory holds beyond the data: live Items minus stored items are retained copies."""
    import gc

    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import Item

    stored = sum(len(table) for regions in list(dynamodb_backends.values())
                 for backend in list(regions.values()) for table in backend.tables.values())
    gc.collect()
    return stored, sum(1 for o in gc.get_objects() if type(o) is Item)


def child_main(args: argparse.Namespace) -> int:
    # Everything the runtime and the product write (their logs, chalice local's request lines)
    # goes to the log file; only this driver's figures reach the parent.
    report = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    log_path = Path(args.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w", encoding="utf-8")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)-16s %(message)s", "%H:%M:%S"))
    logging.getLogger("local").addHandler(handler)
    logging.getLogger("local").setLevel(logging.INFO)
    logging.getLogger("local").propagate = False
    result = run_child(args.orders, args.every, args.residents, args.max_rss_mb, args.variant, report)
    print(RESULT_PREFIX + json.dumps(asdict(result)), file=report, flush=True)
    return 0


# --- the parent: variants in subprocesses, then the comparison ------------------------------

def child_environment(compat: bool) -> dict[str, str]:
    from bench.latency import runtime_environment

    env = runtime_environment()  # make run's defaults: no TIMEBANK_* of the caller leaks in
    env["TIMEBANK_MOTO_COMPAT"] = "on" if compat else "off"
    env["PYTHONUNBUFFERED"] = "1"
    # A day of 2,000 orders among 20 residents is 100 services each and each pair many times a
    # day: far past the community's risk limits, which the soak is not about. Off here.
    for limit in ("DAILY_MINUTES", "DAILY_SERVICES", "PAIR_DAILY"):
        env[f"TIMEBANK_RISK_{limit}"] = "0"
    return env


def run_variant(compat: bool, orders: int, args: argparse.Namespace) -> SoakResult | None:
    variant = "compat layer" if compat else "moto as shipped"
    log = BUILD / f"soak-{'compat' if compat else 'stock'}.log"
    print(f"\n== {variant}: {orders} orders (runtime log: {log.relative_to(REPO)})", flush=True)
    command = [sys.executable, "-m", "bench.soak", "--child", "--orders", str(orders),
               "--every", str(args.every), "--residents", str(args.residents),
               "--max-rss-mb", str(args.max_rss_mb), "--variant", variant, "--log", str(log)]
    process = subprocess.Popen(command, cwd=REPO, env=child_environment(compat), text=True,
                               stdout=subprocess.PIPE, bufsize=1)
    found: SoakResult | None = None
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(RESULT_PREFIX):
            raw = json.loads(line[len(RESULT_PREFIX):])
            raw["windows"] = [Window(**w) for w in raw["windows"]]
            found = SoakResult(**raw)
        else:
            print(line, end="", flush=True)
    if process.wait() != 0 or found is None:
        print(f"   the {variant} run failed (exit {process.returncode}); see {log}")
        return None
    return found


def at_orders(result: SoakResult, orders: int) -> Window | None:
    return next((w for w in result.windows if w.orders == orders), None)


def summary(results: list[SoakResult]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else str(value)

    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: list[Any]) -> None:
        rows.append((label, [cell(v) for v in values]))

    row("orders done / asked", [f"{r.orders_done}/{r.orders_asked}" + (f" ({r.failed} failed)" if r.failed else "")
                                for r in results])
    row("first window, orders/s", [f"{r.windows[0].per_second:.2f}" if r.windows else None for r in results])
    row("last window, orders/s", [f"{r.windows[-1].per_second:.2f}" if r.windows else None for r in results])
    row("last / first", [f"{r.ratio:.2f}" if r.ratio is not None else None for r in results])
    row("mean s per order", [f"{r.run_seconds / r.orders_done:.3f}" if r.orders_done else None for r in results])
    common = min((r.windows[-1].orders for r in results if r.windows), default=0)
    if len(results) > 1 and common:
        row(f"at {common} orders: window orders/s",
            [f"{w.per_second:.2f}" if (w := at_orders(r, common)) else None for r in results])
        row(f"at {common} orders: RSS MB", [f"{w.rss_mb:.0f}" if (w := at_orders(r, common)) else None
                                            for r in results])
    row("RSS after setup, MB", [f"{r.rss_after_setup_mb:.0f}" for r in results])
    row("RSS at the end, MB", [f"{r.windows[-1].rss_mb:.0f}" if r.windows else None for r in results])
    row("max RSS (VmHWM), MB", [f"{r.max_rss_mb:.0f}" for r in results])
    row("DynamoDB items stored", [r.items_stored for r in results])
    row("moto Item objects alive", [r.items_alive for r in results])
    row("ledger check", [r.ledger for r in results])
    row("stopped early", [r.stopped or "no" for r in results])

    width = max(len(label) for label, _ in rows)
    columns = [max([len(r.variant), *(len(values[i]) for _, values in rows)]) for i, r in enumerate(results)]
    lines = ["  ".join([" " * width, *(r.variant.rjust(c) for r, c in zip(results, columns))])]
    lines += ["  ".join([label.ljust(width), *(v.rjust(c) for v, c in zip(values, columns))])
              for label, values in rows]
    for r in results:
        verdict = []
        if r.orders_done:
            verdict.append(f"max RSS {r.max_rss_mb:.0f} MB {'<' if r.max_rss_mb < TARGET_RSS_MB else '>='} "
                           f"{TARGET_RSS_MB} MB")
        if r.ratio is not None:
            verdict.append(f"last/first {r.ratio:.2f} {'>=' if r.ratio >= TARGET_RATIO else '<'} {TARGET_RATIO}")
        lines.append(f"issue 14 target, {r.variant}: " + "; ".join(verdict)
                     + f" ({r.orders_done} orders)")
        lines += [f"  {f}" for f in r.failures]
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="whole orders per variant (2000)")
    parser.add_argument("--every", type=int, default=100, help="a line every N orders (100)")
    parser.add_argument("--residents", type=int, default=20, help="resident pool, one household each (20)")
    parser.add_argument("--compat", choices=("on", "off", "both"), default="both",
                        help="the moto compat layer: on, off (TIMEBANK_MOTO_COMPAT=off), or both (default)")
    parser.add_argument("--stock-orders", type=int, default=300,
                        help="with --compat both, orders of the run without the layer (300)")
    parser.add_argument("--max-rss-mb", type=float, default=8000,
                        help="stop a variant once its RSS passes this (8000)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)
    parser.add_argument("--log", default=str(BUILD / "soak.log"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.orders < 1 or args.every < 1 or args.residents < 2:
        parser.error("--orders and --every must be at least 1, --residents at least 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        return child_main(args)
    plan = {"on": [(True, args.orders)], "off": [(False, args.orders)],
            "both": [(False, min(args.stock_orders, args.orders)), (True, args.orders)]}[args.compat]
    print(f"Soak of the local runtime (make run): whole orders over HTTP, one after another. "
          f"Target (issue 14): < {TARGET_RSS_MB} MB RSS, last/first window throughput >= {TARGET_RATIO}.")
    results = [r for compat, orders in plan if (r := run_variant(compat, orders, args)) is not None]
    if results:
        print("\n" + summary(results))
    return 0 if len(results) == len(plan) else 1


if __name__ == "__main__":
    sys.exit(main())
