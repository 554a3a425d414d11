"""``python -m sim [--scale 1.0] [--seed 1] [--processes 2] [--out build/simulation]``.

Each process runs one shard (``sim.world.Shard``: whole buildings of the same seeded plan, in
a moto world of its own) and sends back its counts; the parent shows one progress bar over all
shards, merges the results, checks the invariants, prints the figures and the cost report, and
writes ``simulation.json`` and ``simulation.md`` to ``--out``. Exit status 1 if an invariant
does not hold.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def shard_main(seed: int, scale: float, index: int, shards: int, progress: Any, out: Any) -> None:
    """One shard, in a fresh (spawned) interpreter: the environment first, then the app."""
    sys.path.insert(0, str(REPO))
    from sim.environment import use_simulation_environment

    use_simulation_environment()
    from sim.plan import make_plan
    from sim.world import Shard

    try:
        plan = make_plan(seed, scale).shard(index, shards)
        result = Shard(plan, index, shards, progress=lambda n: progress.put(("step", n))).run()
        result["planned"] = {"orders": len(plan.orders), "events": len(plan.events), "residents": len(plan.residents)}
        out.put(("done", index, result))
    except BaseException as exc:  # noqa: BLE001 — the parent reports it
        import traceback

        out.put(("failed", index, "".join(traceback.format_exception(exc))))


def run(seed: int, scale: float, processes: int, show_progress: bool = True) -> dict[str, Any]:
    from sim.plan import make_plan

    plan = make_plan(seed, scale)
    # Steps the bar counts: every resident's joining, every order and every other event start one.
    total = len(plan.residents) + len(plan.orders) + len(plan.events)
    context = multiprocessing.get_context("spawn")
    progress, out = context.Queue(), context.Queue()
    workers = [context.Process(target=shard_main, args=(seed, scale, i, processes, progress, out), daemon=True)
               for i in range(processes)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    results: dict[int, Any] = {}
    failures: list[str] = []
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="step", desc=f"simulate ×{scale:g} on {processes} process(es)", smoothing=0.05)
    import queue as queue_module

    while len(results) + len(failures) < processes:
        try:
            kind, *rest = progress.get(timeout=0.5)
            if bar is not None:
                bar.update(rest[0])
        except queue_module.Empty:
            pass
        try:
            while True:
                kind, index, payload = out.get_nowait()
                if kind == "done":
                    results[index] = payload
                else:
                    failures.append(f"shard {index}: {payload}")
        except queue_module.Empty:
            pass
        if all(not w.is_alive() for w in workers) and out.empty() and len(results) + len(failures) < processes:
            failures.append("a shard process died without a result")
            break
    if bar is not None:
        bar.close()
    for w in workers:
        w.join(timeout=10)
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError("\n".join(failures))
    from sim.report import merge

    return merge(seed, scale, processes, elapsed, [results[i] for i in sorted(results)], total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = the pilot (16,430 settled orders)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "simulation")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.processes < 1:
        parser.error("--scale must be > 0 and --processes >= 1")
    from sim.report import write_reports

    merged = run(args.seed, args.scale, args.processes, show_progress=not args.no_progress)
    text = write_reports(merged, args.out)
    print(text)
    return 0 if merged["invariants"]["ok"] else 1
