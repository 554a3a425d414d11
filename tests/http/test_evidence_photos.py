"""Check-in/out photos over HTTP: the volunteer gets a pre-signed PUT (and a POST form), check-in
and completion accept only a key whose photo was uploaded within the limit (refused photos are
deleted), the parties and admins get short links, everyone else is refused, every view is
logged, and retention deletes old photos."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from functions.core import clock
from functions.core.clock import CHINA_TZ
from tests.helpers import admin_headers, as_json, json_headers, login, register, verified_resident
from tests.queues import drain

EVENTS = Path(__file__).resolve().parents[2] / "events"
MAX_BYTES = 5 * 1024 * 1024
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA_TZ)
NEED = {"category": "pickup", "title": "放学接孩子", "description": "实验小学门口",
        "start_at": (NOW + timedelta(hours=3)).isoformat(), "duration_minutes": 60}


@pytest.fixture
def people(client, app):
    clock.set_clock(lambda: NOW)
    requester, _ = verified_resident(client, "ev-req", building="1", room="101")
    spouse, _ = verified_resident(client, "ev-spouse", building="1", room="101")
    volunteer, _ = verified_resident(client, "ev-vol", building="2", room="201")
    volunteer_spouse, _ = verified_resident(client, "ev-vol-spouse", building="2", room="201")
    stranger, _ = verified_resident(client, "ev-stranger", building="3", room="301")
    return dict(client=client, app=app, requester=requester, spouse=spouse, volunteer=volunteer,
                volunteer_spouse=volunteer_spouse, stranger=stranger, admin=admin_headers(client))


@pytest.fixture
def world(people):
    client, requester, volunteer = people["client"], people["requester"], people["volunteer"]
    posted = client.http.post("/v1/requests", body=as_json(NEED), headers=json_headers(requester, "ev-need-1"))
    assert posted.status_code == 201, posted.body
    need = posted.json_body
    accepted = client.http.post(f"/v1/requests/{need['id']}/accept", headers=volunteer)
    assert accepted.status_code == 200, accepted.body
    return dict(people, need=need)


def refused(response, status, code):
    assert response.status_code == status, response.body
    body = response.json_body
    assert body["code"] == code and isinstance(body["message"], str) and "details" in body
    return body


def ask_upload(client, need_id, headers, body=None):
    return client.http.post(f"/v1/requests/{need_id}/evidence", headers=headers,
                            body=as_json(body if body is not None else {"content_type": "image/jpeg"}))


def upload(issued, content: bytes):
    """What a client built to API.md does: PUT the bytes to upload_url with the given headers."""
    return requests.put(issued["upload_url"], data=content, headers=issued["headers"])


def upload_form(issued, content: bytes, content_type: str = "image/jpeg"):
    """What wx.uploadFile does: a multipart POST of the form fields, then the file."""
    form = issued["form"]
    return requests.post(form["url"], data=form["fields"], files={"file": ("p", content, content_type)})


def act(client, need_id, action, headers, body):
    return client.http.post(f"/v1/requests/{need_id}/{action}", headers=headers, body=as_json(body))


def evidence_keys(client, need_id, headers):
    listed = client.http.get(f"/v1/requests/{need_id}/evidence", headers=headers)
    assert listed.status_code == 200, listed.body
    return [item["key"] for item in listed.json_body["items"]]


def test_volunteer_uploads_checks_in_with_the_key_and_parties_see_the_photo(world):
    client, need, volunteer = world["client"], world["need"], world["volunteer"]
    photo = b"\xff\xd8\xff" + b"1" * 64
    form = ask_upload(client, need["id"], volunteer, {"content_type": "image/jpeg", "size": len(photo)})
    assert form.status_code == 200, form.body
    body = form.json_body
    assert body["key"].startswith(f"evidence/{need['id']}/") and body["key"].endswith(".jpg")
    assert body["expires_in"] == 300 and body["method"] == "PUT" and body["upload_url"]
    assert body["headers"] == {"Content-Type": "image/jpeg", "Content-Length": str(len(photo))}
    assert "content-length%3Bcontent-type%3Bhost" in body["upload_url"]
    assert body["form"]["fields"]["key"] == body["key"] and body["form"]["fields"]["Content-Type"] == "image/jpeg"
    assert body["form"]["max_bytes"] == 5 * 1024 * 1024
    assert upload(body, photo).status_code == 200

    # Pickup is insured: the queue writes the record, then check-in takes the photo's key.
    drain(world["app"], "insurance")
    checked_in = client.http.post(f"/v1/requests/{need['id']}/check-in", headers=volunteer,
                                  body=as_json({"evidence_key": body["key"]}))
    assert checked_in.status_code == 200, checked_in.body
    assert ask_upload(client, need["id"], volunteer, {"content_type": "image/heic"}).status_code == 200

    for who in ("requester", "spouse", "volunteer", "admin"):
        listed = client.http.get(f"/v1/requests/{need['id']}/evidence", headers=world[who])
        assert listed.status_code == 200, (who, listed.body)
        items = listed.json_body["items"]
        assert [i["key"] for i in items] == [body["key"]]  # the heic URL was never used
        assert items[0]["attached"] is True and items[0]["expires_in"] == 120
        assert requests.get(items[0]["url"]).content.startswith(b"\xff\xd8\xff")

    log = client.http.get(f"/v1/admin/requests/{need['id']}/evidence/access-log", headers=world["admin"])
    assert log.status_code == 200
    roles = [e["viewer_role"] for e in log.json_body["items"]]
    assert sorted(roles) == ["admin", "requester", "requester", "volunteer"]
    assert log.json_body["next_cursor"] is None
    assert all(set(e) == {"request_id", "viewer_id", "viewer_role", "photo_count", "viewed_at"}
               for e in log.json_body["items"])


def test_contract_client_without_a_body_gets_a_put_that_works(world):
    client, need, volunteer = world["client"], world["need"], world["volunteer"]
    issued = client.http.post(f"/v1/requests/{need['id']}/evidence", headers=volunteer).json_body
    assert issued["method"] == "PUT" and issued["headers"] == {"Content-Type": "image/jpeg"}
    assert "content-type%3Bhost" in issued["upload_url"] and "content-length" not in issued["upload_url"]
    assert upload(issued, b"\xff\xd8" + b"2" * 300).status_code == 200
    drain(world["app"], "insurance")
    checked_in = act(client, need["id"], "check-in", volunteer, {"evidence_key": issued["key"]})
    assert checked_in.status_code == 200, checked_in.body
    assert checked_in.json_body["status"] == "in_service"


@pytest.mark.parametrize("size", [0, MAX_BYTES + 1, "12", 1.5, True])
def test_declared_size_outside_1_byte_to_5_mb_is_400(world, size):
    error = refused(ask_upload(world["client"], world["need"]["id"], world["volunteer"],
                               {"content_type": "image/jpeg", "size": size}), 400, "VALIDATION_ERROR")
    assert list(error["details"]["fields"]) == ["size"]


def test_check_in_and_complete_refuse_a_key_with_nothing_uploaded(world):
    client, need, volunteer = world["client"], world["need"], world["volunteer"]
    drain(world["app"], "insurance")
    never = ask_upload(client, need["id"], volunteer).json_body["key"]
    error = refused(act(client, need["id"], "check-in", volunteer, {"evidence_key": never}), 422,
                    "EVIDENCE_NOT_UPLOADED")
    assert error["details"]["evidence_key"] == never
    assert client.http.get(f"/v1/requests/{need['id']}", headers=volunteer).json_body["status"] == "accepted"
    assert act(client, need["id"], "check-in", volunteer, {}).status_code == 200
    refused(act(client, need["id"], "complete", volunteer, {"minutes": 60, "evidence_key": never}), 422,
            "EVIDENCE_NOT_UPLOADED")
    assert client.http.get(f"/v1/requests/{need['id']}", headers=volunteer).json_body["status"] == "in_service"


def test_an_oversize_photo_is_refused_at_check_in_and_deleted(world):
    client, need, volunteer = world["client"], world["need"], world["volunteer"]
    drain(world["app"], "insurance")
    issued = ask_upload(client, need["id"], volunteer).json_body  # no size declared: S3 takes any
    assert upload(issued, b"\xff" * (MAX_BYTES + 1)).status_code == 200
    assert evidence_keys(client, need["id"], volunteer) == [issued["key"]]
    error = refused(act(client, need["id"], "check-in", volunteer, {"evidence_key": issued["key"]}), 422,
                    "EVIDENCE_TOO_LARGE")
    assert error["details"]["max_bytes"] == MAX_BYTES
    assert evidence_keys(client, need["id"], volunteer) == []  # not kept
    refused(act(client, need["id"], "check-in", volunteer, {"evidence_key": issued["key"]}), 422,
            "EVIDENCE_NOT_UPLOADED")
    stored = client.http.get(f"/v1/requests/{need['id']}", headers=volunteer).json_body
    assert stored["status"] == "accepted"


def test_a_refused_caller_never_gets_a_photo_looked_at_or_deleted(world):
    client, need, volunteer = world["client"], world["need"], world["volunteer"]
    drain(world["app"], "insurance")
    issued = ask_upload(client, need["id"], volunteer).json_body
    assert upload(issued, b"\xff" * (MAX_BYTES + 1)).status_code == 200
    for who in ("stranger", "requester", "volunteer_spouse"):
        refused(act(client, need["id"], "check-in", world[who], {"evidence_key": issued["key"]}), 403, "FORBIDDEN")
    assert evidence_keys(client, need["id"], volunteer) == [issued["key"]]


def test_only_the_volunteer_gets_an_upload_form_and_strangers_get_no_links(world):
    client, need = world["client"], world["need"]
    for who, code in (("requester", "FORBIDDEN"), ("spouse", "FORBIDDEN"), ("volunteer_spouse", "FORBIDDEN"),
                      ("stranger", "FORBIDDEN"), ("admin", "NOT_REGISTERED")):  # the test admin is no resident
        refused(ask_upload(client, need["id"], world[who]), 403, code)
    for who in ("volunteer_spouse", "stranger"):
        refused(client.http.get(f"/v1/requests/{need['id']}/evidence", headers=world[who]), 403, "FORBIDDEN")
    log = client.http.get(f"/v1/admin/requests/{need['id']}/evidence/access-log", headers=world["admin"])
    assert log.status_code == 200 and log.json_body["items"] == []  # refused callers viewed nothing


def test_pending_resident_and_anonymous_callers_are_refused(world):
    client, need = world["client"], world["need"]
    pending, _ = register(client, "ev-pending", building="9", room="909")
    refused(client.http.get(f"/v1/requests/{need['id']}/evidence", headers=pending), 403, "FORBIDDEN")
    refused(ask_upload(client, need["id"], pending), 403, "NOT_VERIFIED")
    refused(client.http.get(f"/v1/requests/{need['id']}/evidence"), 401, "UNAUTHENTICATED")
    refused(ask_upload(client, need["id"], {"Content-Type": "application/json"}), 401, "UNAUTHENTICATED")
    unregistered = login(client, "ev-nobody")
    refused(client.http.get(f"/v1/requests/{need['id']}/evidence", headers=unregistered), 403, "FORBIDDEN")


def test_wrong_content_type_is_400(world):
    for body in ({"content_type": "image/gif"}, {"content_type": "text/html"}, {"content_type": 5},
                 {"content_type": "IMAGE/JPEG"}):
        error = refused(ask_upload(world["client"], world["need"]["id"], world["volunteer"], body), 400,
                        "VALIDATION_ERROR")
        assert list(error["details"]["fields"]) == ["content_type"], body


def test_malformed_body_is_400_and_an_empty_body_defaults_to_jpeg(world):
    client, need, volunteer = world["client"], world["need"], world["volunteer"]
    bad = client.http.post(f"/v1/requests/{need['id']}/evidence", headers=volunteer, body="{not json")
    refused(bad, 400, "VALIDATION_ERROR")
    empty = client.http.post(f"/v1/requests/{need['id']}/evidence", headers=volunteer, body="")
    assert empty.status_code == 200 and empty.json_body["key"].endswith(".jpg")


def test_unknown_request_is_404(people):
    client = people["client"]
    refused(ask_upload(client, "req_doesnotexist", people["volunteer"]), 404, "NOT_FOUND")
    refused(client.http.get("/v1/requests/req_doesnotexist/evidence", headers=people["requester"]), 404,
            "NOT_FOUND")
    refused(client.http.get("/v1/admin/requests/req_doesnotexist/evidence/access-log",
                            headers=people["admin"]), 404, "NOT_FOUND")


def test_no_upload_before_accept_or_after_completion(world):
    client, requester, volunteer = world["client"], world["requester"], world["volunteer"]
    other = client.http.post("/v1/requests", body=as_json(NEED), headers=json_headers(requester, "ev-need-2")).json_body
    refused(ask_upload(client, other["id"], volunteer), 403, "FORBIDDEN")  # nobody's volunteer yet
    need = world["need"]
    drain(world["app"], "insurance")
    client.http.post(f"/v1/requests/{need['id']}/check-in", headers=volunteer, body="{}")
    issued = ask_upload(client, need["id"], volunteer).json_body
    assert upload(issued, b"\xff\xd8done").status_code == 200
    key = issued["key"]
    done = client.http.post(f"/v1/requests/{need['id']}/complete", headers=volunteer,
                            body=as_json({"minutes": 60, "evidence_key": key}))
    assert done.status_code == 200, done.body
    refused(ask_upload(client, need["id"], volunteer), 409, "INVALID_STATE")


def test_only_admins_read_the_access_log(people):
    for who in ("requester", "volunteer", "stranger"):
        refused(people["client"].http.get("/v1/admin/requests/req_any/evidence/access-log",
                                          headers=people[who]), 403, "FORBIDDEN")


def test_retention_schedule_deletes_old_photos_and_links_skip_them(world):
    client, app, need, volunteer = world["client"], world["app"], world["need"], world["volunteer"]
    assert upload(ask_upload(client, need["id"], volunteer).json_body, b"old").status_code == 200
    schedule_event = json.loads((EVENTS / "evidence-retention.json").read_text(encoding="utf-8"))
    handler = app.handler_map["evidence-retention"]

    clock.set_clock(lambda: NOW + timedelta(days=1))
    assert upload_form(ask_upload(client, need["id"], volunteer).json_body, b"newer").status_code in (200, 204)
    assert handler(schedule_event, None) == {"deleted": 0}

    clock.set_clock(lambda: NOW + timedelta(days=180, minutes=1))
    assert handler(schedule_event, None) == {"deleted": 1}
    requester = login(client, "ev-req")  # tokens last 7 days: log in again on the moved clock
    items = client.http.get(f"/v1/requests/{need['id']}/evidence", headers=requester).json_body["items"]
    assert [requests.get(i["url"]).content for i in items] == [b"newer"]

    clock.set_clock(lambda: NOW + timedelta(days=181, minutes=1))
    assert handler(schedule_event, None) == {"deleted": 1}
    assert client.http.get(f"/v1/requests/{need['id']}/evidence", headers=login(client, "ev-req")).json_body == {
        "items": []}


# --- outside testing, defect 9: an upload nothing names does not stay ---------------------------

def sweep(app):
    event = json.loads((EVENTS / "evidence-uploads.json").read_text(encoding="utf-8"))
    return app.handler_map["evidence-uploads"](event, None)


def registered_uploads() -> int:
    from functions.safety.dynamo import EvidenceUploadItem

    return EvidenceUploadItem.count()


def test_uploads_never_named_within_the_window_are_deleted_whatever_their_size(world):
    client, app, need, volunteer = world["client"], world["app"], world["need"], world["volunteer"]
    drain(app, "insurance")
    named = ask_upload(client, need["id"], volunteer).json_body
    huge = ask_upload(client, need["id"], volunteer).json_body       # a size-less PUT: S3 takes any size
    never = ask_upload(client, need["id"], volunteer).json_body      # issued, nothing sent
    assert upload(named, b"\xff\xd8" + b"1" * 100).status_code == 200
    assert upload(huge, b"\xff" * (3 * MAX_BYTES)).status_code == 200
    assert act(client, need["id"], "check-in", volunteer, {"evidence_key": named["key"]}).status_code == 200
    assert registered_uploads() == 3

    clock.set_clock(lambda: NOW + timedelta(minutes=29))
    assert sweep(app) == {"deleted": 0, "kept": 0}                   # still inside the window
    assert sorted(evidence_keys(client, need["id"], volunteer)) == sorted([named["key"], huge["key"]])

    clock.set_clock(lambda: NOW + timedelta(minutes=31))
    assert sweep(app) == {"deleted": 2, "kept": 1}
    assert evidence_keys(client, need["id"], volunteer) == [named["key"]]
    assert registered_uploads() == 0
    assert sweep(app) == {"deleted": 0, "kept": 0}                   # a repeated sweep changes nothing
    stored = client.http.get(f"/v1/requests/{need['id']}", headers=volunteer).json_body
    assert stored["status"] == "in_service"


def test_a_photo_is_named_within_its_use_window_or_not_at_all(world):
    client, app, need, volunteer = world["client"], world["app"], world["need"], world["volunteer"]
    drain(app, "insurance")
    late = ask_upload(client, need["id"], volunteer).json_body
    assert upload(late, b"\xff\xd8late").status_code == 200
    clock.set_clock(lambda: NOW + timedelta(minutes=21))
    error = refused(act(client, need["id"], "check-in", volunteer, {"evidence_key": late["key"]}), 422,
                    "EVIDENCE_EXPIRED")
    assert error["details"] == {"evidence_key": late["key"], "use_within_minutes": 20}
    assert client.http.get(f"/v1/requests/{need['id']}", headers=volunteer).json_body["status"] == "accepted"
    fresh = ask_upload(client, need["id"], volunteer).json_body
    assert upload(fresh, b"\xff\xd8fresh").status_code == 200
    assert act(client, need["id"], "check-in", volunteer, {"evidence_key": fresh["key"]}).status_code == 200


def test_the_sweep_dying_between_delete_and_forget_is_simply_repeated(world, monkeypatch):
    client, app, need, volunteer = world["client"], world["app"], world["need"], world["volunteer"]
    orphan = ask_upload(client, need["id"], volunteer).json_body
    assert upload(orphan, b"\xff\xd8orphan").status_code == 200
    from functions.safety.dynamo import DynamoUploadRegister

    def crash(self, uploads):
        raise ConnectionError("the Lambda timed out here")

    clock.set_clock(lambda: NOW + timedelta(minutes=31))
    with monkeypatch.context() as patched:
        patched.setattr(DynamoUploadRegister, "remove", crash)
        with pytest.raises(ConnectionError):
            sweep(app)
    assert evidence_keys(client, need["id"], volunteer) == [] and registered_uploads() == 1
    assert sweep(app) == {"deleted": 1, "kept": 0}
    assert registered_uploads() == 0
