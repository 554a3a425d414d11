"""Shared DynamoDB plumbing: the table registry and what every adapter needs once.

Every PynamoDB model registers itself with ``@table``; the composition root lists the modules
that define them (``functions.bootstrap.MODEL_MODULES``), and tests (moto), the local runtime
and infra/ (CloudFormation) all create tables from ``table_definitions()``, so the key schema
and indexes the code queries are the ones that get deployed.

Naming, the same in every domain: a model is ``<Thing>Item`` on the logical table
``<domain>-<things>`` (kebab-case); an index class is ``<Thing>By<Key>`` named ``by-<key>``.

Table names are per community and fixed at import time: package and run one community per
process (Chalice caches the imported app).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite as _PynamoTransactWrite

from functions.core import audit, clock
from functions.core.settings import get_settings, region
from functions.core.validation import field_error

M = TypeVar("M", bound=type[Model])
T = TypeVar("T")

_TABLES: dict[str, type[Model]] = {}
CONFLICT_RETRIES = 3


def make_meta(logical_name: str, ttl_attribute: str | None = None) -> type:
    """A PynamoDB ``Meta`` for a table of this community."""

    class Meta:
        table_name = get_settings().table_name(logical_name)
        billing_mode = "PAY_PER_REQUEST"
        # host None: botocore honours AWS_ENDPOINT_URL, which the local runtime sets.
        host = None

    Meta.region = region()  # type: ignore[attr-defined]
    Meta.logical_name = logical_name  # type: ignore[attr-defined]
    Meta.ttl_attribute = ttl_attribute  # type: ignore[attr-defined]
    return Meta


def index_meta(name: str, projection: str | Sequence[str] = "all") -> type:
    """An index's ``Meta``: ``projection`` is "all", "keys" or the attribute names to include."""

    class Meta:
        index_name = name

    if projection == "all":
        Meta.projection = AllProjection()  # type: ignore[attr-defined]
    elif projection == "keys":
        Meta.projection = KeysOnlyProjection()  # type: ignore[attr-defined]
    else:
        Meta.projection = IncludeProjection(list(projection))  # type: ignore[attr-defined]
    return Meta


def table(model: M) -> M:
    """Class decorator: register a model as a table of the product."""
    logical = model.Meta.logical_name  # type: ignore[attr-defined]
    if logical in _TABLES and _TABLES[logical] is not model:
        raise RuntimeError(f"table {logical} defined twice")
    _TABLES[logical] = model
    return model


def registered_models(modules: Iterable[str] | None = None) -> list[type[Model]]:
    """Every registered model, or those defined in ``modules`` (a stack's own tables)."""
    wanted = set(modules) if modules is not None else None
    return [model for _, model in sorted(_TABLES.items()) if wanted is None or model.__module__ in wanted]


def table_definitions(models: Iterable[type[Model]] | None = None) -> list[dict[str, Any]]:
    """boto3 ``create_table`` keyword arguments for every registered table, plus the logical
    name and TTL attribute (``functions.bootstrap.table_definitions`` imports the models first)."""
    out = []
    for model in (registered_models() if models is None else models):
        schema = model._get_schema()
        definition: dict[str, Any] = {
            "TableName": model.Meta.table_name,
            "LogicalName": model.Meta.logical_name,  # type: ignore[attr-defined]
            "AttributeDefinitions": sorted(schema["attribute_definitions"], key=lambda a: a["AttributeName"]),
            "KeySchema": _hash_first(schema["key_schema"]),
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveAttribute": model.Meta.ttl_attribute,  # type: ignore[attr-defined]
        }
        gsis = [_index(i) for i in schema["global_secondary_indexes"]]
        if gsis:
            definition["GlobalSecondaryIndexes"] = gsis
        out.append(definition)
    return out


def _hash_first(key_schema: list[dict[str, str]]) -> list[dict[str, str]]:
    # DynamoDB wants HASH before RANGE; PynamoDB lists attributes alphabetically.
    return sorted(({"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in key_schema),
                  key=lambda k: k["KeyType"] != "HASH")


def _index(index: dict[str, Any]) -> dict[str, Any]:
    return {
        # PynamoDB names the index's own fields in snake_case, their contents in boto3 case.
        "IndexName": index["index_name"],
        "KeySchema": _hash_first(index["key_schema"]),
        "Projection": dict(index["projection"]),
    }


def create_tables(client: Any, definitions: list[dict[str, Any]], names: Iterable[str] | None = None) -> None:
    """Create the tables on a boto3 DynamoDB client (moto in tests and ``make run``)."""
    wanted = set(names) if names else None
    existing = set(client.list_tables().get("TableNames", []))
    for definition in definitions:
        if wanted and definition["LogicalName"] not in wanted:
            continue
        if definition["TableName"] in existing:
            continue
        kwargs = {k: v for k, v in definition.items() if k not in ("LogicalName", "TimeToLiveAttribute")}
        client.create_table(**kwargs)
        if definition["TimeToLiveAttribute"]:
            client.update_time_to_live(
                TableName=definition["TableName"],
                TimeToLiveSpecification={"Enabled": True, "AttributeName": definition["TimeToLiveAttribute"]},
            )


# --- transactions -------------------------------------------------------------------------------

MAX_TRANSACTION_ITEMS = 100
_connection: Connection | None = None
# How an audit entry becomes a transaction item: installed by ``adapters.audit`` when it is
# imported (``core.web`` imports it through the composition root before an audited view runs).
_audit_update: Callable[[Any], dict[str, Any]] | None = None


def carry_audit_entries(build: Callable[[Any], dict[str, Any]] | None) -> None:
    global _audit_update
    _audit_update = build


class TransactWrite(_PynamoTransactWrite):
    """The product's ``TransactWriteItems``: the first one a request commits also carries the
    request's pending audit entry (``core.audit``), as its last item, so the entry and the
    change commit or are cancelled together. A transaction already at DynamoDB's 100 items
    leaves the entry to the lone write after the response."""

    carried_audit = False   # sent with the entry as its last item (cancellation reasons count it)

    def _commit(self) -> Any:
        entry = audit.pending()
        size = (len(self._condition_check_items) + len(self._delete_items) + len(self._put_items)
                + len(self._update_items))
        if entry is not None and _audit_update is not None and 0 < size < MAX_TRANSACTION_ITEMS:
            self._update_items.append(_audit_update(entry))
            self.carried_audit = True
        # Cancelled: the entry was not written either; a retry builds a new transaction.
        response = super()._commit()
        if self.carried_audit and entry is not None:
            entry.written = True
        return response


def new_transaction() -> TransactWrite:
    """A PynamoDB ``TransactWrite`` on this community's region (the connection is reused)."""
    global _connection
    if _connection is None:
        _connection = Connection(region=region())
    return TransactWrite(connection=_connection)


def commit(writes: Sequence[Any]) -> None:
    """One ``TransactWriteItems`` of writes that each ``add_to(transaction)``; a single write
    still goes through a transaction so its condition and its events commit together."""
    with new_transaction() as transaction:
        for write in writes:
            write.add_to(transaction)


@dataclass(frozen=True)
class Update:
    """One conditional update, as a write of a caller's transaction (``add_to``)."""
    item: Model
    actions: list[Any]
    condition: Any = None

    def add_to(self, transaction: TransactWrite) -> None:
        transaction.update(self.item, actions=self.actions, condition=self.condition)


@dataclass(frozen=True)
class Put:
    """One conditional put, as a write of a caller's transaction (``add_to``)."""
    item: Model
    condition: Any = None

    def add_to(self, transaction: TransactWrite) -> None:
        transaction.save(self.item, condition=self.condition)


def condition_failed(error: Exception) -> bool:
    """A single-item write refused by its condition."""
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def cancellation_codes(error: TransactWriteError) -> set[str]:
    return {reason.code for reason in (error.cancellation_reasons or []) if reason is not None}


def cancelled_by_condition(error: TransactWriteError) -> bool:
    """A transaction cancelled because one of its conditions failed (not a conflict)."""
    return "ConditionalCheckFailed" in cancellation_codes(error)


def only_conflicts(error: TransactWriteError) -> bool:
    """Cancelled only because another transaction touched the same items: nothing was written,
    and the same transaction may simply be sent again."""
    return cancellation_codes(error) == {"TransactionConflict"}


def retry_on_conflict(attempt: Callable[[], T], attempts: int = CONFLICT_RETRIES,
                      backoff_seconds: float = 0.02) -> T:
    """Run a transaction again while DynamoDB cancels it for conflicts only."""
    for number in range(attempts):
        try:
            return attempt()
        except TransactWriteError as error:
            if not only_conflicts(error) or number == attempts - 1:
                raise
            time.sleep(backoff_seconds * (number + 1))
    raise AssertionError("unreachable")  # pragma: no cover


# --- values ------------------------------------------------------------------------------------

def iso(value: datetime | None) -> str | None:
    """How times are stored: ISO-8601 in the community's zone, to the second."""
    return clock.isoformat(value) if value is not None else None


def dt(value: str | None) -> datetime | None:
    return clock.parse_iso(value) if value else None


def epoch(value: datetime) -> int:
    """TTL attributes are epoch seconds."""
    return int(value.timestamp())


def bad_cursor() -> Exception:
    return field_error("cursor", "不是本接口返回的翻页标记")


def checked_cursor(cursor: Mapping[str, Any] | None, key_names: Iterable[str],
                   fixed: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Only a last-evaluated key of the expected shape reaches DynamoDB: any other
    ExclusiveStartKey is a ValidationException there (a 500), not the caller's 400.
    ``fixed`` pins attributes to the partition being queried (a cursor of another list)."""
    if cursor is None:
        return None
    names = set(key_names)
    if set(cursor) != names or not all(
            isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) and v["S"]
            for v in cursor.values()):
        raise bad_cursor()
    for name, value in (fixed or {}).items():
        if cursor[name] != {"S": value}:
            raise bad_cursor()
    return dict(cursor)


__all__ = ["GlobalSecondaryIndex", "Model", "TransactWrite", "TransactWriteError"]
