"""Count DynamoDB calls and items read/written, by hooking botocore's event system.

moto's ConsumedCapacity is a constant, so cost is measured by counting: every botocore client
created while the counter is installed gets two handlers —

- ``before-parameter-build.dynamodb`` sees the call's parameters (what a write sends),
- ``after-call.dynamodb`` sees the parsed response (what a read returned) —

and the counter tallies, per operation: GetItem 1 read; Query/Scan the items returned;
BatchGetItem the items returned; TransactGetItems its item count; PutItem/UpdateItem/DeleteItem
1 write; TransactWriteItems its item count (condition checks included: DynamoDB bills them as
writes); BatchWriteItem its requests minus the unprocessed ones. Failed calls (a condition that
did not hold, a cancelled transaction) are counted as calls and as ``errors``, with the items
they sent: DynamoDB bills rejected writes too.

SQS and S3 calls are counted too, by operation only (``after-call.sqs`` / ``after-call.s3``):
``Tally.service_calls`` holds e.g. ``sqs.SendMessage``. Presigning an S3 URL or POST form is
local signing, not a call, so it does not appear there.

PynamoDB keeps one botocore session per thread and creates its client lazily, so the counter
wraps ``botocore.session.Session.create_client`` rather than registering on one session.
Install the counter before the first DynamoDB call of the process (or call
``forget_cached_clients`` first), so no client escapes it.
"""
from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import botocore.session

READ_ONE = {"GetItem"}
OTHER_COUNTED_SERVICES = ("sqs", "s3")
WRITE_ONE = {"PutItem", "UpdateItem", "DeleteItem"}


@dataclass
class Tally:
    calls: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    items_read: int = 0
    items_written: int = 0
    service_calls: Counter = field(default_factory=Counter)  # "sqs.SendMessage": n (not DynamoDB)

    @property
    def total_calls(self) -> int:
        """DynamoDB calls."""
        return sum(self.calls.values())

    def calls_of(self, service: str) -> Counter:
        """``service``'s calls by operation name, e.g. ``calls_of("sqs")["SendMessage"]``."""
        prefix = f"{service}."
        return Counter({name[len(prefix):]: n for name, n in self.service_calls.items()
                        if name.startswith(prefix)})

    def __sub__(self, other: "Tally") -> "Tally":
        return Tally(self.calls - other.calls, self.errors - other.errors,
                     self.items_read - other.items_read, self.items_written - other.items_written,
                     self.service_calls - other.service_calls)

    def __add__(self, other: "Tally") -> "Tally":
        return Tally(self.calls + other.calls, self.errors + other.errors,
                     self.items_read + other.items_read, self.items_written + other.items_written,
                     self.service_calls + other.service_calls)

    def copy(self) -> "Tally":
        return Tally(Counter(self.calls), Counter(self.errors), self.items_read, self.items_written,
                     Counter(self.service_calls))


def items_written_by(operation: str, params: dict[str, Any]) -> int:
    if operation in WRITE_ONE:
        return 1
    if operation == "TransactWriteItems":
        return len(params.get("TransactItems", []))
    if operation == "BatchWriteItem":
        return sum(len(requests) for requests in params.get("RequestItems", {}).values())
    return 0


def items_read_by(operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> int:
    if operation in READ_ONE:
        return 1
    if operation in ("Query", "Scan"):
        return int(parsed.get("Count", len(parsed.get("Items", []))))
    if operation == "BatchGetItem":
        return sum(len(items) for items in parsed.get("Responses", {}).values())
    if operation == "TransactGetItems":
        return len(params.get("TransactItems", []))
    return 0


def _unprocessed_writes(parsed: dict[str, Any]) -> int:
    return sum(len(requests) for requests in parsed.get("UnprocessedItems", {}).values())


class DynamoDBCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tally = Tally()
        self.transaction_sizes: list[int] = []   # items of every TransactWriteItems, in order

    def snapshot(self) -> Tally:
        with self._lock:
            return self.tally.copy()

    @contextmanager
    def measure(self) -> Iterator[Tally]:
        """``with counter.measure() as spent:`` — ``spent`` holds the difference afterwards."""
        before = self.snapshot()
        result = Tally()
        yield result
        difference = self.snapshot() - before
        result.calls, result.errors = difference.calls, difference.errors
        result.items_read, result.items_written = difference.items_read, difference.items_written
        result.service_calls = difference.service_calls

    # botocore handlers ---------------------------------------------------------------------
    def _remember_params(self, params: dict[str, Any], model: Any, context: dict[str, Any],
                         **_: Any) -> None:
        context["timebank_bench_params"] = params

    def _count(self, http_response: Any, parsed: dict[str, Any], model: Any,
               context: dict[str, Any], **_: Any) -> None:
        operation = model.name
        params = context.get("timebank_bench_params", {})
        failed = http_response is not None and http_response.status_code >= 300
        with self._lock:
            self.tally.calls[operation] += 1
            if failed:
                self.tally.errors[operation] += 1
            else:
                self.tally.items_read += items_read_by(operation, params, parsed or {})
            written = items_written_by(operation, params)
            if operation == "TransactWriteItems":
                self.transaction_sizes.append(written)
            if operation == "BatchWriteItem" and not failed:
                written -= _unprocessed_writes(parsed or {})
            self.tally.items_written += written

    def _count_other(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.tally.service_calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def attach(self, client: Any) -> Any:
        service = client.meta.service_model.service_name
        if service == "dynamodb":
            client.meta.events.register("before-parameter-build.dynamodb", self._remember_params)
            client.meta.events.register("after-call.dynamodb", self._count)
        elif service in OTHER_COUNTED_SERVICES:
            client.meta.events.register(f"after-call.{service}", self._count_other)
        return client


@contextmanager
def counting_dynamodb() -> Iterator[DynamoDBCounter]:
    counter = DynamoDBCounter()
    original = botocore.session.Session.create_client

    def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
        return counter.attach(original(session, *args, **kwargs))

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        botocore.session.Session.create_client = original  # type: ignore[method-assign]


def forget_cached_clients() -> None:
    """Drop the botocore clients PynamoDB models cached, so the next call creates a counted one."""
    from functions.adapters.dynamo import registered_models

    for model in registered_models():
        model._connection = None
