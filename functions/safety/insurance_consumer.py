"""The ``insurance`` queue consumer: Lambda SQS event in, partial batch response out.

Failure policy: a record that cannot be processed — malformed body, unknown request id, a
request that was never accepted, a storage error — is reported in ``batchItemFailures`` while
the rest of the batch succeeds. SQS makes it visible again and, after ``max_receive_count``
(5) receives, its redrive policy moves it to the dead-letter queue, where it stays 14 days for
an operator (and its alarm) instead of being retried forever or silently dropped. A duplicate
delivery is not a failure: the record exists already and nothing more is written.
Log lines carry the message id and the error class only, never the body.
"""
from __future__ import annotations

from typing import Any

from functions.core.queue_consumer import process_queue_batch
from functions.safety.insurance import InsuranceRegister, get_insurance_register, parse_message


def handle_insurance_batch(event: dict[str, Any], context: Any = None,
                           register: InsuranceRegister | None = None) -> dict[str, Any]:
    register = register or get_insurance_register()
    return process_queue_batch(event, context, "insurance", lambda message: register.handle(parse_message(message)))
