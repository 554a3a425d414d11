"""志愿帮 skills: residents propose, admins approve or reject; only approved skills count."""
from __future__ import annotations

import pytest

from tests.helpers import admin_headers, as_json, register, verified_resident


@pytest.fixture
def volunteer(client):
    headers, _ = verified_resident(client, "skilled-1", building="6", room="201")
    return headers


def propose(client, headers, name="摄影", description="社区活动拍照"):
    return client.http.post("/v1/volunteers/me/skills", body=as_json({"name": name, "description": description}),
                            headers=headers)


def test_propose_review_and_count_in_matching(client, volunteer):
    client.http.put("/v1/volunteers/me", body=as_json({"categories": [], "accepting": True}), headers=volunteer)
    created = propose(client, volunteer)
    assert created.status_code == 201, created.body
    skill = created.json_body
    assert skill["status"] == "pending" and skill["name"] == "摄影"

    admin = admin_headers(client)
    pending = client.http.get("/v1/admin/skills?status=pending", headers=admin).json_body
    assert [s["id"] for s in pending["items"]] == [skill["id"]] and pending["next_cursor"] is None

    approved = client.http.post(f"/v1/admin/skills/{skill['id']}/approve", headers=admin)
    assert approved.status_code == 200 and approved.json_body["status"] == "approved"
    profile = client.http.get("/v1/volunteers/me", headers=volunteer).json_body
    assert profile["skills"] == ["摄影"] and profile["matched_categories"] == ["volunteer"]
    assert client.http.get("/v1/admin/skills", headers=admin).json_body["items"] == []

    rejected = client.http.post(f"/v1/admin/skills/{skill['id']}/reject", body=as_json({"reason": "不再提供"}),
                                headers=admin)
    assert rejected.json_body["status"] == "rejected" and rejected.json_body["reason"] == "不再提供"
    profile = client.http.get("/v1/volunteers/me", headers=volunteer).json_body
    assert profile["skills"] == [] and profile["matched_categories"] == []
    mine = client.http.get("/v1/volunteers/me/skills", headers=volunteer).json_body["items"]
    assert [(s["id"], s["status"]) for s in mine] == [(skill["id"], "rejected")]


def test_proposing_again_returns_the_same_skill_and_a_different_description_conflicts(client, volunteer):
    first = propose(client, volunteer).json_body
    again = propose(client, volunteer)
    assert again.status_code == 200 and again.json_body["id"] == first["id"]
    conflict = propose(client, volunteer, description="婚礼跟拍")
    assert conflict.status_code == 409 and conflict.json_body["code"] == "ALREADY_EXISTS"


def test_admin_list_is_paginated(client, volunteer):
    for n in range(3):
        propose(client, volunteer, name=f"技能{n}")
    admin = admin_headers(client)
    first = client.http.get("/v1/admin/skills?limit=2", headers=admin).json_body
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = client.http.get(f"/v1/admin/skills?limit=2&cursor={first['next_cursor']}", headers=admin).json_body
    assert len(second["items"]) == 1 and second["next_cursor"] is None


BAD_SKILLS = [
    ({"description": "x"}, "name"),
    ({"name": "", "description": "x"}, "name"),
    ({"name": "很长的技能名称" * 4, "description": "x"}, "name"),
    ({"name": "摄影"}, "description"),
    ({"name": "摄影", "description": "x" * 201}, "description"),
    ({"name": 5, "description": "x"}, "name"),
]
BAD_QUERIES = [("?status=approved-ish", "status"), ("?limit=0", "limit"), ("?limit=101", "limit"),
               ("?cursor=bm90LWEtY3Vyc29y", "cursor"), ("?cursor=eyJ4Ijp7IlMiOiIxIn19", "cursor")]


def test_bad_skill_input_is_400(client, volunteer):
    for body, field in BAD_SKILLS:
        response = client.http.post("/v1/volunteers/me/skills", body=as_json(body), headers=volunteer)
        assert response.status_code == 400 and field in response.json_body["details"]["fields"], body
    assert client.http.get("/v1/volunteers/me/skills", headers=volunteer).json_body["items"] == []


def test_bad_admin_queries_are_400(client):
    admin = admin_headers(client)
    for query, field in BAD_QUERIES:
        response = client.http.get(f"/v1/admin/skills{query}", headers=admin)
        assert response.status_code == 400 and field in response.json_body["details"]["fields"], query


def test_reviewing_an_unknown_skill_is_404_and_a_long_reason_400(client, volunteer):
    admin = admin_headers(client)
    assert client.http.post("/v1/admin/skills/skl_missing/approve", headers=admin).status_code == 404
    skill = propose(client, volunteer).json_body
    response = client.http.post(f"/v1/admin/skills/{skill['id']}/reject", body=as_json({"reason": "x" * 201}),
                                headers=admin)
    assert response.status_code == 400 and "reason" in response.json_body["details"]["fields"]


def test_residents_cannot_review_and_the_unverified_cannot_propose(client, volunteer):
    skill = propose(client, volunteer).json_body
    for path in (f"/v1/admin/skills/{skill['id']}/approve", f"/v1/admin/skills/{skill['id']}/reject"):
        response = client.http.post(path, headers=volunteer)
        assert response.status_code == 403 and response.json_body["code"] == "FORBIDDEN"
    assert client.http.get("/v1/admin/skills", headers=volunteer).status_code == 403
    assert client.http.get("/v1/admin/skills").status_code == 401
    pending, _ = register(client, "pending-skill", building="6", room="202")
    assert propose(client, pending).status_code == 403
    assert client.http.get("/v1/volunteers/me/skills", headers=pending).status_code == 403
    assert client.http.post("/v1/volunteers/me/skills", body=as_json({"name": "x", "description": ""}),
                            headers={"Content-Type": "application/json"}).status_code == 401
