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
