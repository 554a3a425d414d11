"""Queue consumers: what the SQS → Lambda event source mapping does, in a thread per handler.

Each ``@app.on_sqs_message`` handler gets batches of up to its ``batch_size`` (at most 10: one
ReceiveMessage) as Lambda-shaped events. As with ``ReportBatchItemFailures`` on AWS, the
messages the handler lists in ``batchItemFailures`` stay on the queue, the others are deleted;
a handler that raises, or reports an identifier that is not in the batch, fails the whole
batch. A failed message becomes visible again after ``retry_delay`` (locally short; on AWS the
queue's visibility timeout) and, once received ``maxReceiveCount`` times, SQS's redrive policy
moves it to the dead-letter queue — moto implements that redrive, so nothing here does.
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Callable

from chalice.app import SQSEventConfig

from local.lambda_events import lambda_context, sqs_event

log = logging.getLogger("local.consumers")

SQS_MAX_BATCH = 10
DEFAULT_CONSUMER_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class QueueBinding:
    handler_name: str
    handler: Callable[[dict, Any], Any]
    queue_name: str
    queue_url: str
    queue_arn: str
    batch_size: int
    timeout_seconds: float


def queue_name_of(source: SQSEventConfig) -> str:
    if source.queue:
        return source.queue
    assert source.queue_arn, "chalice requires queue or queue_arn"
    return source.queue_arn.rsplit(":", 1)[-1]


def failed_message_ids(result: Any, batch_ids: list[str]) -> set[str]:
    """The messages to keep, from the handler's partial batch response."""
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return set()
    failed = set()
    for item in result["batchItemFailures"]:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in batch_ids:
            # Lambda's rule: a malformed partial response fails the whole batch.
            log.error("malformed batchItemFailures entry %r: the whole batch is retried", item)
            return set(batch_ids)
        failed.add(identifier)
    return failed


class QueueConsumer:
    def __init__(self, binding: QueueBinding, sqs: Any, region: str, stop: threading.Event,
                 poll_interval: float, retry_delay: float):
        self.binding = binding
        self._sqs = sqs
        self._region = region
        self._stop = stop
        self._poll_interval = poll_interval
        self._retry_delay = max(0, math.ceil(retry_delay))
        self._thread = threading.Thread(target=self._run, name=f"sqs:{binding.handler_name}",
                                        daemon=True)
        self._wake = threading.Event()
        self.batches_handled = 0

    def wake(self) -> None:
        """A message was just sent to this queue: poll now instead of sleeping out the interval
        (the relay calls this through ``functions.adapters.sqs.published_listeners``)."""
        self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._wake.set()  # the stop flag is set: do not sleep out the poll interval
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                received = self.poll_once()
            except Exception:  # noqa: BLE001 — a consumer must outlive a bad poll
                if self._stop.is_set():
                    break
                log.exception("polling %s failed", self.binding.queue_name)
                received = 0
            # A full batch suggests more are waiting: poll again at once.
            if received < min(self.binding.batch_size, SQS_MAX_BATCH):
                self._wake.wait(self._poll_interval)
                self._wake.clear()

    def poll_once(self) -> int:
        """Receive one batch and hand it to the handler; returns how many messages came."""
        # Short polling: the moto server is single-threaded, a long poll would stall it.
        messages = self._sqs.receive_message(
            QueueUrl=self.binding.queue_url,
            MaxNumberOfMessages=min(self.binding.batch_size, SQS_MAX_BATCH),
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        self._deliver(messages)
        return len(messages)

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        binding = self.binding
        batch_ids = [m["MessageId"] for m in messages]
        event = sqs_event(messages, binding.queue_arn, self._region)
        context = lambda_context(binding.handler_name, binding.timeout_seconds)
        try:
            result = binding.handler(event, context)
        except Exception:  # noqa: BLE001 — Lambda's behaviour: the batch is retried
            log.exception("handler %s raised: %d message(s) will be retried",
                          binding.handler_name, len(messages))
            failed = set(batch_ids)
        else:
            failed = failed_message_ids(result, batch_ids)
        self.batches_handled += 1
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(QueueUrl=binding.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
        for message in messages:
            if message["MessageId"] in failed:
                self._sqs.change_message_visibility(
                    QueueUrl=binding.queue_url, ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=self._retry_delay)
        if not failed:
            log.info("%s: %d message(s) handled", binding.handler_name, len(messages))
        else:
            log.warning("%s: %d of %d message(s) failed (receive count %s)",
                        binding.handler_name, len(failed), len(messages),
                        ",".join(m.get("Attributes", {}).get("ApproximateReceiveCount", "?")
                                 for m in messages if m["MessageId"] in failed))
