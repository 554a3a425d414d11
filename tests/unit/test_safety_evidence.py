"""Evidence photos with in-memory storage: who may upload and view, key layout, the access log,
and the retention rule on a pinned clock."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import pytest

from functions.core import clock
from functions.core.errors import Forbidden, InvalidState, NotFound, ValidationError
from functions.identity.caller import Caller
from functions.requests import lifecycle as lc
from functions.requests.lifecycle import ServiceRequest
from functions.safety.evidence import (MAX_UPLOAD_BYTES, UPLOAD_EXPIRES_SECONDS, VIEW_EXPIRES_SECONDS,
                                       EvidenceService, InMemoryAccessLog, InMemoryObjectStorage,
                                       evidence_key, issued_at_of)

T = clock.CHINA_TZ
NOW = datetime(2026, 12, 2, 15, 55, 7, tzinfo=T)
REQUESTER = Caller("o-req", "res_req", "hh_req", "verified", frozenset({"resident"}))
SPOUSE = Caller("o-spouse", "res_spouse", "hh_req", "verified", frozenset({"resident"}))
VOLUNTEER = Caller("o-vol", "res_vol", "hh_vol", "verified", frozenset({"resident"}))
VOLUNTEER_SPOUSE = Caller("o-vol2", "res_vol2", "hh_vol", "verified", frozenset({"resident"}))
STRANGER = Caller("o-x", "res_x", "hh_x", "verified", frozenset({"resident"}))
ADMIN = Caller("admin-test", None, None, None, frozenset({"admin"}))
UNVERIFIED_REQUESTER = Caller("o-req", "res_req", "hh_req", "rejected", frozenset({"resident"}))


def service_request(request_id: str = "req_a", status: str = lc.ACCEPTED, evidence=()) -> ServiceRequest:
    return ServiceRequest(
        id=request_id, status=status, category="pickup", title="接孩子", description="",
        start_at=datetime(2026, 12, 2, 16, 0, tzinfo=T), duration_minutes=60, requester_id="res_req",
        household_id="hh_req", payer_account="acc", hold_transfer_id="tr", credits_held=30, created_at=NOW,
        content_hash="x", volunteer_id=None if status == lc.OPEN else "res_vol",
        volunteer_household_id=None if status == lc.OPEN else "hh_vol", evidence_keys=list(evidence))


class FakeRequests:
    def __init__(self, *requests: ServiceRequest):
        self.by_id = {r.id: r for r in requests}

    def get(self, request_id: str) -> ServiceRequest:
        if request_id not in self.by_id:
            raise NotFound()
        return self.by_id[request_id]


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def service_with(*requests: ServiceRequest, retention_days: int = 180):
    now = Clock(NOW)
    storage = InMemoryObjectStorage(now=now)
    log = InMemoryAccessLog()
    tokens = iter(f"{i:016x}" for i in range(1, 1000))
    service = EvidenceService(FakeRequests(*requests), storage, log, retention_days, now=now,
                              token=lambda: next(tokens))
    return service, storage, log, now


# --- upload ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [lc.ACCEPTED, lc.IN_SERVICE])
def test_the_volunteer_gets_an_upload_form_for_this_requests_prefix(status):
    service, storage, _, _ = service_with(service_request(status=status))
    upload = service.issue_upload(VOLUNTEER, "req_a", "image/png")
    assert upload["key"] == "evidence/req_a/20261202T155507-0000000000000001.png"
    assert upload["expires_in"] == UPLOAD_EXPIRES_SECONDS == 300
    assert upload["method"] == "POST" and upload["fields"]["key"] == upload["key"]
    assert upload["max_bytes"] == MAX_UPLOAD_BYTES == 5 * 1024 * 1024
    assert storage.signed == [{"method": "POST", "key": upload["key"], "content_type": "image/png",
                               "max_bytes": MAX_UPLOAD_BYTES, "expires_in": 300}]
    second = service.issue_upload(VOLUNTEER, "req_a", "image/heic")
    assert second["key"].endswith("-0000000000000002.heic") and second["key"] != upload["key"]
    assert service.issue_upload(VOLUNTEER, "req_a")["key"].endswith(".jpg")  # the default type


@pytest.mark.parametrize("caller", [REQUESTER, VOLUNTEER_SPOUSE, STRANGER, ADMIN])
def test_only_the_accepting_volunteer_may_upload(caller):
    service, storage, _, _ = service_with(service_request())
    with pytest.raises(Forbidden):
        service.issue_upload(caller, "req_a", "image/jpeg")
    assert storage.signed == []


@pytest.mark.parametrize("status", [lc.COMPLETED, lc.SETTLED, lc.CANCELLED, lc.DISPUTED])
def test_no_upload_outside_accepted_and_in_service(status):
    service, _, _, _ = service_with(service_request(status=status))
    with pytest.raises(InvalidState):
        service.issue_upload(VOLUNTEER, "req_a", "image/jpeg")


@pytest.mark.parametrize("content_type", ["image/gif", "application/pdf", "IMAGE/JPEG", ""])
def test_other_content_types_are_a_validation_error(content_type):
    service, storage, _, _ = service_with(service_request())
    with pytest.raises(ValidationError) as error:
        service.issue_upload(VOLUNTEER, "req_a", content_type)
    assert list(error.value.details["fields"]) == ["content_type"] and storage.signed == []


def test_unknown_requests_are_not_found():
    service, _, _, _ = service_with(service_request())
    with pytest.raises(NotFound):
        service.issue_upload(VOLUNTEER, "req_missing", "image/jpeg")


# --- viewing ------------------------------------------------------------------------------------------

def test_parties_and_admins_get_short_links_of_existing_photos_and_each_view_is_logged():
    attached = evidence_key("req_a", NOW, "00000000000000aa", "jpg")
    loose = evidence_key("req_a", NOW + timedelta(minutes=1), "00000000000000bb", "png")
    never_uploaded = evidence_key("req_a", NOW, "00000000000000cc", "jpg")
    service, storage, log, _ = service_with(service_request(evidence=[attached, never_uploaded]))
    storage.put(attached, 1000)
    storage.put(loose, 2000)
    storage.put(evidence_key("req_b", NOW, "00000000000000dd", "jpg"), 10)  # another request's photo

    for caller, role in ((REQUESTER, "requester"), (SPOUSE, "requester"), (VOLUNTEER, "volunteer"),
                         (ADMIN, "admin")):
        items = service.links(caller, "req_a")
        assert [(i["key"], i["attached"], i["size"]) for i in items] == [(attached, True, 1000), (loose, False, 2000)]
        assert all(i["expires_in"] == VIEW_EXPIRES_SECONDS and "method=GET" in i["url"] for i in items)
        assert items[0]["uploaded_at"] == "2026-12-02T15:55:07+08:00"
        entry = log.entries[-1]
        assert (entry.request_id, entry.viewer_role, entry.photo_count) == ("req_a", role, 2)
        assert entry.viewer_id == (caller.resident_id or caller.openid)
    assert len(log.entries) == 4


@pytest.mark.parametrize("caller", [STRANGER, VOLUNTEER_SPOUSE, UNVERIFIED_REQUESTER,
                                    Caller("o-new", None, None, None, frozenset())])
def test_everyone_else_is_refused_and_not_logged(caller):
    service, storage, log, _ = service_with(service_request())
    storage.put(evidence_key("req_a", NOW, "00000000000000aa", "jpg"), 1000)
    with pytest.raises(Forbidden):
        service.links(caller, "req_a")
    assert log.entries == [] and not [s for s in storage.signed if s["method"] == "GET"]


def test_view_log_lines_carry_ids_not_openids(caplog):
    service, _, _, _ = service_with(service_request())
    with caplog.at_level(logging.INFO, logger="timebank"):
        service.links(ADMIN, "req_a")
        service.links(REQUESTER, "req_a")
    lines = [vars(r) for r in caplog.records if r.getMessage() == "evidence viewed"]
    assert [(line["viewer"][:7], line["viewer_role"], line["request_id"]) for line in lines] == [
        ("openid#", "admin", "req_a"), ("res_req", "requester", "req_a")]
    text = json.dumps(lines, default=str)
    assert "admin-test" not in text and "o-req" not in text


def test_only_admins_read_the_access_history():
    service, _, _, _ = service_with(service_request())
    service.links(VOLUNTEER, "req_a")
    with pytest.raises(Forbidden):
        service.access_history(VOLUNTEER, "req_a", 20, None)
    entries, cursor = service.access_history(ADMIN, "req_a", 20, None)
    assert [e.viewer_id for e in entries] == ["res_vol"] and cursor is None


# --- retention ----------------------------------------------------------------------------------------

def test_key_carries_its_issue_time_and_foreign_keys_have_none():
    key = evidence_key("req_a", NOW, "0123456789abcdef", "jpg")
    assert issued_at_of(key) == NOW
    assert issued_at_of("evidence/req_a/manual-upload.jpg") is None
    assert issued_at_of("evidence/req_a/20261202T155507-0123456789abcdef.exe") is None


def test_photos_older_than_the_retention_period_are_deleted():
    service, storage, _, now = service_with(service_request(), retention_days=180)
    old = evidence_key("req_a", NOW, "00000000000000aa", "jpg")
    newer = evidence_key("req_a", NOW + timedelta(days=10), "00000000000000bb", "jpg")
    # A key without an issue time is aged by LastModified.
    foreign_old = "evidence/req_a/manual.jpg"
    outside = "exports/report.csv"
    storage.put(old, 1, last_modified=NOW + timedelta(days=400))  # LastModified is NOT what counts
    storage.put(newer, 1)
    storage.put(foreign_old, 1, last_modified=NOW)
    storage.put(outside, 1, last_modified=NOW)

    now.at = NOW + timedelta(days=180)  # exactly the period: kept
    assert service.purge_expired() == 0
    now.at = NOW + timedelta(days=180, seconds=1)
    assert service.purge_expired() == 2
    assert set(storage.objects) == {newer, outside}
    now.at = NOW + timedelta(days=191)
    assert service.purge_expired() == 1 and set(storage.objects) == {outside}


def test_purge_deletes_in_batches():
    service, storage, _, now = service_with(service_request())
    for i in range(5):
        storage.put(evidence_key("req_a", NOW, f"{i:016x}", "jpg"), 1)
    calls = []
    original = storage.delete
    storage.delete = lambda keys: calls.append(len(keys)) or original(keys)
    now.at = NOW + timedelta(days=200)
    assert service.purge_expired(batch=2) == 5 and calls == [2, 2, 1] and storage.objects == {}


def test_retention_must_be_positive():
    with pytest.raises(ValueError):
        service_with(retention_days=0)
