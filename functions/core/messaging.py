"""Queues: the single registry of the product's SQS queues, which events each receives, and
the publisher port.

Each domain declares the queue its consumer reads next to that consumer (in its ``routes.py``)
with the event types it subscribes to; the relay (``functions/adapters/outbox.py``) publishes
every event to each subscribed queue. The local runtime, tests and infra/ create every queue in
``QUEUES`` (each with a dead-letter queue) under the names ``queue_name`` gives, so code, local
and deployed names agree.
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
    events: tuple[str, ...] = ()         # domain event types the relay delivers here
    consumer_timeout_seconds: int = 30   # the Lambda timeout of its consumer
    max_receive_count: int = 5           # then the message goes to the dead-letter queue
    batch_size: int = 10
    stack: str = "community"             # the stack that owns it: "community" or "hub"

    @property
    def name(self) -> str:
        return queue_name(self.logical_name)

    @property
    def visibility_timeout_seconds(self) -> int:
        # AWS guidance: at least 6x the consumer's timeout so retries don't overlap.
        return 6 * self.consumer_timeout_seconds


QUEUES: dict[str, QueueSpec] = {}


def register_queue(spec: QueueSpec) -> QueueSpec:
    existing = QUEUES.get(spec.logical_name)
    if existing is not None and existing != spec:
        raise RuntimeError(f"queue {spec.logical_name} declared twice")
    QUEUES[spec.logical_name] = spec
    return spec


def stack_queues(stack: str | None = None) -> dict[str, QueueSpec]:
    """The queues of one stack (default: this process's, ``settings.stack``): what it creates
    and what its relay may send to. A process that imported both apps (tests) still keeps them
    apart."""
    wanted = stack or get_settings().stack
    return {name: spec for name, spec in QUEUES.items() if spec.stack == wanted}


def subscribers(event_type: str) -> list[str]:
    """The logical queues of this stack an event of this type is delivered to."""
    return sorted(name for name, spec in stack_queues().items() if event_type in spec.events)


def queue_name(logical_name: str) -> str:
    return f"{get_settings().resource_prefix}-{logical_name}"


def dead_letter_queue_name(logical_name: str) -> str:
    return f"{queue_name(logical_name)}-dlq"


class Publisher(Protocol):
    def publish(self, logical_queue: str, message: dict[str, Any],
                deduplication_id: str | None = None) -> None: ...


class PoisonMessage(ValueError):
    """A message no retry can fix (malformed, unknown type, unknown subject): it ends in the DLQ."""


def parse_json_object(body: str) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (TypeError, ValueError, RecursionError):
        raise PoisonMessage("body is not JSON") from None
    if not isinstance(message, dict):
        raise PoisonMessage("body is not a JSON object")
    return message
