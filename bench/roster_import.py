"""AWS calls of a roster import of 2,000 rows (2,000 households, one resident each: the most
transactions per row) through ``POST /v1/admin/imports/residents`` — the real xlsx file over
``chalice.test.Client``, so the same code path as the endpoint (and the command line, which
calls the same use case): a dry run and the import.

Besides the counts, the facts the endpoint's limits are judged by: the file's bytes and their
base64 size (what API Gateway hands Lambda, against its 6 MB), and an estimate of the time on
DynamoDB from the counted calls at typical in-region latencies (``LATENCY_MS``), against API
Gateway's 29 s. moto's wall time is printed too, but it is moto's, not DynamoDB's.
"""
from __future__ import annotations

import base64
import time
from typing import Any

from bench.operations import Scenario

ROWS = 2_000
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Typical single-digit-ms reads and tens-of-ms transactions in-region (DynamoDB's documented
# "single-digit millisecond" reads; a 70–80 item TransactWriteItems measured at 30–60 ms).
LATENCY_MS = {"GetItem": 5, "Query": 5, "BatchGetItem": 10, "TransactWriteItems": 50, "PutItem": 8,
              "UpdateItem": 8}
GATEWAY_SECONDS = 29
LAMBDA_PAYLOAD = 6 * 1024 * 1024


def roster_file(rows: int) -> bytes:
    import io

    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["姓名", "手机", "楼栋", "单元", "房号", "出生年份"])
    for i in range(rows):
        sheet.append([f"居民{i}", 13500000000 + i, str(30 + i // 400), str(1 + i // 100 % 4),
                      str(101 + i % 100), 1940 + i % 70])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def estimated_seconds(calls: Any) -> float:
    """The phone Queries run ``PHONE_LOOKUP_THREADS`` at a time; everything else one after another."""
    from functions.identity.dynamo import PHONE_LOOKUP_THREADS

    return sum(LATENCY_MS.get(name, 10) * n / (PHONE_LOOKUP_THREADS if name == "Query" else 1)
               for name, n in calls.items()) / 1000


def run_roster_import(s: Scenario) -> dict[str, Any]:
    from local import moto_compat

    # 200 transactions on tables that grow to 6,000+ items: stock moto copies every table a
    # transaction names once per item (gigabytes here). The layer changes no count.
    moto_compat.install_unless_disabled()
    body = roster_file(ROWS)
    admin = s.token("admin-bench")
    headers = {"Authorization": f"Bearer {admin}", "Content-Type": XLSX}

    def upload(query: str = "") -> Any:
        response = s.client.http.post("/v1/admin/imports/residents" + query, body=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.body[:200]!r}")
        return response.json_body

    facts: dict[str, Any] = {"rows": ROWS, "file_bytes": len(body), "base64_bytes": len(base64.b64encode(body))}
    # The rerun of a whole file (every batch found, no transaction) is tested, not benched: on
    # moto each index Query scans the table, minutes at this size.
    for label, query in ((f"import {ROWS} rows: dry run", "?dry_run=true"), (f"import {ROWS} rows", "")):
        started = time.perf_counter()
        result = s.measure(label, lambda q=query: upload(q),
                           check=lambda r: None if r and r["imported"] == ROWS else f"imported {r}")
        tally = s.results[-1].tally
        facts[label] = {"moto_seconds": time.perf_counter() - started,
                        "dynamodb_seconds": estimated_seconds(tally.calls),
                        "transactions": tally.calls.get("TransactWriteItems", 0),
                        "items_written": tally.items_written,
                        "households": (result or {}).get("households")}
    return facts


def facts_text(facts: dict[str, Any]) -> str:
    if not facts:
        return ""
    lines = [f"the xlsx of {facts['rows']} rows is {facts['file_bytes'] / 1024:.0f} KB, "
             f"{facts['base64_bytes'] / 1024:.0f} KB base64-encoded as API Gateway hands it to Lambda "
             f"(limit {LAMBDA_PAYLOAD / 1024 / 1024:.0f} MB)"]
    for label, f in facts.items():
        if not isinstance(f, dict):
            continue
        per_tx = f["items_written"] / f["transactions"] if f["transactions"] else 0
        lines.append(f"{label}: {f['transactions']} TransactWriteItems ({per_tx:.0f} items each on average); "
                     f"≈ {f['dynamodb_seconds']:.1f} s on DynamoDB at "
                     f"{', '.join(f'{k} {v} ms' for k, v in LATENCY_MS.items() if k in ('Query', 'TransactWriteItems'))}"
                     f", Queries 8 at a time (API Gateway's limit {GATEWAY_SECONDS} s); {f['moto_seconds']:.1f} s on moto")
    return "\n".join(lines)
