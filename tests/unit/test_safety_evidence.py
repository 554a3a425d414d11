"""Evidence photos with in-memory storage: who may upload and view, key layout, the pre-signed
PUT (size signed when declared) and the POST form, the check of an upload before its key is used,
the access log, and the retention rule on a pinned clock."""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from functions.core import clock
from functions.core.observability import openid_hash
from functions.core.errors import BusinessRuleViolation, Forbidden, InvalidState, NotFound, ValidationError
from functions.core.caller import Caller
from functions.requests import model as lc
from functions.requests.model import ServiceRequest
from functions.safety.model import (
    MAX_UPLOAD_BYTES, REFERENCE_WINDOW, UPLOAD_EXPIRES_SECONDS, VIEW_EXPIRES_SECONDS, evidence_key, issued_at_of,
)
from functions.safety.service import EvidenceService
from tests.fakes.safety import InMemoryAccessLog, InMemoryObjectStorage, InMemoryUploadRegister

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
    service = EvidenceService(FakeRequests(*requests), storage, log, InMemoryUploadRegister(), retention_days,
                              now=now, token=lambda: next(tokens))
    return service, storage, log, now


# --- upload ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [lc.ACCEPTED, lc.IN_SERVICE])
def test_the_volunteer_gets_a_presigned_put_for_this_requests_prefix(status):
    service, storage, _, _ = service_with(service_request(status=status))
    upload = service.issue_upload(VOLUNTEER, "req_a", "image/png")
    key = "evidence/req_a/20261202T155507-0000000000000001.png"
    assert upload["key"] == key
    assert upload["expires_in"] == UPLOAD_EXPIRES_SECONDS == 300
    assert upload["method"] == "PUT" and upload["upload_url"].startswith(f"memory://evidence/{key}?method=PUT")
    assert upload["headers"] == {"Content-Type": "image/png"}  # no size declared: none signed
    assert upload["max_bytes"] == MAX_UPLOAD_BYTES == 5 * 1024 * 1024
    # The size-enforcing POST form for wx.uploadFile comes along.
    assert upload["form"] == {"url": "memory://evidence/", "fields": {"key": key, "Content-Type": "image/png"},
                              "max_bytes": MAX_UPLOAD_BYTES}
    assert storage.signed == [
        {"method": "POST", "key": key, "content_type": "image/png", "max_bytes": MAX_UPLOAD_BYTES, "expires_in": 300},
        {"method": "PUT", "key": key, "content_type": "image/png", "size": None, "expires_in": 300}]
    second = service.issue_upload(VOLUNTEER, "req_a", "image/heic")
    assert second["key"].endswith("-0000000000000002.heic") and second["key"] != upload["key"]
    assert service.issue_upload(VOLUNTEER, "req_a")["key"].endswith(".jpg")  # the default type


@pytest.mark.parametrize("size", [1, 204_800, MAX_UPLOAD_BYTES])
def test_a_declared_size_is_signed_and_must_be_sent(size):
    service, storage, _, _ = service_with(service_request())
    upload = service.issue_upload(VOLUNTEER, "req_a", "image/jpeg", size=size)
    assert upload["headers"] == {"Content-Type": "image/jpeg", "Content-Length": str(size)}
    assert storage.signed[-1] == {"method": "PUT", "key": upload["key"], "content_type": "image/jpeg",
                                  "size": size, "expires_in": 300}


@pytest.mark.parametrize("size", [0, -1, MAX_UPLOAD_BYTES + 1])
def test_a_size_outside_one_byte_to_5_mb_is_a_validation_error(size):
    service, storage, _, _ = service_with(service_request())
    with pytest.raises(ValidationError) as error:
        service.issue_upload(VOLUNTEER, "req_a", "image/jpeg", size=size)
    assert list(error.value.details["fields"]) == ["size"] and storage.signed == []


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


# --- the upload, checked when its key is used -----------------------------------------------------

def issued(service, content_type="image/jpeg") -> str:
    return service.issue_upload(VOLUNTEER, "req_a", content_type)["key"]


@pytest.mark.parametrize("size", [1, MAX_UPLOAD_BYTES])
def test_an_uploaded_photo_within_the_limit_passes_with_one_head(size):
    service, storage, _, _ = service_with(service_request())
    key = issued(service)
    storage.put(key, size)
    service.verify_upload("req_a", key)
    assert storage.heads == 1 and key in storage.objects


def test_a_key_with_nothing_uploaded_is_evidence_not_uploaded():
    service, storage, _, _ = service_with(service_request())
    with pytest.raises(BusinessRuleViolation) as error:
        service.verify_upload("req_a", issued(service))
    assert (error.value.status, error.value.code) == (422, "EVIDENCE_NOT_UPLOADED")


def test_an_oversize_photo_is_refused_and_deleted():
    service, storage, _, _ = service_with(service_request())
    key, kept = issued(service), issued(service)
    storage.put(key, MAX_UPLOAD_BYTES + 1)
    storage.put(kept, 10)
    with pytest.raises(BusinessRuleViolation) as error:
        service.verify_upload("req_a", key)
    assert (error.value.status, error.value.code) == (422, "EVIDENCE_TOO_LARGE")
    assert error.value.details["size"] == MAX_UPLOAD_BYTES + 1
    assert set(storage.objects) == {kept}  # only the refused photo is gone


@pytest.mark.parametrize("stored_type", ["image/png", "text/html", "application/octet-stream", ""])
def test_a_photo_of_another_type_than_issued_is_refused_and_deleted(stored_type):
    service, storage, _, _ = service_with(service_request())
    key = issued(service, "image/jpeg")
    storage.put(key, 100, content_type=stored_type)
    with pytest.raises(BusinessRuleViolation) as error:
        service.verify_upload("req_a", key)
    assert error.value.code == "EVIDENCE_WRONG_TYPE" and storage.objects == {}


def test_an_empty_upload_counts_as_not_uploaded_and_is_deleted():
    service, storage, _, _ = service_with(service_request())
    key = issued(service)
    storage.put(key, 0)
    with pytest.raises(BusinessRuleViolation) as error:
        service.verify_upload("req_a", key)
    assert error.value.code == "EVIDENCE_NOT_UPLOADED" and storage.objects == {}


@pytest.mark.parametrize("key", ["evidence/req_b/20261202T155507-0000000000000001.jpg",
                                 "evidence/req_a/manual.jpg", "evidence/req_a/../req_b/x.jpg", "x"])
def test_keys_not_issued_for_the_request_are_refused_without_a_look(key):
    service, storage, _, _ = service_with(service_request(), service_request("req_b"))
    storage.put(key, 10)
    with pytest.raises(ValidationError):
        service.verify_upload("req_a", key)
    assert storage.heads == 0 and key in storage.objects


def test_the_request_service_is_wired_to_the_evidence_check(aws):
    from functions import bootstrap

    assert bootstrap.requests().evidence is bootstrap.evidence()


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
    # The one rule of every domain's log lines: resident id, or the admin's hashed openid.
    assert [(line["viewer"], line["viewer_role"], line["request_id"]) for line in lines] == [
        (openid_hash("admin-test"), "admin", "req_a"), ("res_req", "requester", "req_a")]
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


def test_the_sweep_deletes_registered_photos_their_request_does_not_name_after_the_window():
    named_request = service_request("req_a", lc.IN_SERVICE)
    service, storage, _, now = service_with(named_request, service_request("req_b"))
    keep = service.issue_upload(VOLUNTEER, "req_a")["key"]
    drop = service.issue_upload(VOLUNTEER, "req_a")["key"]
    gone = service.issue_upload(VOLUNTEER, "req_b")["key"]
    for key in (keep, drop, gone):
        storage.put(key, 10)
    service.requests.by_id["req_a"] = replace(named_request, evidence_keys=[keep])
    del service.requests.by_id["req_b"]                      # a request that no longer exists names nothing
    now.at = NOW + REFERENCE_WINDOW
    assert service.sweep_unreferenced() == {"deleted": 0, "kept": 0}
    now.at = NOW + REFERENCE_WINDOW + timedelta(seconds=1)
    assert service.sweep_unreferenced(batch=2) == {"deleted": 2, "kept": 1}
    assert sorted(storage.objects) == [keep] and service.uploads.uploads == {}
