"""Queues: the single registry of the product's SQS queues and the publisher adapter.

Queue handlers are declared in the app with ``@app.on_sqs_message(queue=queue_name(LOGICAL))``;
the local runtime, tests and infra/ create every queue in ``QUEUES`` (each with a dead-letter
queue) under the names ``queue_name`` gives, so code, local and deployed names agree.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from functions.core.settings import get_settings


@dataclass(frozen=True)
class QueueSpec:
    logical_name: str
    purpose: str
    consumer_timeout_seconds: int = 30  # the Lambda timeout of its consumer
    max_receive_count: int = 5          # then the message goes to the dead-letter queue
    batch_size: int = 10

    @property
    def visibility_timeout_seconds(self) -> int:
        # AWS guidance: at least 6x the consumer's timeout so retries don't overlap.
        return 6 * self.consumer_timeout_seconds


QUEUES: dict[str, QueueSpec] = {}


def register_queue(spec: QueueSpec) -> QueueSpec:
    QUEUES[spec.logical_name] = spec
    return spec


def queue_name(logical_name: str) -> str:
    return f"{get_settings().resource_prefix}-{logical_name}"


def dead_letter_queue_name(logical_name: str) -> str:
    return f"{queue_name(logical_name)}-dlq"


class Publisher(Protocol):
    def publish(self, logical_queue: str, message: dict[str, Any],
                deduplication_id: str | None = None) -> None: ...


class SqsPublisher:
    """Publishes JSON messages to this community's queues (moto locally, SQS deployed)."""

    def __init__(self, client: Any | None = None):
        self._client = client
        self._urls: dict[str, str] = {}

    def _sqs(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def _url(self, logical_queue: str) -> str:
        if logical_queue not in self._urls:
            configured = get_settings().queue_urls.get(logical_queue.replace("-", "_"))
            self._urls[logical_queue] = configured or self._sqs().get_queue_url(
                QueueName=queue_name(logical_queue))["QueueUrl"]
        return self._urls[logical_queue]

    def publish(self, logical_queue: str, message: dict[str, Any],
                deduplication_id: str | None = None) -> None:
        if logical_queue not in QUEUES:
            raise KeyError(f"unknown queue {logical_queue}")
        attributes = {}
        if deduplication_id:
            # Consumers dedupe on this id: SQS standard queues deliver at least once.
            attributes["dedup_id"] = {"DataType": "String", "StringValue": deduplication_id}
        self._sqs().send_message(QueueUrl=self._url(logical_queue),
                                 MessageBody=json.dumps(message, ensure_ascii=False),
                                 MessageAttributes=attributes)


class InMemoryPublisher:
    """For domain tests: records what would have been published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], str | None]] = []

    def publish(self, logical_queue: str, message: dict[str, Any],
                deduplication_id: str | None = None) -> None:
        self.sent.append((logical_queue, message, deduplication_id))

