"""Evidence on moto S3: the POST policy really limits size and type, uploads land under the
request's prefix, links fetch them, retention deletes by the key's issue date on a pinned clock,
and the access log is a DynamoDB table with a cursor."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta

import boto3
import pytest
import requests

from functions.core import clock
from functions.core.errors import ValidationError
from functions.core.settings import get_settings
from functions.identity.caller import Caller
from functions.requests import lifecycle as lc
from functions.requests.lifecycle import ServiceRequest
from functions.safety.access_log_store import DynamoAccessLog, EvidenceAccessItem
from functions.safety.evidence import MAX_UPLOAD_BYTES, AccessLogEntry, EvidenceService, evidence_key
from functions.safety.evidence_storage import S3ObjectStorage

T = clock.CHINA_TZ
NOW = datetime(2026, 12, 2, 15, 55, 7, tzinfo=T)
VOLUNTEER = Caller("o-vol", "res_vol", "hh_vol", "verified", frozenset({"resident"}))
REQUESTER = Caller("o-req", "res_req", "hh_req", "verified", frozenset({"resident"}))


class Requests:
    def __init__(self, *items: ServiceRequest):
        self.by_id = {r.id: r for r in items}

    def get(self, request_id: str) -> ServiceRequest:
        return self.by_id[request_id]


def accepted(request_id: str = "req_a") -> ServiceRequest:
    return ServiceRequest(
        id=request_id, status=lc.ACCEPTED, category="pickup", title="接孩子", description="",
        start_at=NOW + timedelta(hours=1), duration_minutes=60, requester_id="res_req", household_id="hh_req",
        payer_account="acc", hold_transfer_id="tr", credits_held=30, created_at=NOW, content_hash="x",
        volunteer_id="res_vol", volunteer_household_id="hh_vol")


@pytest.fixture
def s3(aws):
    return boto3.client("s3")


@pytest.fixture
def service(s3):
    clock.set_clock(lambda: NOW)
    storage = S3ObjectStorage(get_settings().evidence_bucket)
    return EvidenceService(Requests(accepted()), storage, DynamoAccessLog(), retention_days=180)


def policy_of(upload: dict) -> dict:
    return json.loads(base64.b64decode(upload["fields"]["policy"]))


def test_post_policy_pins_key_type_and_size_range(service):
    upload = service.issue_upload(VOLUNTEER, "req_a", "image/jpeg")
    policy = policy_of(upload)
    conditions = policy["conditions"]
    assert ["content-length-range", 1, MAX_UPLOAD_BYTES] in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert {"key": upload["key"]} in conditions
    assert {"bucket": get_settings().evidence_bucket} in conditions
    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    signed_at = datetime.strptime(upload["fields"]["x-amz-date"], "%Y%m%dT%H%M%SZ")
    assert expires - signed_at == timedelta(seconds=300)
    # Every form field S3 will receive is named by the policy (S3 rejects unnamed fields).
    named = {next(iter(c)) for c in conditions if isinstance(c, dict)}
    assert set(upload["fields"]) - {"policy", "x-amz-signature"} <= named
    assert upload["fields"]["Content-Type"] == "image/jpeg" and upload["method"] == "POST"


def test_upload_through_the_form_then_view_through_the_link(service):
    upload = service.issue_upload(VOLUNTEER, "req_a", "image/png")
    photo = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    response = requests.post(upload["upload_url"], data=upload["fields"],
                             files={"file": ("photo.png", photo, "image/png")})
    assert response.status_code in (200, 204), response.text
    items = service.links(REQUESTER, "req_a")
    assert [(i["key"], i["size"]) for i in items] == [(upload["key"], len(photo))]
    assert requests.get(items[0]["url"]).content == photo
    assert "X-Amz-Expires=120" in items[0]["url"]


def test_retention_deletes_by_issue_date_not_last_modified(service, s3):
    bucket = get_settings().evidence_bucket
    old = evidence_key("req_a", NOW - timedelta(days=181), "00000000000000aa", "jpg")
    recent = evidence_key("req_a", NOW - timedelta(days=179), "00000000000000bb", "jpg")
    other_request_old = evidence_key("req_b", NOW - timedelta(days=400), "00000000000000cc", "heic")
    for key in (old, recent, other_request_old):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")  # moto stamps LastModified = now (real)
    s3.put_object(Bucket=bucket, Key="exports/keep.csv", Body=b"x")
    assert service.purge_expired() == 2
    remaining = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert remaining == ["evidence/req_a/" + recent.rsplit("/", 1)[1], "exports/keep.csv"]
    # The links no longer offer the deleted photo.
    assert [i["key"] for i in service.links(VOLUNTEER, "req_a")] == [recent]


def test_retention_pages_through_listings_and_delete_batches(s3):
    clock.set_clock(lambda: NOW)
    bucket = get_settings().evidence_bucket
    storage = S3ObjectStorage(bucket, list_page_size=3)
    service = EvidenceService(Requests(accepted()), storage, DynamoAccessLog(), retention_days=180)
    for number in range(8):
        age = timedelta(days=200 if number % 4 else 10)
        s3.put_object(Bucket=bucket, Key=evidence_key(f"req_{number % 3}", NOW - age, f"{number:016x}", "jpg"),
                      Body=b"")
    assert service.purge_expired(batch=4) == 6
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 2


def test_access_log_is_stored_newest_first_with_a_cursor(service):
    for minute in range(3):
        clock.set_clock(lambda m=minute: NOW + timedelta(minutes=m))
        service.links(VOLUNTEER if minute % 2 else REQUESTER, "req_a")
    admin = Caller("admin-test", None, None, None, frozenset({"admin"}))
    first, cursor = service.access_history(admin, "req_a", 2, None)
    rest, end = service.access_history(admin, "req_a", 2, json.loads(json.dumps(cursor)))
    assert [(e.viewer_id, e.viewed_at.minute) for e in first + rest] == [
        ("res_req", 57), ("res_vol", 56), ("res_req", 55)]
    assert end is None or service.access_history(admin, "req_a", 2, end)[0] == []
    item = next(iter(EvidenceAccessItem.query("req_a")))
    assert item.expires_at > int((NOW + timedelta(days=3 * 365 - 1)).timestamp())
    with pytest.raises(ValidationError):
        DynamoAccessLog().for_request("req_a", 2, {"request_id": {"S": "req_other"}, "viewed_key": {"S": "x"}})


def test_access_log_record_has_no_personal_fields(aws):
    DynamoAccessLog().record(AccessLogEntry("req_z", "res_1", "requester", 2, NOW))
    item = next(iter(EvidenceAccessItem.query("req_z")))
    assert set(item.attribute_values) == {"request_id", "viewed_key", "viewer_id", "viewer_role", "photo_count",
                                          "viewed_at", "expires_at"}
