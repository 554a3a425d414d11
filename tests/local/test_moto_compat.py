"""local/moto_compat.py keeps moto's all-or-nothing TransactWriteItems and stops moto's memory
from growing with history.

The behaviour tests run twice, on the layer and on moto as shipped: the layer must be
indistinguishable from moto wherever moto is right.
"""
from __future__ import annotations

import gc
from typing import Any, Iterator

import boto3
import moto
import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from moto import mock_aws

from local import moto_compat

REGION = "cn-north-1"
ORDERS, ACCOUNTS = "compat-orders", "compat-accounts"


@pytest.fixture
def restore_layer() -> Iterator[None]:
    """Tests switch the process-wide layer; the next test gets the state it had."""
    was_installed = moto_compat.is_installed()
    yield
    if was_installed:
        moto_compat.install()
    else:
        moto_compat.uninstall()


@pytest.fixture(params=["compat", "stock"])
def mode(request, restore_layer) -> str:
    if request.param == "compat":
        moto_compat.install()
    else:
        moto_compat.uninstall()
    return request.param


@pytest.fixture
def ddb(mode) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName=ORDERS, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in
                                  (("pk", "S"), ("sk", "S"), ("status", "S"), ("created", "N"))],
            GlobalSecondaryIndexes=[{
                "IndexName": "by_status", "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"},
                              {"AttributeName": "created", "KeyType": "RANGE"}]}])
        client.create_table(
            TableName=ACCOUNTS, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                                  {"AttributeName": "owner", "AttributeType": "S"}],
            GlobalSecondaryIndexes=[{
                "IndexName": "by_owner", "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}]}])
        for item in SEED_ORDERS:
            client.put_item(TableName=ORDERS, Item=item)
        for item in SEED_ACCOUNTS:
            client.put_item(TableName=ACCOUNTS, Item=item)
        yield client


def S(v: str) -> dict:
    return {"S": v}


def N(v: int) -> dict:
    return {"N": str(v)}


SEED_ORDERS = [
    {"pk": S("h1"), "sk": S("a"), "status": S("open"), "created": N(1), "note": S("keep"),
     "counter": N(5), "tags": {"SS": ["x", "y"]}, "nested": {"M": {"k": {"L": [N(1), S("v")]}}}},
    {"pk": S("h1"), "sk": S("b"), "status": S("open"), "created": N(2)},
    {"pk": S("h2"), "sk": S("a"), "status": S("done"), "created": N(3)},
]
SEED_ACCOUNTS = [
    {"id": S("acc-1"), "owner": S("o1"), "balance": N(100)},
    {"id": S("acc-2"), "owner": S("o2"), "balance": N(50)},
]

# Seven writes over two tables: new items (also under a new partition key), an update that
# moves an item to another GSI partition, deletes, a conditional arithmetic update.
WRITES = [
    {"Put": {"TableName": ORDERS, "ConditionExpression": "attribute_not_exists(pk)",
             "Item": {"pk": S("h1"), "sk": S("c"), "status": S("open"), "created": N(4)}}},
    {"Update": {"TableName": ORDERS, "Key": {"pk": S("h1"), "sk": S("a")},
                "UpdateExpression": "SET #s = :done, note = :n ADD #c :one REMOVE tags",
                "ExpressionAttributeNames": {"#s": "status", "#c": "counter"},
                "ExpressionAttributeValues": {":done": S("done"), ":n": S("changed"), ":one": N(1)}}},
    {"Delete": {"TableName": ORDERS, "Key": {"pk": S("h2"), "sk": S("a")}}},
    {"Put": {"TableName": ORDERS,
             "Item": {"pk": S("h3"), "sk": S("z"), "status": S("open"), "created": N(9)}}},
    {"Update": {"TableName": ACCOUNTS, "Key": {"id": S("acc-1")},
                "UpdateExpression": "SET balance = balance - :ten",
                "ConditionExpression": "balance >= :ten",
                "ExpressionAttributeValues": {":ten": N(10)}}},
    {"Put": {"TableName": ACCOUNTS, "Item": {"id": S("acc-3"), "owner": S("o1"), "balance": N(0)}}},
    {"Delete": {"TableName": ACCOUNTS, "Key": {"id": S("acc-2")},
                "ConditionExpression": "attribute_exists(id)"}},
]

FAILING = {
    "condition-check": {"ConditionCheck": {"TableName": ACCOUNTS, "Key": {"id": S("acc-9")},
                                           "ConditionExpression": "attribute_exists(id)"}},
    "put-condition": {"Put": {"TableName": ORDERS, "ConditionExpression": "attribute_exists(pk)",
                              "Item": {"pk": S("h9"), "sk": S("q"), "status": S("open"),
                                       "created": N(7)}}},
    "update-condition": {"Update": {"TableName": ORDERS, "Key": {"pk": S("h1"), "sk": S("b")},
                                    "UpdateExpression": "SET #s = :x",
                                    "ConditionExpression": "#s = :closed",
                                    "ExpressionAttributeNames": {"#s": "status"},
                                    "ExpressionAttributeValues": {":x": S("x"), ":closed": S("closed")}}},
    "delete-condition": {"Delete": {"TableName": ACCOUNTS, "Key": {"id": S("acc-8")},
                                    "ConditionExpression": "attribute_exists(id)"}},
}

_plain = TypeDeserializer()


def plain(item: dict) -> dict:
    return {k: _plain.deserialize(v) for k, v in item.items()}


def world(client: Any) -> dict[str, Any]:
    """Everything a reader could see: both tables, and both GSIs through Query."""
    def sort(items: list[dict]) -> list[dict]:
        return sorted((plain(i) for i in items), key=repr)

    def query(table: str, index: str, name: str, value: str) -> list[dict]:
        return sort(client.query(TableName=table, IndexName=index,
                                 KeyConditionExpression="#k = :v",
                                 ExpressionAttributeNames={"#k": name},
                                 ExpressionAttributeValues={":v": S(value)})["Items"])

    return {
        "orders": sort(client.scan(TableName=ORDERS)["Items"]),
        "accounts": sort(client.scan(TableName=ACCOUNTS)["Items"]),
        "orders h1": sort(client.query(TableName=ORDERS, KeyConditionExpression="pk = :h",
                                       ExpressionAttributeValues={":h": S("h1")})["Items"]),
        **{f"status {s}": query(ORDERS, "by_status", "status", s) for s in ("open", "done")},
        **{f"owner {o}": query(ACCOUNTS, "by_owner", "owner", o) for o in ("o1", "o2")},
        "count": (client.scan(TableName=ORDERS, Select="COUNT")["Count"],
                  client.scan(TableName=ACCOUNTS, Select="COUNT")["Count"]),
    }


def get(client: Any, table: str, **key: str) -> dict | None:
    found = client.get_item(TableName=table, Key={k: S(v) for k, v in key.items()},
                            ConsistentRead=True).get("Item")
    return plain(found) if found else None


def cancelled(client: Any, items: list[dict]) -> list[str]:
    with pytest.raises(ClientError) as raised:
        client.transact_write_items(TransactItems=items)
    error = raised.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException", error
    return [r["Code"] for r in error["CancellationReasons"]]


@pytest.mark.parametrize("position", ["first", "middle", "last"])
@pytest.mark.parametrize("failure", sorted(FAILING))
def test_a_failing_item_leaves_every_write_of_the_transaction_unapplied(ddb, failure, position):
    before = world(ddb)
    at = {"first": 0, "middle": 3, "last": len(WRITES)}[position]
    items = [*WRITES[:at], FAILING[failure], *WRITES[at:]]

    reasons = cancelled(ddb, items)

    assert reasons == ["ConditionalCheckFailed" if i == at else "None" for i in range(len(items))]
    assert world(ddb) == before
    # An updated item has exactly its previous attributes (set, map, number, the GSI key) …
    assert get(ddb, ORDERS, pk="h1", sk="a") == plain(SEED_ORDERS[0])
    assert get(ddb, ACCOUNTS, id="acc-1") == plain(SEED_ACCOUNTS[0])
    # … a put item is absent again, also under a partition key that did not exist …
    assert get(ddb, ORDERS, pk="h1", sk="c") is None
    assert get(ddb, ORDERS, pk="h3", sk="z") is None
    assert get(ddb, ACCOUNTS, id="acc-3") is None
    # … and a deleted item is present again.
    assert get(ddb, ORDERS, pk="h2", sk="a") == plain(SEED_ORDERS[2])
    assert get(ddb, ACCOUNTS, id="acc-2") == plain(SEED_ACCOUNTS[1])


def test_a_successful_transaction_applies_everything_and_its_replay_changes_nothing(ddb):
    ddb.transact_write_items(TransactItems=WRITES)
    after = world(ddb)
    assert get(ddb, ORDERS, pk="h1", sk="a") == {
        "pk": "h1", "sk": "a", "status": "done", "created": 1, "note": "changed", "counter": 6,
        "nested": {"k": [1, "v"]}}
    assert get(ddb, ORDERS, pk="h1", sk="c") is not None and get(ddb, ORDERS, pk="h3", sk="z") is not None
    assert get(ddb, ORDERS, pk="h2", sk="a") is None and get(ddb, ACCOUNTS, id="acc-2") is None
    assert get(ddb, ACCOUNTS, id="acc-1")["balance"] == 90
    assert [i["sk"] for i in after["status done"]] == ["a"]   # moved from "open" to "done" in the GSI
    assert [i["id"] for i in after["owner o1"]] == ["acc-1", "acc-3"]

    # The product's replay: the same transaction again is refused by its first conditional put
    # and must not apply the rest (the balance is not charged twice).
    assert cancelled(ddb, WRITES)[0] == "ConditionalCheckFailed"
    assert world(ddb) == after


def test_two_operations_on_one_item_are_refused_and_nothing_is_applied(ddb):
    before = world(ddb)
    items = [WRITES[0], WRITES[4], {"Update": {
        "TableName": ORDERS, "Key": {"pk": S("h1"), "sk": S("c")},
        "UpdateExpression": "SET note = :n", "ExpressionAttributeValues": {":n": S("again")}}}]
    with pytest.raises(ClientError) as raised:
        ddb.transact_write_items(TransactItems=items)
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert world(ddb) == before


def test_a_malformed_item_after_good_ones_applies_nothing(ddb, mode, request):
    if mode == "stock":
        # Strict: the day moto rolls this back itself, the test passes, the run fails, and the
        # compatibility layer's part for it can go.
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="moto 5.2.5 raises TransactWriteSingleOpException without rolling back "
                                "(part of the upstream issue in local/moto_compat.py)"))
    before = world(ddb)
    two_ops = {"Put": WRITES[5]["Put"], "Delete": {"TableName": ACCOUNTS, "Key": {"id": S("acc-1")}}}
    with pytest.raises(ClientError):
        ddb.transact_write_items(TransactItems=[*WRITES[:5], two_ops])
    assert world(ddb) == before


# --- history is not retained ---------------------------------------------------------------

TABLE_ITEMS = 200
TRANSACTIONS = 30


def live(cls: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is cls)


def transactions_on_a_full_table(client: Any) -> None:
    """Each one updates three of the table's items; every other one is cancelled."""
    for n in range(TRANSACTIONS):
        items = [{"Update": {"TableName": ORDERS, "Key": {"pk": S(f"p{(n + k) % TABLE_ITEMS}"), "sk": S("s")},
                             "UpdateExpression": "ADD hits :one",
                             "ExpressionAttributeValues": {":one": N(1)}}} for k in range(3)]
        if n % 2:
            items.append(FAILING["condition-check"])
            cancelled(client, items)
        else:
            client.transact_write_items(TransactItems=items)


def fill(client: Any) -> None:
    for start in range(0, TABLE_ITEMS, 25):
        client.batch_write_item(RequestItems={ORDERS: [
            {"PutRequest": {"Item": {"pk": S(f"p{i}"), "sk": S("s"), "status": S("open"),
                                     "created": N(i)}}}
            for i in range(start, start + 25)]})


def test_equal_batches_of_transactions_leave_the_same_objects_alive(ddb, mode):
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    fill(ddb)
    stored = TABLE_ITEMS + len(SEED_ORDERS) + len(SEED_ACCOUNTS)
    tracked_before = len(Item.instances_tracked), len(Table.instances_tracked)
    transactions_on_a_full_table(ddb)
    first = live(Item), live(Table), len(Item.instances_tracked), len(Table.instances_tracked)
    transactions_on_a_full_table(ddb)
    second = live(Item), live(Table), len(Item.instances_tracked), len(Table.instances_tracked)

    if mode == "compat":
        # Alive: the stored items and the two tables, nothing else; nothing is tracked.
        assert first == second == (stored, 2, *tracked_before)
    else:
        # What the layer removes, measured the same way: every transaction item copies the
        # whole table, and every copy stays in the class-level lists.
        grown = second[2] - first[2]
        assert grown >= TRANSACTIONS * 3 * TABLE_ITEMS
        assert second[3] - first[3] >= TRANSACTIONS * 3
        assert second[0] - first[0] >= TRANSACTIONS * 3 * TABLE_ITEMS


def test_updates_outside_transactions_do_not_pile_up_either(ddb, mode):
    from moto.dynamodb.models.dynamo_type import Item

    def updates() -> None:
        for n in range(50):
            ddb.update_item(TableName=ACCOUNTS, Key={"id": S("acc-1")},
                            UpdateExpression="ADD hits :one", ExpressionAttributeValues={":one": N(1)})
            ddb.query(TableName=ORDERS, KeyConditionExpression="pk = :h",
                      ExpressionAttributeValues={":h": S("h1")})

    updates()
    first = live(Item)
    updates()
    if mode == "compat":
        assert live(Item) == first
    else:
        # update_item's copy of the old item and the query's result copies: 3 per round
        assert live(Item) - first >= 50 * 3


# --- the guard -----------------------------------------------------------------------------

def test_the_pinned_moto_is_what_the_layer_expects():
    moto_compat.check_compatible()
    assert moto.__version__ == moto_compat.EXPECTED_MOTO_VERSION


# monkeypatch.context(): undone inside the test, before restore_layer installs the layer again.

def test_another_moto_version_is_refused_before_anything_is_patched(monkeypatch, restore_layer):
    from moto.core.common_models import BaseModel
    from moto.dynamodb.models import DynamoDBBackend

    moto_compat.uninstall()
    shipped = BaseModel.__dict__["__new__"], DynamoDBBackend.__dict__["transact_write_items"]
    with monkeypatch.context() as patched:
        patched.setattr(moto, "__version__", "5.3.0")
        with pytest.raises(moto_compat.MotoCompatError, match=r"moto 5\.2\.5 and moto 5\.3\.0"):
            moto_compat.install()
    assert not moto_compat.is_installed()
    assert (BaseModel.__dict__["__new__"], DynamoDBBackend.__dict__["transact_write_items"]) == shipped


def test_changed_moto_internals_are_named_and_refused(monkeypatch, restore_layer):
    moto_compat.uninstall()
    name = "moto.dynamodb.models:DynamoDBBackend.transact_write_items"
    with monkeypatch.context() as patched:
        patched.setitem(moto_compat.FINGERPRINTS, name, "0" * 64)
        with pytest.raises(moto_compat.MotoCompatError, match="transact_write_items"):
            moto_compat.install()
    assert not moto_compat.is_installed()


def test_fingerprints_read_moto_itself_while_installed(restore_layer):
    moto_compat.install()
    assert moto_compat.current_fingerprints() == moto_compat.FINGERPRINTS


@pytest.mark.parametrize("value, disabled", [("off", True), ("0", True), ("false", True),
                                             ("", False), ("on", False), ("1", False)])
def test_the_environment_switch(value, disabled):
    assert moto_compat.disabled_by_environment({moto_compat.DISABLE_ENV: value}) is disabled


# --- who installs it -----------------------------------------------------------------------

def test_the_suite_runs_on_the_layer():
    # tests/conftest.py installs it unless the run asked for moto as shipped.
    assert moto_compat.is_installed() or moto_compat.disabled_by_environment()


@pytest.mark.parametrize("switch, expected", [("", True), ("off", False)])
def test_the_make_run_moto_server_installs_it(monkeypatch, restore_layer, switch, expected):
    from local.moto_server import SerializedMotoServer

    moto_compat.uninstall()
    with monkeypatch.context() as patched:
        patched.setenv(moto_compat.DISABLE_ENV, switch)
        server = SerializedMotoServer("127.0.0.1", 0)
        server.start()
        try:
            assert server.compat_layer is expected and moto_compat.is_installed() is expected
        finally:
            server.stop()
