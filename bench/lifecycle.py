"""AWS calls of one whole order, step by step, as the mini-program and the queues drive it.

The walk of ``tests/http/test_request_lifecycle.py::test_whole_lifecycle_with_matching_insurance_and_evidence``:
a need in a category that requires insurance and evidence (``companion``) is posted, the
matching consumer notifies the one volunteer (who declared the category and consented to one
"match" message), the volunteer accepts, the insurance consumer writes the record, the volunteer
asks for an evidence upload URL, PUTs the photo (uncounted: the phone's call to S3), checks in
with its key (one HeadObject), completes, and the requester confirms
(settlement). HTTP goes through ``chalice.test.Client``; the queue steps hand what is waiting to
the real ``@app.on_sqs_message`` handler the way the local runtime does (``local.consumers``).

Setting the two residents up (login, registration, verification, profile, consent) is not
counted. After each step a check (not counted either) confirms it did what it should; a row
whose check failed says why in its note.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from bench.environment import BENCH_ADMIN
from bench.operations import Scenario, resident_body

REQUESTER = "bench-order-requester"
VOLUNTEER = "bench-order-volunteer"
CATEGORY = "companion"        # requires insurance and evidence
POSTED_MINUTES = 90
SERVED_MINUTES = 80
PHOTO = b"\xff\xd8\xff\xe0" + b"\x00" * 4096


class QueueDrainer:
    """Delivers what waits on one queue to its handler, in this thread (``local.consumers``)."""

    def __init__(self, consumer: Any):
        self._consumer = consumer

    def drain(self, max_batches: int = 50) -> int:
        handled = 0
        for _ in range(max_batches):
            received = self._consumer.poll_once()
            if not received:
                break
            handled += received
        return handled


def queue_drainer(app: Any, logical_queue: str) -> QueueDrainer:
    import boto3
    from chalice.app import SQSEventConfig

    from functions.core.messaging import QUEUES, queue_name
    from local.consumers import QueueBinding, QueueConsumer, queue_name_of

    name = queue_name(logical_queue)
    source = next(s for s in app.event_sources
                  if isinstance(s, SQSEventConfig) and queue_name_of(s) == name)
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    binding = QueueBinding(handler_name=source.name, handler=app.handler_map[source.name],
                           queue_name=name, queue_url=url, queue_arn=arn, batch_size=source.batch_size,
                           timeout_seconds=QUEUES[logical_queue].consumer_timeout_seconds)
    region = boto3.session.Session().region_name
    return QueueDrainer(QueueConsumer(binding, sqs, region, threading.Event(),
                                      poll_interval=0, retry_delay=0))


def expect(condition: bool, problem: str) -> str | None:
    return None if condition else problem


def verified(s: Scenario, openid: str, room: str, building: str) -> dict[str, Any]:
    s.login(openid)
    body = {**resident_body("订单居民", room), "building": building}
    resident = s.http("POST", "/v1/residents", openid, body)
    s.http("POST", f"/v1/admin/residents/{resident['id']}/verify", BENCH_ADMIN)
    s.login(openid)  # a fresh token after verification (the role/status may be cached)
    return resident


def outbox_mentions(s: Scenario, openid: str, text: str) -> bool:
    items = s.http("GET", f"/v1/admin/outbox?openid={openid}", BENCH_ADMIN)["items"]
    return any(text in json.dumps(item, ensure_ascii=False) for item in items)


def run_lifecycle(s: Scenario, drainers: dict[str, QueueDrainer]) -> None:
    s.login(BENCH_ADMIN)
    verified(s, REQUESTER, room="1101", building="10")
    volunteer = verified(s, VOLUNTEER, room="1102", building="11")
    s.http("PUT", "/v1/volunteers/me", VOLUNTEER,
           {"categories": [CATEGORY], "availability": [], "accepting": True})
    s.http("POST", "/v1/notifications/consents", VOLUNTEER, {"template": "match", "accepted": True})
    for drainer in drainers.values():  # messages of the other table's operations
        drainer.drain()

    need_body = {"category": CATEGORY, "title": "陪同就医", "description": "bench",
                 "duration_minutes": POSTED_MINUTES,
                 "start_at": (datetime.now(timezone(timedelta(hours=8))) + timedelta(days=2))
                 .replace(microsecond=0).isoformat()}
    need = s.measure("post (POST /v1/requests)", lambda: s.http(
        "POST", "/v1/requests", REQUESTER, need_body, idempotency_key="bench-order-1"),
        check=lambda r: expect(r["status"] == "open", f"status {r['status']}"))
    if not need:
        return
    request_path = f"/v1/requests/{need['id']}"

    def step(name: str, action: Callable[[], Any], check: Callable[[Any], str | None]) -> Any:
        return s.measure(name, action, check)

    step("matching consumer (1 message)", drainers["matching"].drain,
         lambda handled: expect(handled == 1, f"{handled} messages handled")
         or expect(outbox_mentions(s, VOLUNTEER, need["id"]), "no match notification in the outbox"))
    step("accept (POST …/accept)", lambda: s.http("POST", f"{request_path}/accept", VOLUNTEER),
         lambda r: expect(r["volunteer_id"] == volunteer["id"], "another volunteer"))
    step("insurance consumer (1 message)", drainers["insurance"].drain,
         lambda handled: expect(handled == 1, f"{handled} messages handled"))
    upload = step("evidence upload URL (POST …/evidence)", lambda: s.http(
        "POST", f"{request_path}/evidence", VOLUNTEER, {"content_type": "image/jpeg", "size": len(PHOTO)}),
        lambda r: expect(bool(r.get("key")), "no key"))
    if upload:
        # The phone PUTs the photo straight to S3: not the function's cost, not counted.
        import requests

        requests.put(upload["upload_url"], data=PHOTO, headers=upload["headers"]).raise_for_status()
    step("check-in with the evidence key", lambda: s.http(
        "POST", f"{request_path}/check-in", VOLUNTEER, {"evidence_key": (upload or {}).get("key")}),
        lambda r: expect(r["status"] == "in_service", f"status {r['status']}"))
    step(f"complete ({SERVED_MINUTES} min)", lambda: s.http(
        "POST", f"{request_path}/complete", VOLUNTEER, {"minutes": SERVED_MINUTES}),
        lambda r: expect(r["status"] == "completed", f"status {r['status']}"))
    step("confirm (settlement)", lambda: s.http(
        "POST", f"{request_path}/confirm", REQUESTER, {"rating": 5, "comment": "谢谢"}),
        lambda r: expect(r["status"] == "settled", f"status {r['status']}"))
