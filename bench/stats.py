"""Statistics: one aggregated event, its redelivery, and the admins' read of a 30-day range.

The bench's earlier operations left their domain events on the ``stats`` queue; they are taken
off it uncounted, one ``request.settled`` (the widest event: the day's category counters, the
day's people and credits, the volunteer's building, the marker) is handed to the real consumer
counted, then again (a redelivery: the marker's condition cancels the transaction). Then 30 days
of a busy community (12 services a day over the seven categories, 40 residents) are written
uncounted through the store, and ``GET /v1/admin/stats`` for those 30 days is counted over HTTP.
"""
from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from bench.environment import BENCH_ADMIN
from bench.ddb_counter import Tally
from bench.operations import Measured, Scenario

DAYS = 30
ORDERS_PER_DAY = 12
CATEGORIES = ("pickup", "childcare", "tutoring", "parcel", "companion", "pet", "volunteer")


def _take(logical_queue: str) -> list[dict[str, Any]]:
    import boto3

    from functions.core.messaging import queue_name

    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name(logical_queue))["QueueUrl"]
    taken: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                    AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            return taken
        taken += batch
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(batch)])


def _deliver(app: Any, message: dict[str, Any]) -> dict[str, Any]:
    from functions.core.messaging import queue_name
    from local.lambda_events import sqs_event

    copy = {**message, "MessageId": str(uuid.uuid4())}
    arn = f"arn:aws-cn:sqs:cn-north-1:123456789012:{queue_name('stats')}"
    return app.handler_map["stats-aggregates"](sqs_event([copy], arn, "cn-north-1"), None)


def _busy_month(end: date) -> None:
    """Aggregates of 30 busy days, written through the store (uncounted)."""
    from functions import bootstrap
    from functions.core.clock import CHINA_TZ
    from functions.core.events import new_event
    from functions.stats.model import contribution

    store = bootstrap.stats().store
    n = 0
    for back in range(DAYS):
        day = end - timedelta(days=back)
        for k in range(ORDERS_PER_DAY):
            n += 1
            at = datetime(day.year, day.month, day.day, 8 + k, 0, tzinfo=CHINA_TZ)
            data = {"category": CATEGORIES[n % len(CATEGORIES)], "household_id": f"hh_bench{n % 20}",
                    "requester_id": f"res_bench{n % 40}", "volunteer_id": f"res_bench{(n + 7) % 40}",
                    "volunteer_household_id": f"hh_bench{(n + 7) % 20}", "credits_paid": 60,
                    "posted_at": (at - timedelta(minutes=30 + k)).isoformat()}
            for kind in ("request.posted", "request.accepted", "request.settled"):
                store.apply(contribution(new_event(kind, f"req_bench{n}", at, data), {f"hh_bench{n % 20}": "9"}))


def run_stats(s: Scenario, app: Any) -> None:
    messages = _take("stats")
    settled = [m for m in messages if json.loads(m["Body"])["type"] == "request.settled"]
    for message in messages:
        if message not in settled[:1]:
            _deliver(app, message)
    if settled:
        def applied(result: Any) -> str | None:
            return None if result["batchItemFailures"] == [] else "the event was not applied"

        s.measure("stats: one aggregated event (request.settled)", lambda: _deliver(app, settled[0]), applied)
        s.measure("stats: the same event redelivered (nothing added)", lambda: _deliver(app, settled[0]), applied)
    else:
        s.results.append(Measured("stats: one aggregated event (request.settled)", Tally(),
                                  "no request.settled event on the stats queue"))
    end = date(2026, 11, 30)
    _busy_month(end)
    start = end - timedelta(days=DAYS - 1)

    def shows_the_month(body: Any) -> str | None:
        days = {d["date"] for d in body["by_day"]}
        return None if len(days) == DAYS else f"by_day has {len(days)} days"

    s.login(BENCH_ADMIN)
    s.measure(f"stats read for a 30-day range (GET /v1/admin/stats, {ORDERS_PER_DAY} services a day)",
              lambda: s.http("GET", f"/v1/admin/stats?from={start}&to={end}", BENCH_ADMIN), shows_the_month)
