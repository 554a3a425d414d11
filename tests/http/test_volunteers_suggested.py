"""GET /v1/requests/suggested: posting a need → the matching queue → suggestions, end to end."""
from __future__ import annotations

from datetime import timedelta

import boto3
import pytest

from functions.core import clock
from functions.core.messaging import queue_name
from local.lambda_events import lambda_context, sqs_event
from tests.helpers import as_json, json_headers, register, verified_resident

PROFILE = {"categories": ["pickup"], "availability": [], "accepting": True}


def drain_matching_queue() -> int:
    """What the SQS → Lambda event source does: receive, invoke the app's handler, delete."""
    from functions.app import app

    match_requests = app.handler_map["match-requests"]

    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name("matching"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    handled = 0
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                       MessageAttributeNames=["All"]).get("Messages", [])
        if not messages:
            return handled
        result = match_requests(sqs_event(messages, arn, "cn-north-1"), lambda_context("match-requests", 60))
        assert result == {"batchItemFailures": []}
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        handled += len(messages)


@pytest.fixture
def people(client):
    requester, _ = verified_resident(client, "asker-1", building="3", room="502")
    family, _ = verified_resident(client, "asker-1-spouse", building="3", room="502")
    helper, _ = verified_resident(client, "helper-1", building="3", room="101")
    other, _ = verified_resident(client, "helper-2", building="8", room="101")
    for headers in (family, helper, other):
        assert client.http.put("/v1/volunteers/me", body=as_json(PROFILE), headers=headers).status_code == 200
    return {"requester": requester, "family": family, "helper": helper, "other": other}


def post_need(client, headers, key: str, title: str = "放学接孩子") -> dict:
    body = {"category": "pickup", "title": title, "description": "学校东门",
            "start_at": clock.isoformat(clock.now() + timedelta(days=2)), "duration_minutes": 60}
    response = client.http.post("/v1/requests", body=as_json(body), headers=json_headers(headers, key))
    assert response.status_code == 201, response.body
    return response.json_body


def suggested(client, headers, query: str = ""):
    return client.http.get(f"/v1/requests/suggested{query}", headers=headers)


def test_posted_needs_are_suggested_to_matched_volunteers_and_not_to_the_family(client, people):
    first = post_need(client, people["requester"], "need-1")
    second = post_need(client, people["requester"], "need-2", title="周末接孩子")
    assert drain_matching_queue() == 2
    for who in ("helper", "other"):
        body = suggested(client, people[who]).json_body
        assert [r["id"] for r in body["items"]] == [second["id"], first["id"]] and body["next_cursor"] is None
        assert body["items"][0]["status"] == "open" and body["items"][0]["title"] == "周末接孩子"
    assert suggested(client, people["family"]).json_body == {"items": [], "next_cursor": None}
    page = suggested(client, people["helper"], "?limit=1").json_body
    assert [r["id"] for r in page["items"]] == [second["id"]] and page["next_cursor"]
    rest = suggested(client, people["helper"], f"?limit=1&cursor={page['next_cursor']}").json_body
    assert [r["id"] for r in rest["items"]] == [first["id"]]


def test_a_suggestion_taken_by_someone_else_disappears(client, people):
    need = post_need(client, people["requester"], "need-3")
    drain_matching_queue()
    accepted = client.http.post(f"/v1/requests/{need['id']}/accept", headers=people["other"])
    assert accepted.status_code == 200, accepted.body
    assert suggested(client, people["helper"]).json_body["items"] == []


def test_the_literal_path_is_not_taken_for_a_request_id(client, people):
    response = suggested(client, people["helper"])
    assert response.status_code == 200 and response.json_body == {"items": [], "next_cursor": None}


def test_bad_queries_are_400(client, people):
    for query, field in [("?limit=0", "limit"), ("?limit=x", "limit"), ("?cursor=bm9wZQ", "cursor"),
                         ("?cursor=eyJhIjp7IlMiOiJiIn19", "cursor")]:
        response = suggested(client, people["helper"], query)
        assert response.status_code == 400 and field in response.json_body["details"]["fields"], query


def test_only_verified_residents(client):
    assert client.http.get("/v1/requests/suggested").status_code == 401
    pending, _ = register(client, "pending-suggest", building="3", room="303")
    response = suggested(client, pending)
    assert response.status_code == 403 and response.json_body["code"] == "NOT_VERIFIED"
