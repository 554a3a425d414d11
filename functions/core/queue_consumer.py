"""The one way a queue consumer runs: a Lambda SQS event in, a partial batch response out.

Each record's JSON body goes to ``handle``; a record that raises is reported in
``batchItemFailures`` (SQS retries it, and after the queue's maxReceiveCount its redrive policy
moves it to the dead-letter queue) while the rest of the batch succeeds. Handlers must make a
duplicate delivery harmless (SQS delivers at least once). Logs carry the message id and the
error class only, never the body (it may name residents).

powertools' batch utility (and the asyncio and event classes it brings) is imported on the
first batch, not when the HTTP function starts: only queue functions need it.
"""
from __future__ import annotations

from typing import Any, Callable

from functions.core.messaging import PoisonMessage, parse_json_object
from functions.core.observability import logger

__all__ = ["PoisonMessage", "process_queue_batch"]


def process_queue_batch(event: dict[str, Any], context: Any, queue: str,
                        handle: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    def record_handler(record: Any) -> None:
        try:
            handle(parse_json_object(record.body))
        except Exception as error:
            logger.warning(f"{queue} message failed", extra={
                "message_id": record.message_id, "error": type(error).__name__,
                "receive_count": record.attributes.approximate_receive_count})
            raise

    # Reporting (not raising) when every record failed: the effect on SQS is the same, and the
    # invocation is not counted as a Lambda error on top of the per-message failures.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
