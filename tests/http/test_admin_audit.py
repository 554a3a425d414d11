"""The audit log over HTTP (API.md "Administration and data"): admins read it by actor, action
and time; residents see the entries about themselves or their household; others get 401/403."""
from __future__ import annotations

from datetime import timedelta

from functions.core import clock
from tests.helpers import (ADMIN_OPENID, admin_headers, as_json, assert_error, login, register,
                           verified_resident)


def _entries(client, query: str = "", headers=None):
    response = client.http.get(f"/v1/admin/audit{query}", headers=headers or admin_headers(client))
    assert response.status_code == 200, response.body
    return response.json_body


def test_an_admin_action_leaves_an_entry_with_actor_action_target_and_reason(client):
    _, resident = register(client, "audited-a")
    admin = admin_headers(client)
    response = client.http.post(f"/v1/admin/residents/{resident['id']}/reject",
                                body=as_json({"reason": "地址不符"}), headers=admin)
    assert response.status_code == 200, response.body
    items = _entries(client, "?action=resident.reject")["items"]
    assert len(items) == 1
    entry = items[0]
    assert set(entry) == {"id", "at", "actor_id", "action", "target", "reason", "details"}
    assert entry["actor_id"] == ADMIN_OPENID
    assert entry["target"] == {"resident_id": resident["id"]}
    assert entry["reason"] == "地址不符"
    assert "139" not in as_json(entry)  # no phone number in any field


def test_a_refused_admin_action_leaves_no_entry(client):
    _, resident = verified_resident(client, "audited-b")
    admin = admin_headers(client)
    refused = client.http.post(f"/v1/admin/residents/{resident['id']}/reject",
                               body=as_json({"reason": "晚了"}), headers=admin)
    assert refused.status_code == 409, refused.body
    missing = client.http.post("/v1/admin/residents/res_unknown/reject", body=as_json({"reason": "x"}),
                               headers=admin)
    assert missing.status_code == 404
    assert _entries(client, "?action=resident.reject")["items"] == []
    assert len(_entries(client, "?action=resident.verify")["items"]) == 1


def test_entries_are_newest_first_and_paged(client):
    admin = admin_headers(client)
    ids = []
    for n in range(3):
        _, resident = register(client, f"audited-page-{n}", room=f"20{n}")
        client.http.post(f"/v1/admin/residents/{resident['id']}/verify", headers=admin)
        ids.append(resident["id"])
    first = _entries(client, "?action=resident.verify&limit=2")
    assert [e["target"]["resident_id"] for e in first["items"]] == ids[::-1][:2]
    assert first["next_cursor"]
    second = _entries(client, f"?action=resident.verify&limit=2&cursor={first['next_cursor']}")
    assert [e["target"]["resident_id"] for e in second["items"]] == ids[:1]
    assert second["next_cursor"] is None


def test_filters_by_actor_and_time(client):
    _, resident = register(client, "audited-c")
    client.http.post(f"/v1/admin/residents/{resident['id']}/verify", headers=admin_headers(client))
    by_actor = _entries(client, f"?actor={ADMIN_OPENID}&action=resident.verify")["items"]
    assert [e["target"]["resident_id"] for e in by_actor] == [resident["id"]]
    assert _entries(client, "?actor=nobody")["items"] == []
    assert _entries(client, "?from=2000-01-01&to=2000-01-02")["items"] == []
    everything = _entries(client, "?from=2000-01-01")["items"]
    assert any(e["action"] == "resident.verify" for e in everything)


def test_bad_queries_are_400_with_the_field(client):
    admin = admin_headers(client)
    for query, field in (("?from=yesterday", "from"), ("?to=2026-13-01", "to"), ("?limit=0", "limit"),
                         ("?cursor=abc", "cursor"), ("?from=2026-12-02&to=2026-12-01", "from"),
                         ("?action=%00", "action")):
        body = assert_error(client.http.get(f"/v1/admin/audit{query}", headers=admin), 400, "VALIDATION_ERROR")
        assert field in body["details"]["fields"], (query, body)


def test_non_admins_get_403_and_strangers_401(client):
    headers, _ = verified_resident(client, "audited-d")
    assert_error(client.http.get("/v1/admin/audit", headers=headers), 403, "FORBIDDEN")
    assert_error(client.http.get("/v1/admin/audit"), 401, "UNAUTHENTICATED")
    assert_error(client.http.get("/v1/residents/me/audit"), 401, "UNAUTHENTICATED")


def test_a_resident_sees_only_the_entries_about_themselves(client):
    mine, me = register(client, "audited-me", room="301")
    theirs, other = register(client, "audited-other", room="302")
    admin = admin_headers(client)
    client.http.post(f"/v1/admin/residents/{me['id']}/verify", headers=admin)
    client.http.post(f"/v1/admin/residents/{other['id']}/verify", headers=admin)
    client.http.get(f"/v1/admin/residents/{me['id']}", headers=admin)
    response = client.http.get("/v1/residents/me/audit", headers=mine)
    assert response.status_code == 200, response.body
    actions = [e["action"] for e in response.json_body["items"]]
    assert actions == ["resident.view", "resident.verify"]
    assert all(e["target"].get("resident_id") == me["id"] for e in response.json_body["items"])
    other_items = client.http.get("/v1/residents/me/audit", headers=theirs).json_body["items"]
    assert [e["target"]["resident_id"] for e in other_items] == [other["id"]]


def test_a_plain_login_does_not_open_entries(client):
    login(client, "audited-nobody")
    assert _entries(client)["items"] == []


def test_proxy_acts_are_audited_with_the_member_and_seen_by_the_household(client):
    from tests.helpers import add_dependant, json_headers

    headers, me = verified_resident(client, "proxy-son", building="7", room="701")
    grandma = add_dependant(client, headers, name="外婆", birth_year=1940)
    named = client.http.post("/v1/households/mine/proxies", body=as_json({"member_id": me["id"]}), headers=headers)
    assert named.status_code in (200, 201), named.body
    body = {"category": "companion", "title": "陪诊", "description": "", "duration_minutes": 60,
            "start_at": (clock.now() + timedelta(days=1)).isoformat(), "on_behalf_of": grandma["id"]}
    posted = client.http.post("/v1/requests", body=as_json(body), headers=json_headers(headers, "proxy-1"))
    assert posted.status_code == 201, posted.body
    replay = client.http.post("/v1/requests", body=as_json(body), headers=json_headers(headers, "proxy-1"))
    assert replay.status_code == 201
    (entry,) = _entries(client, "?action=request.post")["items"]   # the replay overwrote its own entry
    assert entry["actor_id"] == me["id"]
    assert entry["details"]["proxy"] is True and entry["details"]["member_id"] == grandma["id"]
    assert entry["target"] == {"member_id": grandma["id"]}
    seen = client.http.get("/v1/residents/me/audit", headers=headers).json_body["items"]
    assert "request.post" in [e["action"] for e in seen]
    # the same resident posting for themself is no proxy act
    own = {**body, "on_behalf_of": None}
    assert client.http.post("/v1/requests", body=as_json(own), headers=json_headers(headers, "own-1")).status_code == 201
    assert len(_entries(client, "?action=request.post")["items"]) == 1


def test_my_audit_needs_a_registration_and_a_valid_cursor(client):
    assert_error(client.http.get("/v1/residents/me/audit", headers=login(client, "audited-unregistered")),
                 403, "NOT_REGISTERED")
    headers, _ = register(client, "audited-cursor", room="909")
    body = assert_error(client.http.get("/v1/residents/me/audit?cursor=eyJ4IjoxfQ", headers=headers),
                        400, "VALIDATION_ERROR")
    assert "cursor" in body["details"]["fields"]
    assert client.http.get("/v1/residents/me/audit", headers=headers).json_body == {"items": [], "next_cursor": None}
