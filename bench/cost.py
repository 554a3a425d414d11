"""Capacity units of one completed order, step by step, by DynamoDB's billing rules.

``python -m bench cost`` (and part of ``make bench``). Each variant runs in a fresh moto world
with ``make run``'s tables and categories: a requester posts a need in ``companion`` (insurance
and evidence required) with a 100-character description, starting in 30 minutes; the volunteers
(one, or three, or one with all six built-in categories) live in the next building, declared
the category and consented to one "match" and one "reminder" message. Each step is the HTTP
call the mini-program makes plus every queue message it caused, delivered to the real
consumers (matching, insurance, volunteer statistics, reputation, risk flags); "reminders" is
one run of the ``send-reminders`` schedule. Setting the residents up is not counted.

WRU and RRU come from ``bench.ddb_counter`` (item sizes before/after, the tables' index
projections; see its docstring). Goal (issue 14): ≤ 40 WRU all-in and ≤ 15 RRU per order.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from bench.ddb_counter import Tally

BUILD = Path(__file__).resolve().parent.parent / "build"
CATEGORY = "companion"
SIX = ["pickup", "childcare", "tutoring", "parcel", "companion", "pet"]
DESCRIPTION = ("老人行动不便，需要陪同去社区医院复诊，" * 6)[:100]
GOAL_WRU, GOAL_RRU = 40, 15


@dataclass(frozen=True)
class Variant:
    name: str
    volunteers: int
    categories: tuple[str, ...]


VARIANTS = (
    Variant("1 volunteer notified", 1, (CATEGORY,)),
    Variant("3 volunteers notified", 3, (CATEGORY,)),
    Variant("6-category volunteer", 1, tuple(SIX)),
)


@dataclass
class Step:
    name: str
    tally: Tally
    outcome: str = "ok"


@dataclass
class VariantResult:
    variant: Variant
    steps: list[Step] = field(default_factory=list)

    @property
    def total(self) -> Tally:
        return sum((s.tally for s in self.steps), Tally())


def community_queues() -> list[str]:
    from functions.core.messaging import stack_queues

    return sorted(stack_queues("community"))


def run_variant(variant: Variant, log: Any) -> VariantResult:
    import boto3
    from chalice.app import SQSEventConfig
    from chalice.test import Client
    from moto import mock_aws

    from bench.ddb_counter import counting_dynamodb, forget_cached_clients
    from bench.environment import BENCH_ADMIN
    from bench.lifecycle import PHOTO, queue_drainer, verified
    from bench.operations import Scenario
    from functions import bootstrap
    from functions.app import app
    from functions.core import clock
    from local.consumers import queue_name_of
    from local.lambda_events import lambda_context, scheduled_event
    from local.provision import provision_evidence_bucket, provision_queues, provision_tables
    from local.seed import seed_categories

    result = VariantResult(variant)
    with mock_aws():
        bootstrap.reset()
        provision_tables(boto3.client("dynamodb"))
        provision_queues(boto3.client("sqs"))
        provision_evidence_bucket(boto3.client("s3"), boto3.session.Session().region_name)
        seed_categories()
        consumed = {queue_name_of(s) for s in app.event_sources if isinstance(s, SQSEventConfig)}
        from functions.core.messaging import queue_name

        drainers = {q: queue_drainer(app, q) for q in community_queues() if queue_name(q) in consumed}
        with counting_dynamodb() as counter:
            forget_cached_clients()
            with Client(app) as client:
                s = Scenario(client, counter, log=log)
                s.login(BENCH_ADMIN)
                verified(s, "cost-requester", room="1101", building="10")
                s.http("POST", "/v1/notifications/consents", "cost-requester", {"template": "reminder", "accepted": True})
                volunteers = []
                for n in range(variant.volunteers):
                    openid = f"cost-volunteer-{n}"
                    volunteers.append((openid, verified(s, openid, room=f"12{n:02d}", building="11")))
                    s.http("PUT", "/v1/volunteers/me", openid,
                           {"categories": list(variant.categories), "availability": [], "accepting": True})
                    for template in ("match", "reminder"):
                        s.http("POST", "/v1/notifications/consents", openid, {"template": template, "accepted": True})
                for drainer in drainers.values():
                    drainer.drain()
                volunteer, volunteer_resident = volunteers[0]

                def drain_all(skip: tuple[str, ...] = ()) -> int:
                    return sum(d.drain() for q, d in drainers.items() if q not in skip)

                def step(name: str, action: Callable[[], Any], check: Callable[[Any], str | None]) -> Any:
                    with counter.measure() as spent:
                        try:
                            value = action()
                            outcome = check(value) or "ok"
                        except Exception as exc:  # noqa: BLE001 — the row says what went wrong
                            value, outcome = None, f"error: {type(exc).__name__}: {exc}"[:100]
                    result.steps.append(Step(name, spent, outcome))
                    return value

                start = (clock.now() + timedelta(minutes=30)).replace(microsecond=0)
                body = {"category": CATEGORY, "title": "陪同就医", "description": DESCRIPTION,
                        "duration_minutes": 90, "start_at": start.isoformat()}
                need = step("post", lambda: s.http("POST", "/v1/requests", "cost-requester", body,
                                                   idempotency_key="cost-order-1"),
                            lambda r: None if r["status"] == "open" else f"status {r['status']}")
                if not need:
                    return result
                path = f"/v1/requests/{need['id']}"
                step("match + notify", lambda: drainers["matching"].drain() + drain_all(("matching",)),
                     lambda n: None if n >= 1 else "no matching message")

                def then_drain(call: Callable[[], Any]) -> Callable[[], Any]:
                    def run() -> Any:
                        value = call()
                        drain_all()
                        return value
                    return run

                step("accept (+ insurance, stats)", then_drain(lambda: s.http("POST", f"{path}/accept", volunteer)),
                     lambda r: None if r["volunteer_id"] == volunteer_resident["id"] else "another volunteer")
                handler = app.handler_map["send-reminders"]
                step("reminders (one schedule run)", lambda: handler(
                    scheduled_event("send-reminders", "cn-north-1"), lambda_context("send-reminders", 60)),
                    lambda r: None)

                def check_in() -> Any:
                    import requests

                    upload = s.http("POST", f"{path}/evidence", volunteer, {"content_type": "image/jpeg", "size": len(PHOTO)})
                    requests.put(upload["upload_url"], data=PHOTO, headers=upload["headers"]).raise_for_status()
                    value = s.http("POST", f"{path}/check-in", volunteer, {"evidence_key": upload["key"]})
                    drain_all()
                    return value

                step("check-in (evidence URL + check-in)", check_in,
                     lambda r: None if r["status"] == "in_service" else f"status {r['status']}")
                step("complete", then_drain(lambda: s.http("POST", f"{path}/complete", volunteer, {"minutes": 80})),
                     lambda r: None if r["status"] == "completed" else f"status {r['status']}")
                step("confirm / settle (+ stats, reputation, risk)", then_drain(lambda: s.http(
                    "POST", f"{path}/confirm", "cost-requester", {"rating": 5, "comment": "谢谢"})),
                     lambda r: None if r["status"] == "settled" else f"status {r['status']}")
        bootstrap.reset()
    return result


def fmt(x: float) -> str:
    return f"{x:g}" if x == int(x) else f"{x:.1f}"


LOCAL_ONLY = ("outbox",)  # the local stages' message outbox: deployed stages send to WeChat instead


def deployed_wru(t: Tally) -> float:
    return t.wru - sum(t.wru_by_table.get(name, 0) for name in LOCAL_ONLY)


def cost_table(results: list[VariantResult]) -> str:
    from bench.report import table

    rows = []
    for r in results:
        for s in r.steps:
            rows.append([r.variant.name, s.name, fmt(s.tally.wru_base), fmt(s.tally.wru_gsi), fmt(s.tally.wru),
                         fmt(deployed_wru(s.tally)), fmt(s.tally.rru), str(s.tally.total_calls),
                         "" if s.outcome == "ok" else s.outcome])
        t = r.total
        rows.append([r.variant.name, "whole order", fmt(t.wru_base), fmt(t.wru_gsi), fmt(t.wru), fmt(deployed_wru(t)),
                     fmt(t.rru), str(t.total_calls), f"goal ≤ {GOAL_WRU} WRU, ≤ {GOAL_RRU} RRU"
                     + ("" if deployed_wru(t) <= GOAL_WRU and t.rru <= GOAL_RRU else ": over")])
        rows.append([""] * 9)
    return table(["variant", "step", "WRU base", "WRU GSI", "WRU", "WRU deployed", "RRU", "calls", "note"],
                 rows[:-1], right={2, 3, 4, 5, 6, 7}) + (
        "\n\nWRU deployed: without the local stages' message outbox table (deployed stages send "
        "subscribe messages to WeChat, not to a table).")


def by_table(results: list[VariantResult]) -> str:
    from bench.report import table

    t = results[0].total
    names = sorted(set(t.wru_by_table) | set(t.rru_by_table), key=lambda n: -t.wru_by_table.get(n, 0))
    rows = [[n, fmt(t.wru_by_table.get(n, 0)),
             " ".join(f"{k.split('/', 1)[1]}:{fmt(v)}" for k, v in sorted(t.gsi_by_index.items())
                      if k.split('/', 1)[0] == n) or "-",
             fmt(t.rru_by_table.get(n, 0))] for n in names]
    return table(["table", "WRU (base + index)", "of which index entries", "RRU"], rows, right={1, 3})


def main(argv: list[str] | None = None) -> int:
    BUILD.mkdir(exist_ok=True)
    with open(BUILD / "bench-cost.log", "w", encoding="utf-8") as log:
        import functions.app  # noqa: F401 — its logger exists before its output is redirected
        from bench.operations import app_logs_to

        with app_logs_to(log):
            results = [run_variant(v, log) for v in VARIANTS]
    print(cost_table(results))
    print(f"\nwhere the first variant's units go, by table\n")
    print(by_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
