"""Insurance records: the covered window, one record per request, export ranges, the CSV, and the
queue consumer's partial batch responses (with in-memory adapters)."""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from functions.core import clock
from functions.core.errors import InvalidState, LimitExceeded, NotFound, ValidationError
from functions.requests import model as lc
from functions.requests.model import ServiceRequest
from functions.core.events import parse_event
from functions.safety import model as ins
from functions.safety import service as register_module
from functions.safety.model import ACTIVE, CANCELLED, InsurancePolicy, covered_window
from functions.safety.service import InsuranceRegister
from functions.safety.views import insurance_record_view, insured_list_csv
from tests.fakes.safety import InMemoryInsuranceRecordStore

def export_range(raw_from, raw_to):
    """What the insured-list route does with ``?from=&to=``: its query schema, then the range rule."""
    from functions.safety.routes import INSURED_QUERY

    params = INSURED_QUERY.query({k: v for k, v in (("from", raw_from), ("to", raw_to)) if v is not None})
    return ins.export_range(params["from"], params["to"])


def handle_insurance_batch(event, register):
    """The deployed ``insurance-records`` handler, with ``register`` in place of the real one."""
    from functions import bootstrap
    from functions.app import app

    bootstrap.use("insurance", register)
    try:
        return app.handler_map["insurance-records"](event, None)
    finally:
        bootstrap.reset()


EVENTS = Path(__file__).resolve().parents[2] / "events"
T = clock.CHINA_TZ
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=T)
POLICY = InsurancePolicy("示范保险股份有限公司", "DEMO-2026-0001", timedelta(minutes=30))


def service_request(request_id: str, status: str = lc.ACCEPTED, start: datetime | None = None,
                    duration: int = 60, volunteer: str | None = "res_vol", category: str = "pickup") -> ServiceRequest:
    return ServiceRequest(
        id=request_id, status=status, category=category, title="接孩子", description="",
        start_at=start or datetime(2026, 12, 2, 16, 0, tzinfo=T), duration_minutes=duration,
        requester_id="res_req", household_id="hh_req", payer_account="acc", hold_transfer_id="tr",
        credits_held=30, created_at=NOW, content_hash="x",
        volunteer_id=volunteer if status != lc.OPEN else None,
        volunteer_household_id="hh_vol" if status != lc.OPEN else None,
    )


class FakeRequests:
    def __init__(self, *requests: ServiceRequest):
        self.by_id = {r.id: r for r in requests}

    def get(self, request_id: str) -> ServiceRequest:
        if request_id not in self.by_id:
            raise NotFound("没有这个需求")
        return self.by_id[request_id]


def register_with(*requests: ServiceRequest, policy: InsurancePolicy = POLICY):
    store = InMemoryInsuranceRecordStore()
    names = {"pickup": "接送帮", "childcare": "托管帮"}
    register = InsuranceRegister(store, FakeRequests(*requests), lambda c: names.get(c, c), policy,
                                 now=lambda: NOW)
    return register, store


# --- the record ----------------------------------------------------------------------------------

def test_covered_window_adds_the_buffer_on_both_sides():
    start = datetime(2026, 12, 2, 16, 0, tzinfo=T)
    assert covered_window(start, 90, timedelta(minutes=30)) == (
        datetime(2026, 12, 2, 15, 30, tzinfo=T), datetime(2026, 12, 2, 18, 0, tzinfo=T))
    assert covered_window(start, 90, timedelta(0)) == (start, start + timedelta(minutes=90))


def test_accepted_request_gets_a_record_with_volunteer_window_and_policy():
    register, store = register_with(service_request("req_a", duration=45))
    record = register.record_accepted("req_a")
    assert (record.request_id, record.volunteer_id, record.category, record.category_name) == \
        ("req_a", "res_vol", "pickup", "接送帮")
    assert record.covered_from == datetime(2026, 12, 2, 15, 30, tzinfo=T)
    assert record.covered_to == datetime(2026, 12, 2, 17, 15, tzinfo=T)
    assert (record.insurer, record.policy_number, record.status) == ("示范保险股份有限公司", "DEMO-2026-0001", ACTIVE)
    assert record.created_at == NOW and record.service_date == date(2026, 12, 2)
    assert register.has_record("req_a") and not register.has_record("req_other")
    as_json = insurance_record_view(record)
    assert as_json["covered_from"] == "2026-12-02T15:30:00+08:00" and as_json["service_date"] == "2026-12-02"


def test_service_date_is_the_community_day_even_for_a_utc_start():
    utc_start = datetime(2026, 12, 1, 17, 0, tzinfo=timezone.utc)  # 01:00 on the 2nd in China
    register, _ = register_with(service_request("req_u", start=utc_start))
    assert register.record_accepted("req_u").service_date == date(2026, 12, 2)


def test_a_second_delivery_writes_nothing_and_returns_the_first_record():
    register, store = register_with(service_request("req_a"))
    first = register.record_accepted("req_a")
    register.now = lambda: NOW + timedelta(minutes=5)
    again = register.record_accepted("req_a")
    assert again == first and store.writes == 1


def test_a_request_that_was_never_accepted_is_not_insurable():
    register, store = register_with(service_request("req_open", status=lc.OPEN))
    with pytest.raises(ins.NotInsurable):
        register.record_accepted("req_open")
    assert store.records == {}


def test_unknown_request_raises_not_found():
    register, _ = register_with()
    with pytest.raises(NotFound):
        register.record_accepted("req_missing")


def test_deployed_without_policy_refuses_to_write():
    register, store = register_with(service_request("req_a"), policy=InsurancePolicy("", "", timedelta(0)))
    with pytest.raises(ins.InsuranceNotConfigured):
        register.record_accepted("req_a")
    assert store.records == {}


def test_cancellation_marks_the_record_and_a_late_accept_message_writes_it_cancelled():
    accepted = service_request("req_c")
    register, store = register_with(accepted)
    register.record_accepted("req_c")
    with pytest.raises(InvalidState):  # the request is not cancelled: a stale or forged message
        register.record_cancelled("req_c")
    register.requests.by_id["req_c"] = replace(accepted, status=lc.CANCELLED)
    assert register.record_cancelled("req_c").status == CANCELLED
    assert register.record_cancelled("req_c").status == CANCELLED  # redelivery: no second change
    assert store.writes == 2

    # Cancelled before the accept message was processed: the record is born cancelled.
    late, late_store = register_with(replace(accepted, id="req_late", status=lc.CANCELLED))
    assert late.record_cancelled("req_late") is None and late_store.records == {}
    assert late.record_accepted("req_late").status == CANCELLED


# --- export ranges and CSV ---------------------------------------------------------------------------

def test_export_range_accepts_up_to_92_days_inclusive():
    assert export_range("2026-10-01", "2026-12-31") == ins.ExportRange(date(2026, 10, 1), date(2026, 12, 31))
    assert export_range("2026-12-01", "2026-12-01").first_day == date(2026, 12, 1)


@pytest.mark.parametrize("raw_from, raw_to, field", [
    (None, "2026-12-01", "from"), ("2026-12-01", "", "to"), ("2026-13-01", "2026-12-31", "from"),
    ("20261201", "2026-12-31", "from"), ("2026-12-01T00:00", "2026-12-31", "from"),
    ("2026-02-30", "2026-03-01", "from"), ("2026-12-31", "2026-12-01", "to"),
    ("2026-10-01", "2027-01-01", "to"),  # 93 days
])
def test_bad_export_ranges_are_validation_errors(raw_from, raw_to, field):
    with pytest.raises(ValidationError) as error:
        export_range(raw_from, raw_to)
    assert field in error.value.details["fields"]


def test_export_pages_through_the_range_in_service_order():
    requests = [service_request(f"req_{i}", start=datetime(2026, 12, 1 + i, 9, 0, tzinfo=T)) for i in range(5)]
    register, _ = register_with(*requests)
    for r in requests:
        register.record_accepted(r.id)
    days = export_range("2026-12-02", "2026-12-04")
    page, cursor = register.export_page(days, 2, None)
    rest, end = register.export_page(days, 2, cursor)
    assert [r.request_id for r in page + rest] == ["req_1", "req_2", "req_3"] and end is None


def test_export_all_refuses_more_than_the_row_cap(monkeypatch):
    monkeypatch.setattr(register_module, "MAX_EXPORT_ROWS", 2)
    requests = [service_request(f"req_{i}") for i in range(3)]
    register, _ = register_with(*requests)
    for r in requests:
        register.record_accepted(r.id)
    with pytest.raises(LimitExceeded):
        register.export_all(export_range("2026-12-01", "2026-12-31"))


def test_csv_is_excel_friendly_and_defuses_formulas():
    register, _ = register_with(service_request("req_a"), service_request("req_b", category="=HYPERLINK(1)"))
    rows = [register.record_accepted("req_a"), register.record_accepted("req_b")]
    text = insured_list_csv(rows)
    assert text.startswith("\ufeff需求编号,志愿者编号,")
    lines = text[1:].split("\r\n")
    assert len(lines) == 4 and lines[-1] == ""
    assert lines[1].startswith("req_a,res_vol,pickup,接送帮,2026-12-02,2026-12-02T16:00:00+08:00,60,")
    assert "DEMO-2026-0001,active" in lines[1]
    assert ",'=HYPERLINK(1),'=HYPERLINK(1)," in lines[2]


# --- messages and the consumer ----------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    "not json", "[]", '"x"', "{}", '{"type": "request.accepted"}',
    '{"type": "request.accepted", "request_id": "req_a"}',
    '{"event_id": "evt_1", "type": "request.accepted", "subject": 5, "occurred_at": "2026-12-01T08:00:00+08:00"}',
    '{"event_id": "evt_1", "type": "request.accepted", "subject": "req_a", "occurred_at": "yesterday"}',
    '{"event_id": "evt_1", "type": "request.posted", "subject": "req_a", "occurred_at": "2026-12-01T08:00:00+08:00"}',
])
def test_malformed_messages_are_poison(body):
    from functions.core.messaging import PoisonMessage, parse_json_object

    register, _ = register_with()
    with pytest.raises(PoisonMessage):
        register.handle(parse_event(parse_json_object(body)))


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def test_sample_batch_has_distinct_message_ids():
    for name in ("insurance-records.batch.json", "insurance-records.poison.json"):
        ids = [r["messageId"] for r in load_event(name)["Records"]]
        assert len(ids) == len(set(ids)) > 1


def split_batch(event: dict) -> tuple[set[str], set[str]]:
    """(request ids of the well-formed records naming known requests, message ids of the poison)."""
    known, poison = set(), set()
    for record in event["Records"]:
        try:
            request_id = json.loads(record["body"])["subject"]
        except ValueError:
            poison.add(record["messageId"])
            continue
        if request_id.startswith("req_unknown"):
            poison.add(record["messageId"])
        else:
            known.add(request_id)
    return known, poison


def test_consumer_writes_each_request_once_and_reports_only_the_poison_records():
    event = load_event("insurance-records.poison.json")
    known, poison = split_batch(event)
    assert len(poison) == 2 and len(known) == 2 and len(event["Records"]) == 5  # one duplicate delivery
    register, store = register_with(*(service_request(rid) for rid in sorted(known)))
    result = handle_insurance_batch(event, register=register)
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    assert failed == poison
    assert set(store.records) == known and store.writes == len(known)

    # The whole batch delivered again (SQS at-least-once): no new writes, same poison.
    again = handle_insurance_batch(copy.deepcopy(event), register=register)
    assert {f["itemIdentifier"] for f in again["batchItemFailures"]} == poison and store.writes == len(known)


def test_consumer_reports_an_all_poison_batch_without_raising():
    event = load_event("insurance-records.poison.json")
    event["Records"] = [r for r in event["Records"] if "req_unknown" in r["body"]]
    register, _ = register_with()
    result = handle_insurance_batch(event, register=register)
    assert [f["itemIdentifier"] for f in result["batchItemFailures"]] == [event["Records"][0]["messageId"]]


def test_an_accepted_event_whose_record_committed_with_the_acceptance_costs_the_queue_nothing():
    from functions.core.events import new_event

    class NoReads(FakeRequests):
        def get(self, request_id):
            raise AssertionError("the request was read")

    store = InMemoryInsuranceRecordStore()
    register = InsuranceRegister(store, NoReads(), lambda c: c, POLICY, now=lambda: NOW)
    insured = lc.accepted_event(replace(service_request("req_i"), insured=True))
    assert insured.data["insured"] is True
    assert register.handle(insured) is None and store.writes == 0
    # Without the flag (no policy at the accept, or an older event) the queue still repairs it.
    register.requests = FakeRequests(service_request("req_i"))
    assert "insured" not in lc.accepted_event(service_request("req_i")).data
    assert register.handle(new_event(lc.ACCEPTED_EVENT, "req_i", NOW, {})).request_id == "req_i"
