"""Plain-text tables for the terminal."""
from __future__ import annotations

from typing import Sequence

from bench.imports import ImportTiming
from bench.ddb_counter import Tally
from bench.latency import LatencySamples, summary
from bench.operations import Measured

SHORT = {"GetItem": "Get", "PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete",
         "Query": "Query", "Scan": "Scan", "TransactWriteItems": "TxWrite",
         "TransactGetItems": "TxGet", "BatchGetItem": "BatchGet", "BatchWriteItem": "BatchWrite"}


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def dynamodb_calls_text(tally: Tally) -> str:
    return " ".join(
        f"{SHORT.get(op, op)}×{n}" + (f"({tally.errors[op]} failed)" if tally.errors[op] else "")
        for op, n in sorted(tally.calls.items())) or "-"


def service_calls_text(tally: Tally, service: str) -> str:
    return " ".join(f"{op}×{n}" for op, n in sorted(tally.calls_of(service).items())) or "-"


def operations_table(results: Sequence[Measured]) -> str:
    rows = []
    for r in results:
        rows.append([r.operation, str(r.tally.total_calls), dynamodb_calls_text(r.tally),
                     str(r.tally.items_read), str(r.tally.items_written),
                     service_calls_text(r.tally, "sqs"), service_calls_text(r.tally, "s3"),
                     "" if r.outcome == "ok" else r.outcome])
    return table(["operation", "calls", "calls by operation", "read", "written", "SQS", "S3", "note"],
                 rows, right={1, 3, 4})


def lifecycle_table(results: Sequence[Measured]) -> str:
    """The steps of one order, then their sum."""
    total = sum((r.tally for r in results), Tally())
    incomplete = [r for r in results if r.outcome != "ok"]
    summary = Measured(f"whole order ({len(results)} steps)", total,
                       "ok" if not incomplete else f"{len(incomplete)} step(s) incomplete")
    out = operations_table([*results, summary]).split("\n")
    # A rule above the total row.
    return "\n".join([*out[:-1], out[1], out[-1]])


def import_table(timings: Sequence[ImportTiming], heaviest: Sequence[tuple[str, float]]) -> str:
    rows = [[t.subject, f"{t.median_import * 1000:.0f} ms",
             f"{min(t.import_seconds) * 1000:.0f}–{max(t.import_seconds) * 1000:.0f} ms",
             f"{t.median_process * 1000:.0f} ms"] for t in timings]
    out = table(["statement", "import (median)", "range", "whole process (median)"], rows,
                right={1, 2, 3})
    if len(timings) == 2:
        app, bare = timings
        extra = app.median_import - bare.median_import
        pairs = sorted(a / b for a, b in zip(app.import_seconds, bare.import_seconds))
        out += (f"\n\nthe app adds {extra * 1000:.0f} ms to the bare libraries' import: "
                f"{app.median_import / bare.median_import:.2f}× (median of {len(pairs)} alternating pairs' "
                f"ratios: {pairs[len(pairs) // 2]:.2f}×; goal ≤ 1.30×)")
    out += "\n\nlargest own import times in `import functions.app`:\n" + table(
        ["module", "self"], [[name, f"{seconds * 1000:.1f} ms"] for name, seconds in heaviest],
        right={1})
    return out


def latency_table(measurements: Sequence[LatencySamples]) -> str:
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ms"

    rows = []
    for m in measurements:
        if m.to_notification:
            low, middle, high = summary(m.to_notification)
            ordered = sorted(m.to_notification)
            p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
            cells = [str(len(m.to_notification)), ms(low), ms(middle), ms(p95), ms(high),
                     ms(summary(m.post_round_trip)[1])]
        else:
            cells = ["0", "-", "-", "-", "-", "-"]
        rows.append([f"{m.poll_interval_seconds:g} s", *cells,
                     ms(m.cold) if m.cold is not None else "-", m.problem])
    return table(["consumer poll interval", "samples", "min", "median", "p95", "max",
                  "POST alone (median)", "first post (cold)", "note"], rows, right={1, 2, 3, 4, 5, 6, 7})
