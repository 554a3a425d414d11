"""The single source of table definitions.

Every PynamoDB model registers itself here with ``@table``. Tests (moto), the local runtime
and infra/ (CloudFormation) all create tables from ``table_definitions()`` so the key schema
and indexes the code queries are the ones that get deployed.

Table names are per community and fixed at import time: package and run one community per
process (Chalice caches the imported app).
"""
from __future__ import annotations

import os
from typing import Any, Iterable, TypeVar

from pynamodb.connection import Connection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from functions.core.settings import get_settings

M = TypeVar("M", bound=type[Model])

_TABLES: dict[str, type[Model]] = {}


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "cn-north-1"


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


def table(model: M) -> M:
    """Class decorator: register a model as a table of the product."""
    logical = model.Meta.logical_name  # type: ignore[attr-defined]
    if logical in _TABLES and _TABLES[logical] is not model:
        raise RuntimeError(f"table {logical} defined twice")
    _TABLES[logical] = model
    return model


def registered_models() -> list[type[Model]]:
    _import_all_models()
    return [model for _, model in sorted(_TABLES.items())]


def _import_all_models() -> None:
    # Importing the domain adapters registers their tables.
    from functions.app import app  # noqa: F401  (the app imports every domain)


def table_definitions() -> list[dict[str, Any]]:
    """boto3 ``create_table`` keyword arguments for every table, plus TTL attribute name."""
    out = []
    for model in registered_models():
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
    converted: dict[str, Any] = {
        # PynamoDB names the index's own fields in snake_case, their contents in boto3 case.
        "IndexName": index["index_name"],
        "KeySchema": _hash_first(index["key_schema"]),
        "Projection": dict(index["projection"]),
    }
    return converted


def create_tables(client: Any, names: Iterable[str] | None = None) -> None:
    """Create the tables on a boto3 DynamoDB client (moto in tests and ``make run``)."""
    wanted = set(names) if names else None
    existing = set(client.list_tables().get("TableNames", []))
    for definition in table_definitions():
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


_connection: Connection | None = None


def new_transaction() -> TransactWrite:
    """A PynamoDB ``TransactWrite`` on this community's region (the connection is reused)."""
    global _connection
    if _connection is None:
        _connection = Connection(region=region())
    return TransactWrite(connection=_connection)
