"""The monthly cost of one community at list prices, from the simulation's counts.

Volume: the simulation ran ``months`` (10) at ``scale``; one pilot month is the measured
traffic ÷ (months × scale). 10× and 100× multiply the traffic (requests, messages, photos,
logs, stored data); schedules are split into their idle runs, which happen at the real rate
whatever the volume, and the work beyond idle, which grows with it:

    schedule S per month = k × (W_S − n_S × idle_S) / (months × scale) + runs_S × idle_S

with W_S the measured cost of the simulation's n_S runs, idle_S one run in a quiet world and
runs_S its real runs per month (from the app's schedule expressions). The ledger check reads
the whole ledger whatever it finds, so its month is 30 × (W_S / n_S) × k / scale (its average
run over the ten months; the run at the end of month ten costs about twice that).

Not counted as deployed cost: the ``outbox`` table (the local stages' stand-in for WeChat) and
the simulation's own checks. Prices and the assumptions that moto cannot measure (Lambda
duration, photo size, idle polling) are in sim/prices.toml.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from sim.meter import CHECK, OpFigures

PRICES = Path(__file__).with_name("prices.toml")
MONTHS = 10
MINUTES_PER_MONTH = 30 * 24 * 60
LOCAL_ONLY_TABLES = ("outbox",)
FULL_READS = ("ledger-check",)
MULTIPLIERS = (1, 10, 100)
GB = 1024 ** 3


def load_prices() -> dict[str, Any]:
    return tomllib.loads(PRICES.read_text("utf-8"))


def _usage(f: OpFigures, a: dict[str, Any]) -> dict[str, float]:
    """One operation's countable usage, deployed: without the local-only tables."""
    t = f.tally
    local_wru = sum(t.wru_by_table.get(name, 0) for name in LOCAL_ONLY_TABLES)
    local_rru = sum(t.rru_by_table.get(name, 0) for name in LOCAL_ONLY_TABLES)
    sqs = {k[4:]: n for k, n in t.service_calls.items() if k.startswith("sqs.")}
    s3 = {k[3:]: n for k, n in t.service_calls.items() if k.startswith("s3.")}
    invocations = f.http + f.batches + f.schedule_runs
    other_calls = sum(sqs.values()) + sum(s3.values())
    ms = invocations * a["lambda_base_ms"] + t.total_calls * a["lambda_ms_per_dynamodb_call"] \
        + other_calls * a["lambda_ms_per_other_call"]
    return {
        "wru": t.wru - local_wru, "rru": t.rru - local_rru, "ddb_calls": t.total_calls,
        "api_requests": f.http, "invocations": invocations, "lambda_ms": ms,
        # the event source mapping's own calls for the batches it delivered: a receive and a delete each
        "sqs_requests": sum(sqs.values()) + 2 * f.batches,
        "s3_put": s3.get("PutObject", 0), "s3_get": sum(n for k, n in s3.items() if k != "PutObject"),
        "log_bytes": f.log_bytes + invocations * a["lambda_report_log_bytes"],
    }


def _scaled(usage: dict[str, float], factor: float) -> dict[str, float]:
    return {k: v * factor for k, v in usage.items()}


def _add(into: dict[str, float], usage: dict[str, float]) -> None:
    for k, v in usage.items():
        into[k] = into.get(k, 0) + v


def monthly_usage(merged: dict[str, Any], k: float, a: dict[str, Any]) -> dict[str, float]:
    scale = merged["run"]["scale"]
    per_month = k / (MONTHS * scale)
    ops = {name: OpFigures.from_json(data) for name, data in merged["ops"].items()}
    periods = merged["declared"]["schedules"]
    total: dict[str, float] = {}
    for name, f in ops.items():
        if name == CHECK or name.startswith("idle "):
            continue
        if name.startswith("schedule "):
            continue
        _add(total, _scaled(_usage(f, a), per_month))
    # photos: one PUT from the phone per evidence upload URL handed out
    photos = sum(f.count for name, f in ops.items() if name.startswith("check-in with photo")) * per_month
    total["s3_put"] = total.get("s3_put", 0) + photos
    for schedule, period in periods.items():
        runs = MINUTES_PER_MONTH * 60 / period
        worked = ops.get(f"schedule {schedule}")
        idle = ops.get(f"idle {schedule}")
        idle_usage = _usage(idle, a) if idle else None
        if worked is None and idle_usage is None:
            continue
        if schedule in FULL_READS and worked is not None and worked.count:
            average = _scaled(_usage(worked, a), 1 / worked.count)
            full = _scaled(average, runs * k / scale)
            for key in ("invocations", "api_requests"):
                full[key] = average[key] * runs
            _add(total, full)
            continue
        if idle_usage is not None:
            _add(total, _scaled(idle_usage, runs))
        if worked is not None:
            beyond = _usage(worked, a)
            if idle_usage is not None:
                beyond = {key: max(0.0, v - worked.count * idle_usage[key]) for key, v in beyond.items()}
            beyond["invocations"] = 0  # the runs are the idle rate's, counted above
            _add(total, _scaled(beyond, per_month))
    total["sqs_idle_polls"] = merged["declared"]["sqs_mappings"] * a["idle_receives_per_minute_per_mapping"] \
        * MINUTES_PER_MONTH
    stored = merged["stored"]["tables"]
    ddb_bytes = sum(v["bytes"] + v.get("index_bytes", 0) for t, v in stored.items() if t not in LOCAL_ONLY_TABLES)
    # the stored data after ten months, at this volume
    total["ddb_gb"] = ddb_bytes * k / scale / GB
    retained_months = a["evidence_retention_days"] / 30
    total["photo_gb"] = photos * min(retained_months, MONTHS) * a["photo_bytes"] / GB
    total["log_gb"] = total["log_bytes"] / GB
    return total


def priced(usage: dict[str, float], p: dict[str, Any], a: dict[str, Any]) -> dict[str, float]:
    gb_seconds = usage["lambda_ms"] / 1000 * a["lambda_memory_mb"] / 1024
    return {
        "DynamoDB requests": usage["wru"] / 1e6 * p["dynamodb_wru_per_million"]
        + usage["rru"] / 1e6 * p["dynamodb_rru_per_million"],
        "DynamoDB storage": usage["ddb_gb"] * p["dynamodb_storage_gb_month"],
        "DynamoDB PITR": usage["ddb_gb"] * p["dynamodb_pitr_gb_month"],
        "Lambda": usage["invocations"] / 1e6 * p["lambda_requests_per_million"] + gb_seconds * p["lambda_gb_second"],
        "API Gateway (REST)": usage["api_requests"] / 1e6 * p["apigw_rest_per_million"],
        "SQS (messages)": usage["sqs_requests"] / 1e6 * p["sqs_requests_per_million"],
        "SQS (idle polling)": usage["sqs_idle_polls"] / 1e6 * p["sqs_requests_per_million"],
        "S3": usage["s3_put"] / 1000 * p["s3_put_per_thousand"] + usage["s3_get"] / 1000 * p["s3_get_per_thousand"]
        + usage["photo_gb"] * p["s3_storage_gb_month"],
        "CloudWatch Logs": usage["log_gb"] * p["logs_ingest_gb"] + usage["log_gb"] * 3 * p["logs_storage_gb_month"],
    }


def costs(merged: dict[str, Any]) -> dict[str, Any]:
    prices = load_prices()
    a = prices["assumptions"]
    out: dict[str, Any] = {"usage": {}, "regions": {}}
    for k in MULTIPLIERS:
        out["usage"][str(k)] = monthly_usage(merged, k, a)
    for region in ("cn-north-1", "us-east-1"):
        p = prices[region]
        out["regions"][region] = {"currency": p["currency"], "source": p["source"],
                                  "by_multiplier": {str(k): priced(out["usage"][str(k)], p, a) for k in MULTIPLIERS}}
    return out


def money(x: float) -> str:
    if x == 0:
        return "0"
    if x < 0.01:
        return "<0.01"
    return f"{x:,.2f}" if x < 1000 else f"{x:,.0f}"


def cost_report(merged: dict[str, Any]) -> str:
    from sim.report import fmt, table

    c = merged.get("costs") or costs(merged)
    lines = ["## Monthly cost of one community (list prices; sim/prices.toml — NOT fetched, check the CN prices)", ""]
    u1 = c["usage"]["1"]
    lines.append(
        f"Pilot month (1×): {fmt(round(u1['wru']))} WRU, {fmt(round(u1['rru']))} RRU, "
        f"{fmt(round(u1['api_requests']))} API requests, {fmt(round(u1['invocations']))} Lambda invocations "
        f"({fmt(round(u1['lambda_ms'] / 1000))} s modelled), {fmt(round(u1['sqs_requests']))} SQS requests + "
        f"{fmt(round(u1['sqs_idle_polls']))} idle polls ({merged['declared']['sqs_mappings']} mappings), "
        f"{fmt(round(u1['s3_put']))} S3 PUT, {u1['ddb_gb']:.3f} GB in DynamoDB after ten months, "
        f"{u1['photo_gb']:.2f} GB of photos kept, {u1['log_gb']:.3f} GB of logs.")
    lines.append("")
    for region, data in c["regions"].items():
        lines.append(f"**{region} ({data['currency']})** — {data['source']}")
        lines.append("")
        names = list(data["by_multiplier"]["1"])
        rows = [[n] + [money(data["by_multiplier"][str(k)][n]) for k in MULTIPLIERS] for n in names]
        rows.append(["**total**"] + [money(sum(data["by_multiplier"][str(k)].values())) for k in MULTIPLIERS])
        lines.append(table(["line", "1× pilot", "10×", "100×"], rows))
        lines.append("")
    return "\n".join(lines)
