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

Capacity units, by DynamoDB's billing rules (``Tally.wru_base``, ``wru_gsi``, ``rru``; per
table in ``wru_by_table`` / ``rru_by_table``). moto reports a constant ConsumedCapacity, so the
meter computes them itself from item sizes (``item_size``: attribute names plus values, as
DynamoDB sizes them) read through a shadow client that is not counted:

- a standard write (Put/Update/Delete, a BatchWrite request) is 1 WRU per started KB of the
  larger of the item before and after; inside TransactWriteItems 2 WRU per KB per item
  (a ConditionCheck too, sized by the item it checks); a rejected write is billed the same;
- every secondary-index entry written or removed is 1 WRU per KB of the *projected* item
  (from the table's index definitions: KEYS_ONLY = table and index keys, INCLUDE = those plus
  the named attributes, ALL = the item): an item entering an index is one put, leaving it one
  delete, changing its index key a delete and a put, changing a projected attribute one update,
  and changing nothing the index projects costs nothing there. Index writes are never
  transactional (never doubled), and a rejected write writes no index;
- a strongly consistent read is 1 RRU per started 4 KB, an eventually consistent one half of
  that, a transactional one 2; GetItem and each BatchGet key are rounded per item (a missing
  item still costs the minimum), Query and Scan sum the sizes of the items returned and round
  once (an empty Query still costs the minimum).
"""
from __future__ import annotations

import base64
import math
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
    wru_base: float = 0
    wru_gsi: float = 0
    rru: float = 0
    wru_by_table: Counter = field(default_factory=Counter)  # logical table: base + index WRU
    rru_by_table: Counter = field(default_factory=Counter)
    gsi_by_index: Counter = field(default_factory=Counter)  # "table/index": WRU

    @property
    def wru(self) -> float:
        return self.wru_base + self.wru_gsi

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
                     self.service_calls - other.service_calls,
                     self.wru_base - other.wru_base, self.wru_gsi - other.wru_gsi, self.rru - other.rru,
                     _minus(self.wru_by_table, other.wru_by_table), _minus(self.rru_by_table, other.rru_by_table),
                     _minus(self.gsi_by_index, other.gsi_by_index))

    def __add__(self, other: "Tally") -> "Tally":
        return Tally(self.calls + other.calls, self.errors + other.errors,
                     self.items_read + other.items_read, self.items_written + other.items_written,
                     self.service_calls + other.service_calls,
                     self.wru_base + other.wru_base, self.wru_gsi + other.wru_gsi, self.rru + other.rru,
                     self.wru_by_table + other.wru_by_table, self.rru_by_table + other.rru_by_table,
                     self.gsi_by_index + other.gsi_by_index)

    def copy(self) -> "Tally":
        return Tally(Counter(self.calls), Counter(self.errors), self.items_read, self.items_written,
                     Counter(self.service_calls), self.wru_base, self.wru_gsi, self.rru,
                     Counter(self.wru_by_table), Counter(self.rru_by_table), Counter(self.gsi_by_index))


def _minus(a: Counter, b: Counter) -> Counter:
    # Counter's own ``-`` drops zero and negative counts; capacity differences are never negative.
    return Counter({k: a[k] - b.get(k, 0) for k in a if a[k] - b.get(k, 0)})


# --- DynamoDB's item size and capacity units ------------------------------------------------

KB = 1024
READ_UNIT = 4 * KB


def value_size(value: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value (low-level ``{"S": ...}`` form)."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode("utf-8"))
    if kind == "N":
        return number_size(v)
    if kind == "B":
        return len(_binary(v))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(x.encode("utf-8")) for x in v)
    if kind == "NS":
        return sum(number_size(x) for x in v)
    if kind == "BS":
        return sum(len(_binary(x)) for x in v)
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_size(x) for k, x in v.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def number_size(text: str) -> int:
    """About one byte per two significant digits, plus one (DynamoDB's documented rule)."""
    digits = text.lstrip("-").replace(".", "").lstrip("0").rstrip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def _binary(v: Any) -> bytes:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    try:
        return base64.b64decode(v)
    except Exception:  # noqa: BLE001 — an unencoded string: its own bytes
        return str(v).encode()


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / KB))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT))
    return units if consistent else units / 2


@dataclass(frozen=True)
class IndexShape:
    name: str
    keys: tuple[str, ...]            # the index's own key attributes
    projection: str                  # ALL, KEYS_ONLY or INCLUDE
    included: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableShape:
    keys: tuple[str, ...]
    indexes: tuple[IndexShape, ...]

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> "TableShape":
        keys = tuple(k["AttributeName"] for k in description["KeySchema"])
        indexes = []
        for index in [*description.get("GlobalSecondaryIndexes", []),
                      *description.get("LocalSecondaryIndexes", [])]:
            projection = index.get("Projection", {})
            indexes.append(IndexShape(index["IndexName"], tuple(k["AttributeName"] for k in index["KeySchema"]),
                                      projection.get("ProjectionType", "ALL"),
                                      tuple(projection.get("NonKeyAttributes", []))))
        return cls(keys, tuple(indexes))

    def projected(self, index: IndexShape, item: dict[str, Any] | None) -> dict[str, Any] | None:
        """The index's entry for ``item``, or None when the item lacks an index key (sparse)."""
        if not item or any(k not in item for k in index.keys):
            return None
        if index.projection == "ALL":
            return dict(item)
        names = {*self.keys, *index.keys, *(index.included if index.projection == "INCLUDE" else ())}
        return {k: v for k, v in item.items() if k in names}

    def index_writes(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, int]:
        """WRU per index for one item going from ``before`` to ``after``."""
        out = {}
        for index in self.indexes:
            old, new = self.projected(index, before), self.projected(index, after)
            if old is None and new is None:
                continue
            if old is None:
                units = write_units(item_size(new))
            elif new is None:
                units = write_units(item_size(old))
            elif any(old[k] != new[k] for k in index.keys):
                units = write_units(item_size(old)) + write_units(item_size(new))
            elif old != new:
                units = write_units(max(item_size(old), item_size(new)))
            else:
                continue
            out[index.name] = units
        return out


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
    def __init__(self, billing: bool = True, create_client: Any = None) -> None:
        self._lock = threading.Lock()
        self._hooks: list[tuple[Any, str, Any]] = []
        self.tally = Tally()
        self.transaction_sizes: list[int] = []   # items of every TransactWriteItems, in order
        self.billing = billing
        self._create_client = create_client or botocore.session.Session.create_client
        self._shadows: dict[tuple[Any, Any], Any] = {}
        self._shapes: dict[tuple[Any, str], TableShape] = {}

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
        for name in difference.__dataclass_fields__:
            setattr(result, name, getattr(difference, name))

    # the shadow client: images and table shapes, not counted ---------------------------------
    def _shadow(self, client: Any) -> Any:
        where = (client.meta.endpoint_url, client.meta.region_name)
        if where not in self._shadows:
            self._shadows[where] = self._create_client(
                botocore.session.Session(), "dynamodb", region_name=client.meta.region_name,
                endpoint_url=client.meta.endpoint_url)
        return self._shadows[where]

    def _shape(self, client: Any, table: str) -> TableShape:
        key = (client.meta.endpoint_url, table)
        if key not in self._shapes:
            description = self._shadow(client).describe_table(TableName=table)["Table"]
            self._shapes[key] = TableShape.from_description(description)
        return self._shapes[key]

    def _image(self, client: Any, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self._shadow(client).get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        except Exception:  # noqa: BLE001 — a table that is gone: nothing to size
            return None

    def _targets(self, client: Any, operation: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every item a write names: table, key, kind, the item sent (Put) and whether transactional."""
        out = []

        def add(table: str, kind: str, key: dict[str, Any] | None = None, item: dict[str, Any] | None = None,
                transactional: bool = False) -> None:
            if key is None and item is not None:
                key = {k: item[k] for k in self._shape(client, table).keys if k in item}
            out.append({"table": table, "kind": kind, "key": key, "item": item, "tx": transactional})

        if operation == "PutItem":
            add(params["TableName"], "Put", item=params.get("Item"))
        elif operation in ("UpdateItem", "DeleteItem"):
            add(params["TableName"], operation[:-4], key=params.get("Key"))
        elif operation == "TransactWriteItems":
            for action in params.get("TransactItems", []):
                (kind, body), = action.items()
                add(body["TableName"], kind, key=body.get("Key"), item=body.get("Item"), transactional=True)
        elif operation == "BatchWriteItem":
            for table, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    if "PutRequest" in request:
                        add(table, "Put", item=request["PutRequest"]["Item"])
                    else:
                        add(table, "Delete", key=request["DeleteRequest"]["Key"])
        return out

    # botocore handlers ---------------------------------------------------------------------
    def _remember_params(self, params: dict[str, Any], model: Any, context: dict[str, Any],
                         **_: Any) -> None:
        context["timebank_bench_params"] = params
        if self.billing and model.name in WRITE_ONE | {"TransactWriteItems", "BatchWriteItem"}:
            client = context.get("timebank_bench_client")
            if client is not None:
                targets = self._targets(client, model.name, params)
                for target in targets:
                    target["before"] = self._image(client, target["table"], target["key"])
                context["timebank_bench_targets"] = targets

    def _bill_writes(self, client: Any, targets: list[dict[str, Any]], failed: bool,
                     unprocessed: int, tally: Tally) -> None:
        for target in targets[:len(targets) - unprocessed] if unprocessed else targets:
            table, before = target["table"], target["before"]
            after = before if failed else (
                None if target["kind"] == "Delete" else
                before if target["kind"] == "ConditionCheck" else self._image(client, table, target["key"]))
            size = max(item_size(before), item_size(after),
                       item_size(target["item"]) if failed else 0)
            units = write_units(size) * (2 if target["tx"] else 1)
            logical = logical_table(table)
            tally.wru_base += units
            tally.wru_by_table[logical] += units
            if failed or target["kind"] == "ConditionCheck":
                continue
            for index, index_units in self._shape(client, table).index_writes(before, after).items():
                tally.wru_gsi += index_units
                tally.wru_by_table[logical] += index_units
                tally.gsi_by_index[f"{logical}/{index}"] += index_units

    def _bill_reads(self, operation: str, params: dict[str, Any], parsed: dict[str, Any], tally: Tally) -> None:
        units: list[tuple[str, float]] = []
        if operation == "GetItem":
            units.append((params["TableName"], read_units(item_size(parsed.get("Item")),
                                                          bool(params.get("ConsistentRead")))))
        elif operation in ("Query", "Scan"):
            size = sum(item_size(i) for i in parsed.get("Items", []))
            units.append((params["TableName"], read_units(size, bool(params.get("ConsistentRead")))))
        elif operation == "BatchGetItem":
            responses = parsed.get("Responses", {})
            for table, request in params.get("RequestItems", {}).items():
                unprocessed = len(parsed.get("UnprocessedKeys", {}).get(table, {}).get("Keys", []))
                returned = responses.get(table, [])
                missing = max(0, len(request.get("Keys", [])) - unprocessed - len(returned))
                consistent = bool(request.get("ConsistentRead"))
                for item in returned:
                    units.append((table, read_units(item_size(item), consistent)))
                units.extend((table, read_units(0, consistent)) for _ in range(missing))
        elif operation == "TransactGetItems":
            for action, response in zip(params.get("TransactItems", []), parsed.get("Responses", [])):
                units.append((action["Get"]["TableName"], 2 * read_units(item_size(response.get("Item")), True)))
        for table, n in units:
            tally.rru += n
            tally.rru_by_table[logical_table(table)] += n

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
                if self.billing:
                    self._bill_reads(operation, params, parsed or {}, self.tally)
            written = items_written_by(operation, params)
            if operation == "TransactWriteItems":
                self.transaction_sizes.append(written)
            unprocessed = 0
            if operation == "BatchWriteItem" and not failed:
                unprocessed = _unprocessed_writes(parsed or {})
                written -= unprocessed
            self.tally.items_written += written
            targets = context.get("timebank_bench_targets")
            client = context.get("timebank_bench_client")
            if targets is not None and client is not None:
                self._bill_writes(client, targets, failed, unprocessed, self.tally)

    def _count_other(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.tally.service_calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def attach(self, client: Any) -> Any:
        service = client.meta.service_model.service_name
        if service == "dynamodb":
            def remember_client(context: dict[str, Any], **_: Any) -> None:
                context["timebank_bench_client"] = client

            client.meta.events.register_first("before-parameter-build.dynamodb", remember_client)
            client.meta.events.register("before-parameter-build.dynamodb", self._remember_params)
            client.meta.events.register("after-call.dynamodb", self._count)
            self._hooks.extend([(client, "before-parameter-build.dynamodb", remember_client),
                                (client, "before-parameter-build.dynamodb", self._remember_params),
                                (client, "after-call.dynamodb", self._count)])
        elif service in OTHER_COUNTED_SERVICES:
            client.meta.events.register(f"after-call.{service}", self._count_other)
            self._hooks.append((client, f"after-call.{service}", self._count_other))
        return client

    def detach_all(self) -> None:
        """Unhook every client this counter attached: PynamoDB caches its clients across tests,
        and a hooked one would go on counting (and reading item images) after the block."""
        for client, event, handler in self._hooks:
            client.meta.events.unregister(event, handler)
        self._hooks.clear()


def logical_table(name: str) -> str:
    """``timebank-<community>-requests`` → ``requests`` (the table's logical name), else the name."""
    try:
        from functions.adapters.dynamo import registered_models

        for model in registered_models():
            if model.Meta.table_name == name:
                return model.Meta.logical_name  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 — outside the product (the counter's own tests)
        pass
    return name


@contextmanager
def counting_dynamodb(billing: bool = True) -> Iterator[DynamoDBCounter]:
    original = botocore.session.Session.create_client
    counter = DynamoDBCounter(billing=billing, create_client=original)

    def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
        return counter.attach(original(session, *args, **kwargs))

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        botocore.session.Session.create_client = original  # type: ignore[method-assign]
        counter.detach_all()


def forget_cached_clients() -> None:
    """Drop the botocore clients PynamoDB models cached, so the next call creates a counted one."""
    import functions.adapters.dynamo as dynamo

    for model in dynamo.registered_models():
        model._connection = None
    dynamo._connection = None  # the transactions' connection (new_transaction)
