"""The ``matching`` queue consumer end to end on moto: SQS events in the Lambda shape (with
distinct message ids), the app's real handler, DynamoDB, the local outbox."""
from __future__ import annotations

import copy
import json
import threading
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from unittest import mock

import boto3
import pytest
from botocore.client import BaseClient

from functions.core import clock
from functions.core.clock import CHINA_TZ
from functions.adapters.sqs import SqsPublisher
from functions.core.events import new_event
from functions.requests.model import POSTED_EVENT
from functions.core.messaging import QUEUES, dead_letter_queue_name, queue_name
from functions.core.caller import Caller
from functions.notifications.dynamo import DynamoDeliveryStore, outbox_page
from functions.requests import model as lc
from functions import bootstrap
from functions.requests.model import ServiceRequest
from local.consumers import QueueBinding, QueueConsumer
from local.lambda_events import lambda_context, sqs_event

EVENTS = Path(__file__).resolve().parents[2] / "events"
REQUEST_ID = "req_2b4d6f8h0k2m4p6r8t0v2x4z6b"     # the id in events/matching_*.json
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=CHINA_TZ)


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def fresh_ids(event: dict) -> dict:
    """A copy with new message ids: each delivery SQS makes has its own."""
    event = copy.deepcopy(event)
    for record in event["Records"]:
        record["messageId"] = str(uuid.uuid4())
    return event


def resident(openid: str, building: str, room: str) -> Caller:
    from functions import bootstrap

    registered = bootstrap.identity().register(Caller(openid=openid), name="测试居民", phone="13900001111",
                                                 building=building, unit="1", room=room, birth_year=1980)
    return Caller(openid=openid, resident_id=registered.id, household_id=registered.household_id,
                  status="verified", roles=frozenset({"resident"}))


@pytest.fixture
def world(aws):
    from functions import bootstrap

    clock.set_clock(lambda: NOW)
    requester = resident("openid-requester", "3幢", "502")
    family = resident("openid-family", "3栋", "502室")          # the same flat, written differently
    volunteers = {
        "near": resident("openid-near", "3号楼", "101"),      # same building as the requester
        "a": resident("openid-a", "7", "201"),
        "b": resident("openid-b", "8", "301"),
        "c": resident("openid-c", "9", "401"),
    }
    assert family.household_id == requester.household_id
    service, notifications = bootstrap.volunteers(), bootstrap.notifications()
    # The need starts Wednesday 09:00 for an hour: "a" is free throughout, "b" only at the start,
    # "c" declared no time — so the order is near (same building), a, b, then c.
    windows = {"a": [{"weekday": 3, "start": "08:00", "end": "12:00"}],
               "b": [{"weekday": 3, "start": "08:30", "end": "09:30"}],
               "family": [{"weekday": 3, "start": "08:00", "end": "12:00"}]}
    for name, caller in [*volunteers.items(), ("family", family)]:
        service.update_profile(caller, ["pickup"], windows.get(name, []), True)
        notifications.record_consent(caller.openid, "match", accepted=True)
    request = ServiceRequest(
        id=REQUEST_ID, status=lc.OPEN, category="pickup", title="放学接孩子", description="学校东门",
        start_at=datetime(2026, 12, 2, 9, 0, tzinfo=CHINA_TZ), duration_minutes=60,
        requester_id=requester.resident_id, household_id=requester.household_id,
        payer_account=f"household:{requester.household_id}", hold_transfer_id="tr_hold", credits_held=60,
        created_at=NOW, content_hash="x")
    bootstrap.request_store().record_for(request).save()
    yield {"requester": requester, "family": family, **volunteers}
    clock.set_clock(None)


def handler():
    from functions.app import app

    match_requests = app.handler_map["match-requests"]

    return match_requests


def invoke(event: dict) -> dict:
    return handler()(event, lambda_context("match-requests", 60))


def outbox_recipients() -> list[str]:
    items, _ = outbox_page(100, None)
    return sorted(item["openid"] for item in items)


def test_a_posted_request_notifies_the_best_three_never_the_requesters_household(world):
    result = invoke(fresh_ids(load_event("match-requests.batch.json")))
    assert result == {"batchItemFailures": []}
    assert outbox_recipients() == ["openid-a", "openid-b", "openid-near"]
    items, _ = outbox_page(100, None)
    assert {i["template"] for i in items} == {"match"}
    assert {i["page"] for i in items} == {f"pages/requests/detail?id={REQUEST_ID}"}
    assert {i["data"]["title"] for i in items} == {"放学接孩子"}


def test_a_message_published_by_the_service_flows_through_sqs(world):
    posted = new_event(POSTED_EVENT, REQUEST_ID, clock.now())
    SqsPublisher().publish("matching", posted.message(), deduplication_id=posted.id)
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name("matching"))["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                   AttributeNames=["All"])["Messages"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    event = sqs_event(messages, arn, "cn-north-1")
    assert event["Records"][0]["messageAttributes"]["dedup_id"]["stringValue"] == posted.id
    assert invoke(event) == {"batchItemFailures": []}
    assert len(outbox_recipients()) == 3


def test_duplicate_deliveries_have_one_effect(world):
    duplicated = load_event("match-requests.batch.json")      # the same message twice in a batch
    assert len({r["messageId"] for r in duplicated["Records"]}) == 2
    assert invoke(fresh_ids(duplicated)) == {"batchItemFailures": []}
    assert invoke(fresh_ids(duplicated)) == {"batchItemFailures": []}  # and redelivered later
    assert outbox_recipients() == ["openid-a", "openid-b", "openid-near"]
    statuses = Counter(DynamoDeliveryStore().get(f"match#{REQUEST_ID}#{world[k].resident_id}").status
                       for k in ("near", "a", "b"))
    assert statuses == {"claimed": 3}  # sent: the claim is the record


def test_concurrent_duplicate_deliveries_notify_once(world):
    event = load_event("match-requests.batch.json")
    single = {"Records": event["Records"][:1]}
    results: list[dict] = []
    # moto is not thread-safe: serialise its calls, but let the two invocations interleave.
    lock = threading.RLock()
    real_call = BaseClient._make_api_call

    def serialised(self, operation, params):
        with lock:
            return real_call(self, operation, params)

    with mock.patch.object(BaseClient, "_make_api_call", serialised):
        threads = [threading.Thread(target=lambda: results.append(invoke(fresh_ids(single)))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [{"batchItemFailures": []}] * 2
    assert outbox_recipients() == ["openid-a", "openid-b", "openid-near"]


def test_poison_messages_are_reported_per_message_and_the_rest_succeeds(world):
    event = fresh_ids(load_event("match-requests.poison.json"))
    good, not_json, wrong_type = (r["messageId"] for r in event["Records"])
    unknown = copy.deepcopy(event["Records"][0])
    unknown["messageId"] = str(uuid.uuid4())
    unknown["body"] = json.dumps(new_event(POSTED_EVENT, "req_does_not_exist", clock.now()).message())
    event["Records"].append(unknown)
    result = invoke(event)
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(
        [not_json, wrong_type, unknown["messageId"]])
    assert good not in {f["itemIdentifier"] for f in result["batchItemFailures"]}
    assert len(outbox_recipients()) == 3


def test_a_poison_message_ends_in_the_dead_letter_queue_after_max_receive_count(world):
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name("matching"))["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=dead_letter_queue_name("matching"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.send_message(QueueUrl=url, MessageBody="{broken")
    consumer = QueueConsumer(
        QueueBinding("match-requests", handler(), queue_name("matching"), url, arn, 10, 60),
        sqs, "cn-north-1", threading.Event(), poll_interval=0, retry_delay=0)
    received = [consumer.poll_once() for _ in range(QUEUES["matching"].max_receive_count + 1)]
    assert received == [1] * QUEUES["matching"].max_receive_count + [0]
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in dead] == ["{broken"]


def test_dynamodb_calls_per_match(world):
    calls: Counter = Counter()
    real_call = BaseClient._make_api_call

    def counting(self, operation, params):
        if self.meta.service_model.service_name == "dynamodb":
            calls[operation] += 1
        return real_call(self, operation, params)

    event = fresh_ids({"Records": load_event("match-requests.batch.json")["Records"][:1]})
    bootstrap.catalog().forget()  # a cold function: the catalogue is read once, then cached
    with mock.patch.object(BaseClient, "_make_api_call", counting):
        assert invoke(event) == {"batchItemFailures": []}
    # The request (eventually consistent): 1 GetItem — the requester's building was kept when
    # the family's own profile was saved (a household's building never changes); candidates: a
    # bounded read whatever the category's size — neighbours from a rotating start and the wrap
    # round (2 Query), a rotating sample and its wrap (2 Query), their profiles (1
    # BatchGetItem); matches: 1 transaction; the category's name: 1 Query (catalogue); per
    # notified volunteer: claim (Put) and consent (Update) — a sent message writes nothing
    # more — plus, locally, the outbox Put.
    assert calls == {"GetItem": 1, "Query": 1 + 4, "BatchGetItem": 1, "TransactWriteItems": 1,
                     "PutItem": 3 + 3, "UpdateItem": 3}
    calls.clear()
    with mock.patch.object(BaseClient, "_make_api_call", counting):
        invoke(fresh_ids(event))
    # A duplicate on the now warm function: the same reads but the catalogue (kept), a
    # cancelled transaction, the recorded matches (Query), one failed claim per
    # volunteer; nothing sent.
    assert calls == {"GetItem": 1, "Query": 4 + 1, "BatchGetItem": 1, "TransactWriteItems": 1, "PutItem": 3}


def test_nothing_is_matched_for_a_request_taken_meanwhile(world):
    from functions import bootstrap

    store = bootstrap.request_store()
    request = store.get(REQUEST_ID)
    store.transition(request, {"status": lc.ACCEPTED, "volunteer_id": world["a"].resident_id,
                               "volunteer_household_id": world["a"].household_id, "accepted_at": NOW})
    assert invoke(fresh_ids(load_event("match-requests.batch.json"))) == {"batchItemFailures": []}
    assert outbox_recipients() == []
