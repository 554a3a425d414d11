"""Reads that must stay flat as a community grows (issue 14): at a small and a large size.

``python -m bench scaling [--small 1000] [--large 100000] [--volunteers 10 2000]`` (part of
``make bench``). Two moto worlds per axis, seeded directly through the tables' own definitions
(BatchWriteItem of clones of items the real handlers wrote, so their shape is the product's):
``requests`` stored requests (all but 30 settled; 30 open in the feed) and as many ledger
transfers (5 % on the statement's account), and ``volunteers`` volunteers in ``companion``
spread over 50 buildings. Then, counted by ``bench.ddb_counter``: a feed page, an accept, a
statement page, a matching run and a volunteer's statistics read (``GET /v1/volunteers/me``),
each RRU and items read at both sizes and their ratio (goal ≤ 1.05×).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

OPEN_SEEDED = 30
BUILDINGS = 50


@dataclass
class Reads:
    rru: float
    items: int
    calls: int


def _batch_write(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        chunk = [{"PutRequest": {"Item": i}} for i in items[start:start + 25]]
        pending = {table: chunk}
        while pending:
            pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or None


def measure_world(requests: int, volunteers: int, log: Any) -> dict[str, Reads]:
    import boto3
    from chalice.app import SQSEventConfig
    from chalice.test import Client
    from moto import mock_aws

    from bench.ddb_counter import counting_dynamodb, forget_cached_clients
    from bench.environment import BENCH_ADMIN
    from bench.lifecycle import queue_drainer, verified
    from bench.operations import Scenario
    from functions import bootstrap
    from functions.app import app
    from functions.core import clock
    from functions.ledger.dynamo import LedgerTransferItem
    from functions.requests.dynamo import RequestItem, created_key
    from functions.volunteers.dynamo import VolunteerCategoryItem, VolunteerItem, place_of, spot_of
    from local.provision import provision_evidence_bucket, provision_queues, provision_tables
    from local.seed import seed_categories

    out: dict[str, Reads] = {}
    with mock_aws():
        bootstrap.reset()
        ddb = boto3.client("dynamodb")
        provision_tables(ddb)
        provision_queues(boto3.client("sqs"))
        provision_evidence_bucket(boto3.client("s3"), boto3.session.Session().region_name)
        seed_categories()
        matching = queue_drainer(app, "matching")
        with counting_dynamodb() as counter:
            forget_cached_clients()
            with Client(app) as client:
                s = Scenario(client, counter, log=log)
                s.login(BENCH_ADMIN)
                requester = verified(s, "scale-requester", room="1101", building="b0")
                volunteer = verified(s, "scale-volunteer", room="1201", building="b1")
                s.http("PUT", "/v1/volunteers/me", "scale-volunteer",
                       {"categories": ["companion"], "availability": [], "accepting": True})
                start = (clock.now() + timedelta(days=2)).replace(microsecond=0).isoformat()

                def post(key: str) -> dict[str, Any]:
                    return s.http("POST", "/v1/requests", "scale-requester",
                                  {"category": "companion", "title": "陪同", "description": "scale",
                                   "duration_minutes": 30, "start_at": start}, idempotency_key=key)

                template_request = post("scale-template")
                matching.drain()
                raw_request = ddb.get_item(TableName=RequestItem.Meta.table_name,
                                           Key={"request_id": {"S": template_request["id"]}})["Item"]
                raw_transfer = ddb.query(TableName=LedgerTransferItem.Meta.table_name, IndexName="by-debit",
                                         KeyConditionExpression="debit_account = :a", ExpressionAttributeValues={
                                             ":a": {"S": f"household:{requester['household_id']}"}})["Items"][0]
                raw_profile = ddb.get_item(TableName=VolunteerItem.Meta.table_name,
                                           Key={"resident_id": {"S": volunteer["id"]}})["Item"]
                base_time = clock.now() - timedelta(days=300)
                seeded = []
                for n in range(requests):
                    item = dict(raw_request)
                    rid = f"req_seed{n:07d}"
                    created = base_time + timedelta(minutes=n)
                    item.update(request_id={"S": rid}, created_key={"S": created_key(created, rid)},
                                household_id={"S": f"hh_seed{n % 500}"})
                    if n >= OPEN_SEEDED:
                        for name in ("feed", "feed_category", "due_at", "due_shard"):
                            item.pop(name, None)
                        item["status"] = {"S": "settled"}
                    seeded.append(item)
                _batch_write(ddb, RequestItem.Meta.table_name, seeded)
                transfers = []
                for n in range(requests):
                    item = dict(raw_transfer)
                    item.update(id={"S": f"tr_seed{n:07d}"},
                                sort_key={"S": f"{(base_time + timedelta(minutes=n)).isoformat()}#tr_seed{n:07d}"})
                    if n % 20:
                        item["debit_account"] = {"S": f"household:hh_seed{n % 500}"}
                    transfers.append(item)
                _batch_write(ddb, LedgerTransferItem.Meta.table_name, transfers)
                profiles, cards = [], []
                for n in range(volunteers - 1):
                    rid = f"res_seedvol{n:06d}"
                    building = f"b{n % BUILDINGS}"
                    profile = dict(raw_profile)
                    profile["resident_id"] = {"S": rid}
                    profiles.append(profile)
                    cards.append({"category": {"S": "companion"}, "resident_id": {"S": rid}, "version": {"N": "1"},
                                  "spot": {"S": spot_of(rid)}, "place": {"S": place_of(building, rid)}})
                _batch_write(ddb, VolunteerItem.Meta.table_name, profiles)
                _batch_write(ddb, VolunteerCategoryItem.Meta.table_name, cards)

                from functions.identity.dynamo import DynamoIdentityStore

                def reads(name: str, action: Any) -> Any:
                    # The revocation version a warm function re-reads every 15 s: read now, so
                    # the seeding's duration does not decide which row pays for it.
                    DynamoIdentityStore().revocation_version(max_age=0)
                    # Likewise the category catalogue a warm function keeps for 30 s: the 100k
                    # world's seeding outlasts it, and the category feed page paid its Query
                    # (7 items, +0.5 RRU: the "1.33×" of the first measurement).
                    bootstrap.catalog().forget()
                    bootstrap.catalog().all()
                    with counter.measure() as spent:
                        value = action()
                    out[name] = Reads(spent.rru, spent.items_read, spent.total_calls)
                    return value

                reads("feed page (GET /v1/requests, 20)", lambda: s.http("GET", "/v1/requests?limit=20", "scale-volunteer"))
                reads("feed page, one category", lambda: s.http(
                    "GET", "/v1/requests?category=companion&limit=20", "scale-volunteer"))
                need = post("scale-accept")
                reads("matching run (1 post)", matching.drain)
                reads("accept", lambda: s.http("POST", f"/v1/requests/{need['id']}/accept", "scale-volunteer"))
                reads("statement page (20)", lambda: s.http(
                    "GET", f"/v1/accounts/household:{requester['household_id']}/transfers?limit=20", "scale-requester"))
                reads("volunteer statistics (GET /v1/volunteers/me)",
                      lambda: s.http("GET", "/v1/volunteers/me", "scale-volunteer"))
        bootstrap.reset()
    return out


def ratio_table(label_small: str, label_large: str, small: dict[str, Reads], large: dict[str, Reads]) -> str:
    from bench.cost import fmt
    from bench.report import table

    rows = []
    for name in small:
        a, b = small[name], large.get(name)
        if b is None:
            continue
        ratio = (b.rru / a.rru) if a.rru else 1.0
        rows.append([name, fmt(a.rru), str(a.items), fmt(b.rru), str(b.items), f"{ratio:.2f}×",
                     "" if ratio <= 1.05 else "over 1.05×"])
    return table(["read", f"RRU {label_small}", "items", f"RRU {label_large}", "items", "large/small", "note"],
                 rows, right={1, 2, 3, 4, 5})


def main(argv: list[str] | None = None) -> int:
    import time
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m bench scaling")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--volunteers", type=int, nargs=2, default=(10, 2000))
    args = parser.parse_args(argv or [])
    build = Path(__file__).resolve().parent.parent / "build"
    build.mkdir(exist_ok=True)
    import functions.app  # noqa: F401 — its logger exists before its output is redirected
    from bench.operations import app_logs_to

    few, many = args.volunteers
    with open(build / "bench-scaling.log", "w", encoding="utf-8") as log, app_logs_to(log):
        began = time.monotonic()
        small = measure_world(args.small, few, log)
        large = measure_world(args.large, many, log)
        seconds = time.monotonic() - began
    print(ratio_table(f"{args.small:,} req / {few} vol", f"{args.large:,} req / {many} vol", small, large))
    print(f"\n(both worlds seeded and measured in {seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
