"""Subscribe-message consents and the local outbox admins read."""
from __future__ import annotations

from tests.helpers import admin_headers, as_json, login


def consent(client, headers, template="match", accepted=True):
    return client.http.post("/v1/notifications/consents", body=as_json({"template": template, "accepted": accepted}),
                            headers=headers)


def test_a_logged_in_user_records_consents_per_template(client):
    headers = login(client, "consenting-1")   # logged in, not even registered: consent is per WeChat user
    first = consent(client, headers)
    assert first.status_code == 200, first.body
    assert first.json_body["template"] == "match" and first.json_body["available"] == 1
    assert first.json_body["template_id"] == "local-match"
    assert consent(client, headers).json_body["available"] == 2
    refused = consent(client, headers, "reminder", accepted=False).json_body
    assert refused["available"] == 0 and refused["refused_total"] == 1
    listed = client.http.get("/v1/notifications/consents", headers=headers).json_body["items"]
    assert [(c["template"], c["available"]) for c in listed] == [("match", 2), ("reminder", 0)]
    other = client.http.get("/v1/notifications/consents", headers=login(client, "consenting-2")).json_body
    assert [c["available"] for c in other["items"]] == [0, 0]


def test_bad_consents_are_400(client):
    headers = login(client, "c-3")
    for body, field in [({"accepted": True}, "template"), ({"template": "marketing", "accepted": True}, "template"),
                        ({"template": "match"}, "accepted"), ({"template": "match", "accepted": "true"}, "accepted"),
                        ({"template": 1, "accepted": True}, "template")]:
        response = client.http.post("/v1/notifications/consents", body=as_json(body), headers=headers)
        assert response.status_code == 400 and field in response.json_body["details"]["fields"], body
    listed = client.http.get("/v1/notifications/consents", headers=headers).json_body["items"]
    assert [c["available"] for c in listed] == [0, 0]


def test_consents_need_a_login(client):
    assert consent(client, {"Content-Type": "application/json"}).status_code == 401
    assert client.http.get("/v1/notifications/consents").status_code == 401


def _send(openid: str, title: str) -> None:
    from functions import bootstrap

    assert bootstrap.notifier().send(openid, "reminder", {"title": title, "start_at": "2026-12-02 08:30"}).status.value \
        == "sent"


def test_admins_read_the_outbox_newest_first_paginated_and_by_recipient(client):
    for n in range(3):
        _send("openid-x", f"第{n}条")
    _send("openid-y", "给 y")
    admin = admin_headers(client)
    first = client.http.get("/v1/admin/outbox?limit=2", headers=admin).json_body
    assert [i["data"]["title"] for i in first["items"]] == ["给 y", "第2条"]
    assert first["items"][0]["wechat_data"] == {"thing1": {"value": "给 y"}, "time2": {"value": "2026-12-02 08:30"}}
    rest = client.http.get(f"/v1/admin/outbox?limit=2&cursor={first['next_cursor']}", headers=admin).json_body
    assert [i["data"]["title"] for i in rest["items"]] == ["第1条", "第0条"]
    only_y = client.http.get("/v1/admin/outbox?openid=openid-y", headers=admin).json_body
    assert [i["openid"] for i in only_y["items"]] == ["openid-y"] and only_y["next_cursor"] is None


def test_bad_outbox_queries_are_400(client):
    admin = admin_headers(client)
    for query, field in [("?limit=abc", "limit"), ("?limit=1000", "limit"), ("?cursor=%%%", "cursor"),
                         ("?cursor=eyJib3giOnsiTiI6IjEifX0", "cursor"), ("?openid=" + "x" * 129, "openid")]:
        response = client.http.get(f"/v1/admin/outbox{query}", headers=admin)
        assert response.status_code == 400 and field in response.json_body["details"]["fields"], query


def test_only_admins_read_the_outbox(client):
    assert client.http.get("/v1/admin/outbox").status_code == 401
    response = client.http.get("/v1/admin/outbox", headers=login(client, "curious-1"))
    assert response.status_code == 403 and response.json_body["code"] == "FORBIDDEN"
