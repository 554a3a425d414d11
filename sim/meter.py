"""What the simulation counts, per business operation: the billing meter's DynamoDB tally
(``bench.ddb_counter``), SQS and S3 calls, HTTP calls (= API Gateway requests and Lambda
invocations), queue batches (invocations of consumers), schedule runs, log bytes and the wall
time spent (mostly moto's)."""
from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from bench.ddb_counter import DynamoDBCounter, Tally

CHECK = "check (simulation's own reads, not traffic)"


class FastImageCounter(DynamoDBCounter):
    """The billing meter, reading the item images it sizes straight from moto's in-process
    backend instead of through a second (uncounted) boto3 client: the same items, sized by the
    same rules, without serialising every write's before/after twice more."""

    def _image(self, client: Any, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends
        from moto.dynamodb.models.dynamo_type import DynamoType

        try:
            stored = dynamodb_backends[DEFAULT_ACCOUNT_ID][client.meta.region_name].get_table(table)
            hash_key = DynamoType(key[stored.hash_key_attr])
            range_key = DynamoType(key[stored.range_key_attr]) if stored.range_key_attr else None
            item = stored.get_item(hash_key, range_key)
        except Exception:  # noqa: BLE001 — a table or key that is not there: nothing to size
            return None
        return item.to_json()["Attributes"] if item is not None else None


@dataclass
class OpFigures:
    count: int = 0                 # business operations of this kind
    http: int = 0                  # API Gateway requests = API Lambda invocations
    batches: int = 0               # queue consumer invocations
    messages: int = 0              # messages those batches handled
    receives: int = 0              # ReceiveMessage calls of the event source mapping (non-empty)
    schedule_runs: int = 0
    log_bytes: int = 0
    seconds: float = 0.0
    tally: Tally = field(default_factory=Tally)

    def add(self, other: "OpFigures") -> None:
        self.count += other.count
        self.http += other.http
        self.batches += other.batches
        self.messages += other.messages
        self.receives += other.receives
        self.schedule_runs += other.schedule_runs
        self.log_bytes += other.log_bytes
        self.seconds += other.seconds
        self.tally = self.tally + other.tally

    def to_json(self) -> dict[str, Any]:
        t = self.tally
        return {"count": self.count, "http": self.http, "batches": self.batches, "messages": self.messages,
                "receives": self.receives, "schedule_runs": self.schedule_runs, "log_bytes": self.log_bytes,
                "seconds": round(self.seconds, 3),
                "ddb": {"calls": dict(t.calls), "errors": dict(t.errors), "items_read": t.items_read,
                        "items_written": t.items_written, "wru_base": t.wru_base, "wru_gsi": t.wru_gsi,
                        "rru": t.rru, "wru_by_table": dict(t.wru_by_table), "rru_by_table": dict(t.rru_by_table)},
                "services": dict(t.service_calls)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "OpFigures":
        d = data["ddb"]
        tally = Tally(Counter(d["calls"]), Counter(d["errors"]), d["items_read"], d["items_written"],
                      Counter(data["services"]), d["wru_base"], d["wru_gsi"], d["rru"],
                      Counter(d["wru_by_table"]), Counter(d["rru_by_table"]))
        return cls(data["count"], data["http"], data["batches"], data["messages"], data["receives"],
                   data["schedule_runs"], data["log_bytes"], data["seconds"], tally)


class LogSink:
    """Where the app's structured log lines go: counted (CloudWatch Logs ingestion), not kept."""

    def __init__(self, meter: "Meter"):
        self.meter = meter

    def write(self, text: str) -> int:
        self.meter.current.log_bytes += len(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        pass


class Meter:
    def __init__(self, counter: DynamoDBCounter):
        self.counter = counter
        self.ops: dict[str, OpFigures] = {}
        self.current = OpFigures()   # what the operation under way has done so far

    @contextmanager
    def op(self, name: str) -> Iterator[OpFigures]:
        """Everything done inside (HTTP, batches, schedule runs) is the operation ``name``'s."""
        outer, self.current = self.current, OpFigures(count=1)
        before = self.counter.snapshot()
        started = time.perf_counter()
        try:
            yield self.current
        finally:
            figures = self.current
            figures.seconds = time.perf_counter() - started
            figures.tally = self.counter.snapshot() - before
            self.current = outer
            self.ops.setdefault(name, OpFigures()).add(figures)
