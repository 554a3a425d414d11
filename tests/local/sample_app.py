"""A tiny Chalice app with one queue handler and one schedule, to test the runtime generically.

Built by a factory so its test-only queue is registered in ``QUEUES`` only while a test runs.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from chalice import Chalice

from functions.core.messaging import QueueSpec, queue_name

SAMPLE_QUEUE = QueueSpec("local-runtime-sample", "test-only queue of the local runtime tests",
                         consumer_timeout_seconds=5, max_receive_count=2, batch_size=5)


@dataclass
class Recorder:
    sqs_events: list[dict[str, Any]] = field(default_factory=list)
    scheduled_events: list[dict[str, Any]] = field(default_factory=list)
    handled_bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies_seen(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for e in self.sqs_events for r in e["Records"]]


def build_sample_app(recorder: Recorder) -> Chalice:
    app = Chalice(app_name="local-runtime-sample", configure_logs=False)
    processor = BatchProcessor(event_type=EventType.SQS)

    def handle_record(record: Any) -> None:
        body = json.loads(record.body)
        if body.get("fail"):
            raise ValueError("told to fail")
        with recorder.lock:
            recorder.handled_bodies.append(body)

    @app.on_sqs_message(queue=queue_name(SAMPLE_QUEUE.logical_name),
                        batch_size=SAMPLE_QUEUE.batch_size)
    def consume_sample(event: Any) -> dict:
        raw = event.to_dict()
        with recorder.lock:
            recorder.sqs_events.append(raw)
        if any(json.loads(r["body"]).get("raise_batch") for r in raw["Records"]):
            raise RuntimeError("the handler itself fails")
        return process_partial_response(event=raw, record_handler=handle_record,
                                        processor=processor)

    @app.schedule("rate(1 hour)")
    def hourly_sample(event: Any) -> None:
        with recorder.lock:
            recorder.scheduled_events.append(event.to_dict())

    return app
