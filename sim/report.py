"""Merging the shards, the invariants, and the printed / written report."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sim.meter import CHECK, OpFigures

STAT_NAMES = (("posted", "posted"), ("accepted", "accepted"), ("completed", "completed"),
              ("cancelled", "cancelled"), ("minutes", "minutes_credited"))


def merge(seed: int, scale: float, processes: int, elapsed: float, shards: list[dict[str, Any]],
          steps: int) -> dict[str, Any]:
    own: dict[str, Counter] = {name: Counter() for name, _ in STAT_NAMES}
    other: Counter = Counter()
    stats: Counter = Counter()
    ops: dict[str, OpFigures] = {}
    problems: list[str] = []
    stored: dict[str, Counter] = {}
    evidence_objects = 0
    for shard in shards:
        for name, _ in STAT_NAMES:
            own[name].update(shard["own"][name])
        other.update(shard["own"]["other"])
        problems += [f"shard {shard['shard']}: {p}" for p in shard["own"]["problems"]]
        stats.update(shard["stats"])
        for name, data in shard["ops"].items():
            ops.setdefault(name, OpFigures()).add(OpFigures.from_json(data))
        for table, figures in shard["stored"]["tables"].items():
            stored.setdefault(table, Counter()).update(figures)
        evidence_objects += shard["stored"]["evidence_objects"]
    comparison = {}
    categories = sorted({c for name, _ in STAT_NAMES for c in own[name]}
                        | {key.split("|", 1)[1] for key in stats})
    stats_equal = True
    for category in categories:
        row = {}
        for name, stat in STAT_NAMES:
            mine, theirs = own[name][category], stats.get(f"{stat}|{category}", 0)
            row[name] = {"simulation": mine, "statistics": theirs}
            stats_equal &= mine == theirs
        comparison[category] = row
    ledger_ok = all(s["ledger"]["ok"] for s in shards)
    daily_ok = all(all(s["ledger_runs"]) and s["ledger_runs"] for s in shards)
    exchange_ok = all(all(s["exchange_reconciliations"].values()) for s in shards)
    total = OpFigures()
    for name, figures in ops.items():
        if name != CHECK:
            total.add(figures)
    counts_ok = total.http > 0 and total.tally.total_calls > 0 and total.batches > 0 and total.schedule_runs > 0
    return {
        "declared": shards[0]["declared"],
        "run": {"seed": seed, "scale": scale, "processes": processes, "seconds": round(elapsed, 1), "steps": steps,
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")},
        "planned": {k: sum(s["planned"][k] for s in shards) for k in ("orders", "events", "residents")},
        "own": {name: dict(own[name]) for name, _ in STAT_NAMES}, "other": dict(other),
        "comparison": comparison,
        "invariants": {"ledger_ok": ledger_ok, "daily_ledger_checks_ok": daily_ok,
                       "exchange_reconciliation_ok": exchange_ok, "stats_equal": stats_equal,
                       "counts_present": counts_ok,
                       "ok": ledger_ok and daily_ok and exchange_ok and stats_equal and counts_ok,
                       "ledger_violations": [v for s in shards for v in s["ledger"]["violations"]][:20],
                       "daily_ledger_checks": sum(len(s["ledger_runs"]) for s in shards),
                       "exchange_days_reconciled": sum(len(s["exchange_reconciliations"]) for s in shards)},
        "problems": problems[:200], "problem_count": len(problems),
        "ops": {name: f.to_json() for name, f in sorted(ops.items())},
        "total": total.to_json(),
        "stored": {"tables": {t: dict(c) for t, c in sorted(stored.items())}, "evidence_objects": evidence_objects},
    }


def fmt(x: float) -> str:
    if x == int(x):
        return f"{int(x):,}"
    return f"{x:,.1f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def operations_table(merged: dict[str, Any]) -> str:
    rows = []
    for name, data in merged["ops"].items():
        f = OpFigures.from_json(data)
        t = f.tally
        sqs = sum(n for k, n in t.service_calls.items() if k.startswith("sqs."))
        s3 = sum(n for k, n in t.service_calls.items() if k.startswith("s3."))
        per = max(1, f.count)
        rows.append([name, fmt(f.count), fmt(f.http), fmt(f.batches), fmt(f.schedule_runs), fmt(t.total_calls),
                     fmt(t.items_read + t.items_written), fmt(t.wru), fmt(round(t.wru / per, 1)), fmt(t.rru),
                     fmt(round(t.rru / per, 1)), fmt(sqs), fmt(s3), f"{f.seconds:,.0f}"])
    total = OpFigures.from_json(merged["total"])
    t = total.tally
    rows.append(["**total (without the check)**", fmt(total.count), fmt(total.http), fmt(total.batches),
                 fmt(total.schedule_runs), fmt(t.total_calls), fmt(t.items_read + t.items_written), fmt(t.wru), "",
                 fmt(t.rru), "", fmt(sum(n for k, n in t.service_calls.items() if k.startswith("sqs."))),
                 fmt(sum(n for k, n in t.service_calls.items() if k.startswith("s3."))), f"{total.seconds:,.0f}"])
    return table(["operation", "n", "HTTP", "batches", "sched. runs", "DDB calls", "DDB items", "WRU", "WRU/op",
                  "RRU", "RRU/op", "SQS calls", "S3 calls", "wall s"], rows)


def comparison_table(merged: dict[str, Any]) -> str:
    rows = []
    for category, row in merged["comparison"].items():
        cells = [category]
        for name, _ in STAT_NAMES:
            a, b = row[name]["simulation"], row[name]["statistics"]
            cells.append(fmt(a) if a == b else f"{fmt(a)} ≠ {fmt(b)}")
        rows.append(cells)
    return table(["category", "posted", "accepted", "settled", "cancelled", "minutes credited"], rows)


def render(merged: dict[str, Any]) -> str:
    from sim.costs import cost_report

    run, inv = merged["run"], merged["invariants"]
    lines = [f"# Simulation, scale {run['scale']:g} (seed {run['seed']}, {run['processes']} process(es)), {run['date']}",
             "",
             f"Wall time: {run['seconds']:,.0f} s for {run['steps']:,} planned steps. Planned: "
             f"{merged['planned']['residents']:,} residents, {merged['planned']['orders']:,} orders, "
             f"{merged['planned']['events']:,} other events.",
             "",
             "## Invariants",
             "",
             f"- ledger check (the ledger's own reconciliation, every shard): {'ok' if inv['ledger_ok'] else 'FAILED'}",
             f"- daily ledger-check schedule runs: {inv['daily_ledger_checks']} "
             f"{'all ok' if inv['daily_ledger_checks_ok'] else 'NOT ALL OK'}",
             f"- 志愿汇 reconciliation, {inv['exchange_days_reconciled']} days with exchanges: "
             f"{'ok' if inv['exchange_reconciliation_ok'] else 'FAILED'}",
             f"- statistics (GET /v1/admin/stats) equal to the simulation's own counts: "
             f"{'yes' if inv['stats_equal'] else 'NO'}",
             f"- counts present: {'yes' if inv['counts_present'] else 'NO'}",
             "",
             "Settled = completed in the statistics; cancelled includes expired. "
             "Simulation's counts (≠ marks a difference with the statistics):",
             "",
             comparison_table(merged),
             "",
             "Other traffic done: " + ", ".join(f"{k} {fmt(v)}" for k, v in sorted(merged["other"].items())),
             "",
             f"Planned steps that did not happen as planned: {merged['problem_count']}"
             + (" (first: " + "; ".join(merged["problems"][:5]) + ")" if merged["problems"] else ""),
             "",
             "## Operations (all shards)",
             "",
             operations_table(merged),
             "",
             cost_report(merged),
             ]
    return "\n".join(lines) + "\n"


def write_reports(merged: dict[str, Any], out: Path) -> str:
    from sim.costs import costs

    merged["costs"] = costs(merged)
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulation.json").write_text(json.dumps(merged, indent=1, ensure_ascii=False, default=str), "utf-8")
    text = render(merged)
    (out / "simulation.md").write_text(text, "utf-8")
    return text
