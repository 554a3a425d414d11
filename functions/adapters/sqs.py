"""Publishing to this community's SQS queues (moto locally, SQS deployed)."""
from __future__ import annotations

import json
from typing import Any, Callable

from functions.core.messaging import QUEUES, queue_name
from functions.core.settings import get_settings

# Called with the logical queue after every successful send. The local runtime registers one
# to wake that queue's consumer at once instead of letting it sleep out its poll interval;
# deployed, the list is empty (SQS and the event source mapping do the waking).
published_listeners: list[Callable[[str], None]] = []


class SqsPublisher:
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
        for listener in list(published_listeners):
            listener(logical_queue)
