"""Evidence on moto S3: photos PUT to the pre-signed URL land under the request's prefix, the
POST form pins key, type and size range, a used key is checked with one HeadObject (refused photos
are deleted), links fetch photos, retention deletes by the key's issue date on a pinned clock, and
the access log is a DynamoDB table with a cursor.

moto (5.x) does not check the signature of pre-signed URLs: it stores a PUT of any size or type.
What S3 would refuse is checked here by ``s3_accepts``, which verifies the SigV4 query signature
of the request ``requests`` is about to send, the way S3 does."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import pytest
import requests

from functions.core import clock
from functions.core.errors import BusinessRuleViolation, ValidationError
from functions.core.settings import get_settings
from functions.core.caller import Caller
from functions.requests import model as lc
from functions.requests.model import ServiceRequest
from functions.safety.dynamo import DynamoAccessLog, DynamoUploadRegister, EvidenceAccessItem
from functions.safety.model import MAX_UPLOAD_BYTES, AccessLogEntry, evidence_key
from functions.safety.service import EvidenceService
from functions.safety.s3 import S3ObjectStorage

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
    return EvidenceService(Requests(accepted()), storage, DynamoAccessLog(), DynamoUploadRegister(), retention_days=180)


def policy_of(form: dict) -> dict:
    return json.loads(base64.b64decode(form["fields"]["policy"]))


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def s3_accepts(prepared: requests.PreparedRequest) -> bool:
    """Whether the SigV4 query signature of a pre-signed URL matches the request as sent: its
    method, path, query and every header named in X-Amz-SignedHeaders (what S3 checks before it
    looks at anything else)."""
    parts = urlsplit(prepared.url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = params.pop("X-Amz-Signature")
    signed = params["X-Amz-SignedHeaders"].split(";")
    sent = {name.lower(): str(value).strip() for name, value in prepared.headers.items()}
    sent["host"] = parts.netloc
    if any(name not in sent for name in signed):
        return False
    canonical = "\n".join([
        prepared.method, parts.path,
        "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())),
        "".join(f"{name}:{sent[name]}\n" for name in signed), ";".join(signed), "UNSIGNED-PAYLOAD"])
    access_key, day, region, service_name, terminal = params["X-Amz-Credential"].split("/")
    secret = boto3.Session().get_credentials().get_frozen_credentials()
    assert secret.access_key == access_key
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", params["X-Amz-Date"], f"{day}/{region}/{service_name}/{terminal}",
                                hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = ("AWS4" + secret.secret_key).encode()
    for part in (day, region, service_name, terminal):
        signing_key = _hmac(signing_key, part)
    return hmac.compare_digest(hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest(), signature)


def put_request(upload: dict, body: bytes, **header_changes: str) -> requests.PreparedRequest:
    """The PUT a client makes with the returned headers (``requests`` adds Content-Length)."""
    headers = {**upload["headers"], **{k.replace("_", "-"): v for k, v in header_changes.items()}}
    return requests.Request("PUT", upload["upload_url"], data=body, headers=headers).prepare()


def url_params(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def test_put_url_is_regional_sigv4_for_300_seconds_and_signs_the_declared_size(service):
    sized = service.issue_upload(VOLUNTEER, "req_a", "image/jpeg", size=1234)
    params = url_params(sized["upload_url"])
    assert urlsplit(sized["upload_url"]).netloc == f"{get_settings().evidence_bucket}.s3.cn-north-1.amazonaws.com.cn"
    assert urlsplit(sized["upload_url"]).path == "/" + sized["key"]
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and params["X-Amz-Expires"] == "300"
    assert params["X-Amz-Credential"].endswith("/cn-north-1/s3/aws4_request")
    assert params["X-Amz-SignedHeaders"] == "content-length;content-type;host"
    assert sized["headers"] == {"Content-Type": "image/jpeg", "Content-Length": "1234"}
    unsized = service.issue_upload(VOLUNTEER, "req_a", "image/jpeg")
    assert url_params(unsized["upload_url"])["X-Amz-SignedHeaders"] == "content-type;host"
    assert unsized["headers"] == {"Content-Type": "image/jpeg"}


def test_s3_signature_admits_only_the_declared_size_and_type(service):
    photo = b"\xff\xd8\xff" + b"1" * 1021
    upload = service.issue_upload(VOLUNTEER, "req_a", "image/jpeg", size=len(photo))
    assert s3_accepts(put_request(upload, photo))
    assert not s3_accepts(put_request(upload, photo + b"more"))
    assert not s3_accepts(put_request(upload, photo[:-1]))
    assert not s3_accepts(put_request(upload, photo, Content_Type="image/png"))
    tampered = put_request(upload, photo)
    tampered.url = tampered.url.replace(upload["key"], upload["key"].replace(".jpg", ".png"))
    assert not s3_accepts(tampered)
    # Without a declared size any size passes the signature: check-in's HeadObject enforces it.
    unsized = service.issue_upload(VOLUNTEER, "req_a", "image/jpeg")
    assert s3_accepts(put_request(unsized, photo)) and s3_accepts(put_request(unsized, photo * 2))
    assert not s3_accepts(put_request(unsized, photo, Content_Type="image/heic"))


def test_put_with_the_declared_size_lands_and_passes_the_check(service, s3):
    photo = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    upload = service.issue_upload(VOLUNTEER, "req_a", "image/png", size=len(photo))
    prepared = put_request(upload, photo)
    assert s3_accepts(prepared)
    response = requests.Session().send(prepared)
    assert response.status_code == 200, response.text
    head = s3.head_object(Bucket=get_settings().evidence_bucket, Key=upload["key"])
    assert (head["ContentLength"], head["ContentType"]) == (len(photo), "image/png")
    service.verify_upload("req_a", upload["key"])
    items = service.links(REQUESTER, "req_a")
    assert [(i["key"], i["size"]) for i in items] == [(upload["key"], len(photo))]
    assert requests.get(items[0]["url"]).content == photo


def test_check_refuses_a_missing_photo_and_deletes_an_oversize_one(service, s3):
    bucket = get_settings().evidence_bucket
    never = service.issue_upload(VOLUNTEER, "req_a")
    with pytest.raises(BusinessRuleViolation) as error:
        service.verify_upload("req_a", never["key"])
    assert error.value.code == "EVIDENCE_NOT_UPLOADED"
    big = service.issue_upload(VOLUNTEER, "req_a")
    too_big = b"\xff" * (MAX_UPLOAD_BYTES + 1)
    assert requests.put(big["upload_url"], data=too_big, headers=big["headers"]).status_code == 200
    with pytest.raises(BusinessRuleViolation) as error:
        service.verify_upload("req_a", big["key"])
    assert error.value.code == "EVIDENCE_TOO_LARGE"
    assert s3.list_objects_v2(Bucket=bucket, Prefix="evidence/")["KeyCount"] == 0
    exact = service.issue_upload(VOLUNTEER, "req_a")
    assert requests.put(exact["upload_url"], data=too_big[:-1], headers=exact["headers"]).status_code == 200
    service.verify_upload("req_a", exact["key"])  # exactly 5 MB is allowed


def test_check_deletes_a_photo_of_another_type(service, s3):
    upload = service.issue_upload(VOLUNTEER, "req_a", "image/jpeg")
    s3.put_object(Bucket=get_settings().evidence_bucket, Key=upload["key"], Body=b"<html>", ContentType="text/html")
    with pytest.raises(BusinessRuleViolation) as error:
        service.verify_upload("req_a", upload["key"])
    assert error.value.code == "EVIDENCE_WRONG_TYPE"
    assert service.storage.head(upload["key"]) is None


def test_post_policy_pins_key_type_and_size_range(service):
    upload = service.issue_upload(VOLUNTEER, "req_a", "image/jpeg")
    form = upload["form"]
    policy = policy_of(form)
    conditions = policy["conditions"]
    assert ["content-length-range", 1, MAX_UPLOAD_BYTES] in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert {"key": upload["key"]} in conditions
    assert {"bucket": get_settings().evidence_bucket} in conditions
    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    signed_at = datetime.strptime(form["fields"]["x-amz-date"], "%Y%m%dT%H%M%SZ")
    assert expires - signed_at == timedelta(seconds=300)
    # Every form field S3 will receive is named by the policy (S3 rejects unnamed fields).
    named = {next(iter(c)) for c in conditions if isinstance(c, dict)}
    assert set(form["fields"]) - {"policy", "x-amz-signature"} <= named
    assert form["fields"]["Content-Type"] == "image/jpeg" and form["max_bytes"] == MAX_UPLOAD_BYTES


def test_upload_through_the_form_then_view_through_the_link(service):
    upload = service.issue_upload(VOLUNTEER, "req_a", "image/png")
    photo = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    response = requests.post(upload["form"]["url"], data=upload["form"]["fields"],
                             files={"file": ("photo.png", photo, "image/png")})
    assert response.status_code in (200, 204), response.text
    service.verify_upload("req_a", upload["key"])
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
    service = EvidenceService(Requests(accepted()), storage, DynamoAccessLog(), DynamoUploadRegister(), retention_days=180)
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
