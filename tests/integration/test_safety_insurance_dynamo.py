"""Insurance records on moto: the conditional put, the month index the export queries, cursors,
and the queue consumer as Lambda runs it (real-shaped events, the SQS redrive to the DLQ)."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from functions.core import clock
from functions.core.errors import ValidationError
from functions.adapters.sqs import SqsPublisher
from functions.core.events import new_event
from functions.requests.model import ACCEPTED_EVENT
from functions.core.messaging import QUEUES, dead_letter_queue_name, queue_name
from functions.requests import model as lc
from functions.requests.model import ServiceRequest
from functions import bootstrap
from functions.safety.model import ACTIVE, CANCELLED, InsurancePolicy, export_range
from functions.safety.service import InsuranceRegister
from functions.safety.dynamo import DynamoInsuranceRecordStore, InsuranceRecordItem
from functions import bootstrap
from tests.queues import consumer

EVENTS = Path(__file__).resolve().parents[2] / "events"
T = clock.CHINA_TZ
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=T)


def service_request(request_id: str, start: datetime, status: str = lc.ACCEPTED) -> ServiceRequest:
    return ServiceRequest(
        id=request_id, status=status, category="companion", title="陪老人散步", description="",
        start_at=start, duration_minutes=90, requester_id="res_req", household_id="hh_req",
        payer_account="acc", hold_transfer_id=f"tr_{request_id}", credits_held=90, created_at=NOW,
        content_hash="x", volunteer_id="res_vol" if status != lc.OPEN else None,
        volunteer_household_id="hh_vol" if status != lc.OPEN else None,
        accepted_at=NOW if status != lc.OPEN else None)


def stored_request(request_id: str, start: datetime, status: str = lc.ACCEPTED) -> ServiceRequest:
    """A request item written through the requests domain's own adapter (what the consumer reads)."""
    request = service_request(request_id, start, status)
    bootstrap.request_store().record_for(request).save()
    return request


class Requests:
    """The store tests below exercise the insurance table only; requests come from memory."""

    def __init__(self) -> None:
        self.by_id: dict[str, ServiceRequest] = {}

    def add(self, request_id: str, start: datetime, status: str = lc.ACCEPTED) -> ServiceRequest:
        self.by_id[request_id] = service_request(request_id, start, status)
        return self.by_id[request_id]

    def get(self, request_id: str) -> ServiceRequest:
        return self.by_id[request_id]


@pytest.fixture
def register(aws):
    clock.set_clock(lambda: NOW)
    return InsuranceRegister(DynamoInsuranceRecordStore(), Requests(), lambda c: "陪护帮",
                             InsurancePolicy("示范保险股份有限公司", "DEMO-2026-0001", timedelta(minutes=30)))


def test_record_roundtrip_is_written_once(register):
    register.requests.add("req_a", datetime(2026, 12, 3, 9, 0, tzinfo=T))
    first = register.record_accepted("req_a")
    clock.set_clock(lambda: NOW + timedelta(hours=1))
    assert register.record_accepted("req_a") == first  # the redelivery finds the first record
    item = InsuranceRecordItem.get("req_a")
    assert (item.service_month, item.covered_from, item.covered_to, item.status, item.created_at) == (
        "2026-12", "2026-12-03T08:30:00+08:00", "2026-12-03T11:00:00+08:00", ACTIVE, "2026-12-01T08:00:00+08:00")
    assert register.has_record("req_a") and not register.has_record("req_b")


def test_cancel_is_a_conditional_update(register):
    register.requests.add("req_c", datetime(2026, 12, 3, 9, 0, tzinfo=T))
    register.record_accepted("req_c")
    register.requests.add("req_c", datetime(2026, 12, 3, 9, 0, tzinfo=T), status=lc.CANCELLED)
    assert register.record_cancelled("req_c").status == CANCELLED
    assert register.store.mark_cancelled("req_c", NOW) is False  # already cancelled


def test_export_queries_months_in_service_order_with_cursors(register):
    starts = [datetime(2026, 11, 30, 23, 30, tzinfo=T), datetime(2026, 12, 1, 0, 0, tzinfo=T),
              datetime(2026, 12, 31, 23, 59, 59, tzinfo=T), datetime(2027, 1, 1, 0, 0, tzinfo=T),
              datetime(2027, 2, 28, 12, 0, tzinfo=T), datetime(2027, 3, 1, 0, 0, tzinfo=T)]
    for number, start in enumerate(starts):
        register.requests.add(f"req_{number}", start)
        register.record_accepted(f"req_{number}")
    days = export_range(date(2026, 12, 1), date(2027, 2, 28))
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = register.export_page(days, 2, cursor)
        seen.extend(r.request_id for r in page)
        pages += 1
        if cursor is None:
            break
        json.dumps(cursor)  # it must survive the trip through an HTTP cursor
    assert seen == ["req_1", "req_2", "req_3", "req_4"]
    assert pages <= 4
    assert [r.request_id for r in register.export_all(days)] == seen


@pytest.mark.parametrize("cursor", [
    {"month": "2026-10", "key": None},                    # outside the range
    {"month": "2026-12", "key": {"request_id": {"S": "x"}}},
    {"month": "2026-12", "key": {"request_id": {"S": "x"}, "service_month": {"S": "2027-01"},
                                 "service_start": {"S": "x"}}},
    {"month": "2026-12", "key": None, "extra": 1},
    {"month": ["2026-12"]},
])
def test_foreign_cursors_are_refused(register, cursor):
    with pytest.raises(ValidationError):
        register.export_page(export_range(date(2026, 12, 1), date(2026, 12, 31)), 10, cursor)


# --- the consumer as deployed --------------------------------------------------------------------------

def sample_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def test_app_handler_processes_the_sample_batch_with_one_write_per_request(app):
    clock.set_clock(lambda: NOW)
    event = sample_event("insurance-records.batch.json")
    request_ids = sorted({json.loads(r["body"])["subject"] for r in event["Records"]})
    assert len(event["Records"]) == 4 and len(request_ids) == 3  # one duplicate delivery
    for number, request_id in enumerate(request_ids):
        stored_request(request_id, datetime(2026, 12, 2 + number, 10, 0, tzinfo=T))
    handler = app.handler_map["insurance-records"]
    assert handler(event, None) == {"batchItemFailures": []}
    assert sorted(i.request_id for i in InsuranceRecordItem.scan()) == request_ids
    assert all(bootstrap.insurance().has_record(r) for r in request_ids)


def test_app_handler_reports_poison_records_and_keeps_the_good_ones(app):
    clock.set_clock(lambda: NOW)
    event = sample_event("insurance-records.poison.json")
    good, poison = set(), set()
    for record in event["Records"]:
        try:
            request_id = json.loads(record["body"])["subject"]
        except ValueError:
            poison.add(record["messageId"])
            continue
        (poison.add(record["messageId"]) if request_id.startswith("req_unknown") else good.add(request_id))
    for request_id in good:
        stored_request(request_id, datetime(2026, 12, 2, 10, 0, tzinfo=T))
    result = app.handler_map["insurance-records"](event, None)
    assert {f["itemIdentifier"] for f in result["batchItemFailures"]} == poison
    assert {i.request_id for i in InsuranceRecordItem.scan()} == good


def test_poison_goes_to_the_dead_letter_queue_after_max_receives_and_good_messages_are_recorded(app):
    clock.set_clock(lambda: NOW)
    stored_request("req_good", datetime(2026, 12, 2, 10, 0, tzinfo=T))
    publisher = SqsPublisher()
    good, nobody = (new_event(ACCEPTED_EVENT, request_id, NOW) for request_id in ("req_good", "req_nobody"))
    publisher.publish("insurance", good.message(), good.id)
    publisher.publish("insurance", good.message(), good.id)
    publisher.publish("insurance", nobody.message(), nobody.id)
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=queue_name("insurance"))["QueueUrl"],
                     MessageBody="{not json")

    worker = consumer(app, "insurance")
    max_receives = QUEUES["insurance"].max_receive_count
    for _ in range(max_receives + 2):
        worker.poll_once()
    assert [i.request_id for i in InsuranceRecordItem.scan()] == ["req_good"]

    main_url = sqs.get_queue_url(QueueName=queue_name("insurance"))["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=dead_letter_queue_name("insurance"))["QueueUrl"]
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10,
                               AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
    assert sorted(m["Body"] for m in dead) == sorted([json.dumps(nobody.message(), ensure_ascii=False), "{not json"])
    assert sqs.receive_message(QueueUrl=main_url, MaxNumberOfMessages=10).get("Messages", []) == []
