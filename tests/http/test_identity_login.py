"""POST /v1/auth/wechat, bearer tokens and the auth levels over HTTP."""
from datetime import timedelta

from functions.core import clock
from functions.core.settings import get_settings
from functions.identity.tokens import TokenSigner
from tests.helpers import (
    admin_headers, as_json, assert_error, db_snapshot, json_headers, login, register, verified_resident,
)


def post_login(client, body, raw=None):
    return client.http.post("/v1/auth/wechat", body=raw if raw is not None else as_json(body),
                            headers=json_headers())


def test_login_of_a_new_user_has_no_resident(client):
    response = post_login(client, {"code": "dev-alice"})
    assert response.status_code == 200
    body = response.json_body
    assert body["openid"] == "alice"
    assert body["resident"] is None
    assert body["roles"] == []
    assert isinstance(body["token"], str) and body["token"].startswith("t1.")
    assert clock.parse_iso(body["expires_at"]) > clock.now()


def test_login_of_a_registered_user_returns_the_resident(client):
    _, resident = register(client, "alice")
    body = post_login(client, {"code": "dev-alice"}).json_body
    assert body["resident"]["id"] == resident["id"]
    assert body["resident"]["status"] == "pending"
    assert body["roles"] == ["resident"]


def test_configured_admin_logs_in_with_the_admin_role_and_no_resident(client):
    body = post_login(client, {"code": "dev-admin-test"}).json_body
    assert body["roles"] == ["admin"]
    assert body["resident"] is None


MALFORMED_LOGINS = [
    ({}, "code"),
    ({"code": None}, "code"),
    ({"code": 42}, "code"),
    ({"code": ["dev-a"]}, "code"),
    ({"code": ""}, "code"),
    ({"code": "dev-" + "a" * 200}, "code"),
    ([], "body"),
    ("dev-alice", "body"),
]


def test_malformed_login_bodies(client, subtests):
    before = db_snapshot()
    for body, field in MALFORMED_LOGINS:
        with subtests.test(body=body):
            error = assert_error(post_login(client, body), 400, "VALIDATION_ERROR")
            assert field in error["details"]["fields"]
    assert_error(post_login(client, None, raw="{not json"), 400, "VALIDATION_ERROR")
    assert db_snapshot() == before


def test_codes_the_local_fake_does_not_accept(client, subtests):
    before = db_snapshot()
    for code in ("alice", "dev-", "dev-a b", "prod-alice"):
        with subtests.test(code=code):
            assert_error(post_login(client, {"code": code}), 401, "INVALID_LOGIN_CODE")
    assert db_snapshot() == before


# --- tokens on authenticated routes ---------------------------------------------------------------


AUTHENTICATED_ROUTES = [
    ("POST", "/v1/auth/logout", {}),
    ("POST", "/v1/residents", {"name": "x", "phone": "13812345678", "building": "1", "unit": "1", "room": "1",
                               "birth_year": 1980}),
    ("GET", "/v1/residents/me", None),
    ("GET", "/v1/households/mine", None),
    ("POST", "/v1/households/mine/members", {"name": "x", "birth_year": 1940, "relation": "parent"}),
    ("POST", "/v1/households/mine/relatives", {"household_id": "{hid}", "relation": "parent"}),
    ("DELETE", "/v1/households/mine/relatives/{hid}", None),
    ("POST", "/v1/households/mine/proxies", {"member_id": "{rid}"}),
    ("DELETE", "/v1/households/mine/proxies/{mid}", None),
    ("GET", "/v1/admin/residents", None),
    ("GET", "/v1/admin/residents/{rid}", None),
    ("POST", "/v1/admin/residents/{rid}/verify", None),
    ("POST", "/v1/admin/residents/{rid}/reject", {"reason": "x"}),
    ("PUT", "/v1/admin/residents/{rid}/roles", {"roles": ["admin"]}),
    ("POST", "/v1/admin/imports/residents", None),   # a roster file: sent as text/csv below
]


def bearer(token):
    return json_headers({"Authorization": f"Bearer {token}"})


BAD_AUTHORIZATION = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic YWxpY2U6cHc="},
    {"Authorization": "Bearer not-a-token"},
    {"Authorization": "Bearer t1.e30.c2ln"},
]


def test_missing_or_invalid_tokens_are_401_on_every_identity_route(client, subtests):
    _, resident = register(client, "alice")
    before = db_snapshot()
    for headers in BAD_AUTHORIZATION:
        for method, path, body in AUTHENTICATED_ROUTES:
            with subtests.test(headers=headers, method=method, path=path):
                path = path.format(rid=resident["id"], hid=resident["household_id"], mid=resident["id"])
                sent = json_headers(headers)
                if path.startswith("/v1/admin/imports/"):
                    sent["Content-Type"] = "text/csv"
                response = client.http.request(method, path, headers=sent, body=as_json(body))
                assert_error(response, 401, "UNAUTHENTICATED")
    assert db_snapshot() == before


def test_every_authenticated_identity_route_is_covered(app):
    declared = {(method, path) for path, entries in app.routes.items() for method, entry in entries.items()
                if entry.view_function.__module__ == "functions.identity.routes"}
    public = {("POST", "/v1/auth/wechat")}
    covered = {(method, path.replace("{rid}", "{resident_id}").replace("{hid}", "{household_id}")
               .replace("{mid}", "{member_id}"))
               for method, path, _ in AUTHENTICATED_ROUTES}
    assert declared - public == covered


def test_token_signed_with_another_secret_is_401(client):
    forged, _ = TokenSigner(lambda: "not-the-test-secret", 3600).issue("admin-test")
    assert_error(client.http.get("/v1/admin/residents", headers=bearer(forged)), 401, "UNAUTHENTICATED")


def test_expired_token_is_401(client):
    headers, _ = register(client, "alice")
    assert client.http.get("/v1/residents/me", headers=headers).status_code == 200
    later = clock.now() + timedelta(seconds=get_settings().token_ttl_seconds + 1)
    clock.set_clock(lambda: later)
    body = assert_error(client.http.get("/v1/residents/me", headers=headers), 401, "UNAUTHENTICATED")
    assert body["details"] == {"reason": "token_expired"}


def test_logout_revokes_every_earlier_token(client):
    first = login(client, "alice")
    second = login(client, "alice")
    response = client.http.post("/v1/auth/logout", headers=first)
    assert response.status_code == 200
    for headers in (first, second):
        assert_error(client.http.post("/v1/residents", headers=headers, body="{}"), 401, "UNAUTHENTICATED")
    fresh = login(client, "alice")
    assert client.http.post("/v1/residents", headers=fresh, body="{}").status_code == 400  # authenticated


def test_logout_needs_a_token(client):
    assert_error(client.http.post("/v1/auth/logout"), 401, "UNAUTHENTICATED")


def test_auth_levels(client):
    anonymous = login(client, "nobody")
    pending, _ = register(client, "pending-one", room="1")
    verified, _ = verified_resident(client, "verified-one", room="2")
    admin = admin_headers(client)
    me = "/v1/residents/me"
    assert_error(client.http.get(me, headers=anonymous), 403, "NOT_REGISTERED")
    assert client.http.get(me, headers=pending).status_code == 200
    assert_error(client.http.get(me, headers=admin), 403, "NOT_REGISTERED")  # admins need no record
    member = as_json({"name": "奶奶", "birth_year": 1940, "relation": "grandparent"})
    members = "/v1/households/mine/members"
    assert_error(client.http.post(members, headers=anonymous, body=member), 403, "NOT_REGISTERED")
    assert_error(client.http.post(members, headers=pending, body=member), 403, "NOT_VERIFIED")
    assert client.http.post(members, headers=verified, body=member).status_code == 201
    for headers in (anonymous, pending, verified):
        assert_error(client.http.get("/v1/admin/residents", headers=headers), 403, "FORBIDDEN")
    assert client.http.get("/v1/admin/residents", headers=admin).status_code == 200


def test_verification_takes_effect_on_the_next_call_with_the_same_token(client):
    headers, resident = register(client, "alice")
    member = as_json({"name": "奶奶", "birth_year": 1940, "relation": "grandparent"})
    assert_error(client.http.post("/v1/households/mine/members", headers=headers, body=member), 403, "NOT_VERIFIED")
    client.http.post(f"/v1/admin/residents/{resident['id']}/verify", headers=admin_headers(client))
    assert client.http.post("/v1/households/mine/members", headers=headers, body=member).status_code == 201
