"""The bench's DynamoDB counter: calls per operation and items read/written, on moto."""
from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from bench.ddb_counter import counting_dynamodb

TABLE = "bench-counter-test"


@pytest.fixture
def table(aws):
    client = boto3.client("dynamodb")
    client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}])
    return TABLE


def item(pk: str, sk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def test_counts_calls_and_items_per_operation(table):
    with counting_dynamodb() as counter:
        ddb = boto3.client("dynamodb")  # created while counting: hooked
        with counter.measure() as writes:
            ddb.put_item(TableName=table, Item=item("a", "1"))
            ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": item("a", "2")}},
                {"Put": {"TableName": table, "Item": item("a", "3")}},
                {"ConditionCheck": {"TableName": table, "Key": item("a", "1"),
                                    "ConditionExpression": "attribute_exists(pk)"}}])
            ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": item("b", str(n))}}
                                                       for n in range(4)]})
        with counter.measure() as reads:
            ddb.get_item(TableName=table, Key=item("a", "1"))
            ddb.query(TableName=table, KeyConditionExpression="pk = :p",
                      ExpressionAttributeValues={":p": {"S": "a"}})
            ddb.batch_get_item(RequestItems={table: {"Keys": [item("b", "0"), item("b", "1")]}})
        with counter.measure() as rejected:
            with pytest.raises(ClientError):
                ddb.put_item(TableName=table, Item=item("a", "1"),
                             ConditionExpression="attribute_not_exists(pk)")

    assert dict(writes.calls) == {"PutItem": 1, "TransactWriteItems": 1, "BatchWriteItem": 1}
    assert (writes.items_written, writes.items_read) == (1 + 3 + 4, 0)
    assert dict(reads.calls) == {"GetItem": 1, "Query": 1, "BatchGetItem": 1}
    assert (reads.items_read, reads.items_written) == (1 + 3 + 2, 0)
    assert dict(rejected.calls) == {"PutItem": 1} and dict(rejected.errors) == {"PutItem": 1}
    assert rejected.items_written == 1  # DynamoDB bills a rejected conditional write
    assert counter.snapshot().total_calls == 7


def test_clients_outside_the_counter_are_not_counted(table):
    with counting_dynamodb() as counter:
        pass
    boto3.client("dynamodb").get_item(TableName=table, Key=item("x", "1"))
    assert counter.snapshot().total_calls == 0


def test_sqs_and_s3_calls_are_counted_by_operation_apart_from_dynamodb(aws):
    with counting_dynamodb() as counter:
        sqs, s3 = boto3.client("sqs"), boto3.client("s3", region_name="cn-north-1")
        with counter.measure() as spent:
            url = sqs.create_queue(QueueName="bench-counter-queue")["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody="{}")
            sqs.send_message(QueueUrl=url, MessageBody="{}")
            s3.create_bucket(Bucket="bench-counter-bucket",
                             CreateBucketConfiguration={"LocationConstraint": "cn-north-1"})
            s3.generate_presigned_post(Bucket="bench-counter-bucket", Key="k")  # signing, no call

    assert spent.calls_of("sqs") == {"CreateQueue": 1, "SendMessage": 2}
    assert spent.calls_of("s3") == {"CreateBucket": 1}
    assert spent.total_calls == 0 and spent.items_written == 0


# --- capacity units by DynamoDB's billing rules, on hand-computed cases --------------------------

from bench.ddb_counter import TableShape, item_size, number_size, read_units  # noqa: E402

BILLED = "bench-billing-test"


@pytest.fixture
def billed_table(aws):
    client = boto3.client("dynamodb")
    string = [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "status", "due", "owner")]
    client.create_table(
        TableName=BILLED, BillingMode="PAY_PER_REQUEST", AttributeDefinitions=string,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {"IndexName": "all", "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "ALL"}},
            {"IndexName": "keys", "KeySchema": [{"AttributeName": "due", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "KEYS_ONLY"}},
            {"IndexName": "include", "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["title"]}}])
    return BILLED


def s(text: str) -> dict:
    return {"S": text}


def test_item_size_counts_names_and_values_as_dynamodb_does():
    # "pk"(2) + "a"(1); "n"(1) + 12345 → 3 digits pairs + 1 = 4; "m"(1) + map 3 + (1 + "k"1 + "v"1)
    assert item_size({"pk": s("a"), "n": {"N": "12345"}, "m": {"M": {"k": s("v")}}}) == 3 + 5 + 7
    assert number_size("100") == 2 and number_size("-0.5") == 2 and number_size("123456") == 4
    assert item_size({"t": s("时间")}) == 1 + 6  # UTF-8 bytes, not characters
    assert read_units(0, consistent=True) == 1 and read_units(4097, consistent=False) == 1


def test_standard_and_transactional_writes_by_the_kilobyte_with_index_entries(billed_table):
    big = "x" * 1500  # the item is 2 KB
    with counting_dynamodb() as counter:
        ddb = boto3.client("dynamodb")
        with counter.measure() as small_put:   # 1 KB, in no index (sparse): 1 WRU
            ddb.put_item(TableName=billed_table, Item={"pk": s("a"), "title": s("t")})
        with counter.measure() as big_put:     # 2 KB base; "all" gets the 2 KB item, "keys" 1 entry
            ddb.put_item(TableName=billed_table,
                         Item={"pk": s("b"), "status": s("open"), "due": s("d1"), "body": s(big)})
        with counter.measure() as tx:          # transactional: 2 per KB per item, condition check too
            ddb.transact_write_items(TransactItems=[
                {"Update": {"TableName": billed_table, "Key": {"pk": s("a")},
                            "UpdateExpression": "SET #o = :o", "ExpressionAttributeNames": {"#o": "owner"},
                            "ExpressionAttributeValues": {":o": s("me")}}},
                {"ConditionCheck": {"TableName": billed_table, "Key": {"pk": s("b")},
                                    "ConditionExpression": "attribute_exists(pk)"}}])
        with counter.measure() as status_change:  # new "all" key: delete + put of 2 KB; "keys" untouched
            ddb.update_item(TableName=billed_table, Key={"pk": s("b")}, UpdateExpression="SET #s = :s",
                            ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": s("done")})
        with counter.measure() as unprojected:  # "include" projects title, not body: base only
            ddb.update_item(TableName=billed_table, Key={"pk": s("a")}, UpdateExpression="SET body = :b",
                            ExpressionAttributeValues={":b": s("y")})
        with counter.measure() as deleted:      # 2 KB base, leaves "all" (2) and "keys" (1)
            ddb.delete_item(TableName=billed_table, Key={"pk": s("b")})
        with counter.measure() as rejected:     # billed as a write, no index entry
            with pytest.raises(ClientError):
                ddb.put_item(TableName=billed_table, Item={"pk": s("a"), "status": s("x")},
                             ConditionExpression="attribute_not_exists(pk)")

    assert (small_put.wru_base, small_put.wru_gsi) == (1, 0)
    assert (big_put.wru_base, big_put.wru_gsi) == (2, 2 + 1)
    assert dict(big_put.gsi_by_index) == {f"{billed_table}/all": 2, f"{billed_table}/keys": 1}
    assert (tx.wru_base, tx.wru_gsi) == (2 * 1 + 2 * 2, 1)  # "include" gains the item
    assert (status_change.wru_base, status_change.wru_gsi) == (2, 2 + 2)
    assert (unprojected.wru_base, unprojected.wru_gsi) == (1, 0)
    assert (deleted.wru_base, deleted.wru_gsi) == (2, 3)
    assert (rejected.wru_base, rejected.wru_gsi) == (1, 0)


def test_reads_by_four_kilobytes_consistent_eventual_and_query_summed(billed_table):
    with counting_dynamodb() as counter:
        ddb = boto3.client("dynamodb")
        for n in range(3):  # three items of ~3 KB in one status partition
            ddb.put_item(TableName=billed_table, Item={"pk": s(f"i{n}"), "status": s("open"), "body": s("x" * 3000)})
        with counter.measure() as strong:
            ddb.get_item(TableName=billed_table, Key={"pk": s("i0")}, ConsistentRead=True)
        with counter.measure() as eventual:
            ddb.get_item(TableName=billed_table, Key={"pk": s("i0")})
            ddb.get_item(TableName=billed_table, Key={"pk": s("missing")})  # the minimum still
        with counter.measure() as query:   # 3 × 3 KB = 9 KB → 3 units of 4 KB, eventual: 1.5
            ddb.query(TableName=billed_table, IndexName="all", KeyConditionExpression="#s = :s",
                      ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": s("open")})
        with counter.measure() as batch:   # per item: 2 × ½
            ddb.batch_get_item(RequestItems={billed_table: {"Keys": [{"pk": s("i1")}, {"pk": s("i2")}]}})
        with counter.measure() as transactional:
            ddb.transact_get_items(TransactItems=[{"Get": {"TableName": billed_table, "Key": {"pk": s("i0")}}}])

    assert strong.rru == 1 and eventual.rru == 0.5 + 0.5
    assert query.rru == 1.5 and batch.rru == 1 and transactional.rru == 2
    assert strong.wru_base == 0 and query.wru == 0


def test_a_shape_from_describe_table_projects_only_what_each_index_holds():
    shape = TableShape.from_description({
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [{"IndexName": "inc", "KeySchema": [{"AttributeName": "o", "KeyType": "HASH"}],
                                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["t"]}}]})
    item = {"pk": s("1"), "o": s("me"), "t": s("title"), "body": s("x" * 5000)}
    assert shape.projected(shape.indexes[0], item) == {"pk": s("1"), "o": s("me"), "t": s("title")}
    assert shape.index_writes(item, {**item, "body": s("y")}) == {}
    assert shape.index_writes(item, {**item, "t": s("new")}) == {"inc": 1}
    assert shape.index_writes(item, {**item, "o": s("you")}) == {"inc": 2}
