"""POST /v1/residents and GET /v1/residents/me."""
from functions.core import clock
from tests.helpers import as_json, assert_error, db_snapshot, login, register

VALID = {"name": "王芳", "phone": "13812345678", "building": "3幢", "unit": "1单元", "room": "502室",
         "birth_year": 1975}


def post(client, headers, body=None, raw=None):
    return client.http.post("/v1/residents", headers=headers, body=raw if raw is not None else as_json(body))


def test_registration_answers_201_with_a_pending_resident(client):
    headers = login(client, "alice")
    response = post(client, headers, VALID)
    assert response.status_code == 201
    body = response.json_body
    assert body["id"].startswith("res_")
    assert body["household_id"].startswith("hh_")
    assert {k: body[k] for k in ("status", "name", "phone", "building", "unit", "room", "birth_year", "roles")} == {
        "status": "pending", "name": "王芳", "phone": "138****5678", "building": "3幢", "unit": "1单元",
        "room": "502室", "birth_year": 1975, "roles": ["resident"]}
    assert clock.parse_iso(body["created_at"])


def test_me_returns_the_same_resident(client):
    headers = login(client, "alice")
    created = post(client, headers, VALID).json_body
    response = client.http.get("/v1/residents/me", headers=headers)
    assert response.status_code == 200
    assert response.json_body == created


def test_same_flat_written_differently_is_one_household(client):
    _, first = register(client, "alice", building="3幢", unit="1单元", room="502室")
    _, second = register(client, "bob", building="３", unit="1", room="502")
    _, elsewhere = register(client, "carol", building="3", unit="1", room="503")
    assert first["household_id"] == second["household_id"] != elsewhere["household_id"]


def test_registering_twice_is_409_and_changes_nothing(client):
    headers, resident = register(client, "alice")
    before = db_snapshot()
    error = assert_error(post(client, headers, {**VALID, "room": "999"}), 409, "ALREADY_EXISTS")
    assert error["details"] == {"resident_id": resident["id"]}
    assert db_snapshot() == before


LONG = "长" * 41


INVALID_FIELDS = [
    ("name", None), ("name", ""), ("name", "   "), ("name", LONG), ("name", 12),
    ("phone", None), ("phone", "12345678901"), ("phone", "1381234567"), ("phone", "138123456789"),
    ("phone", "+8613812345678"), ("phone", 13812345678), ("phone", "1381234567a"),
    ("building", None), ("building", ""), ("building", "b" * 21), ("building", 3),
    ("unit", None), ("unit", "u" * 21), ("unit", []),
    ("room", None), ("room", "r" * 21), ("room", {"n": 1}),
    ("birth_year", None), ("birth_year", 1899), ("birth_year", 9999), ("birth_year", "1980"),
    ("birth_year", 1980.5), ("birth_year", True),
]


def test_invalid_fields_are_400_and_write_nothing(client, subtests):
    headers = login(client, "alice")
    before = db_snapshot()
    for field, value in INVALID_FIELDS:
        with subtests.test(field=field, value=value):
            body = {**VALID, field: value}
            if value is None:
                del body[field]
            error = assert_error(post(client, headers, body), 400, "VALIDATION_ERROR")
            assert list(error["details"]["fields"]) == [field]
    assert db_snapshot() == before


def test_birth_year_may_be_this_year(client):
    headers = login(client, "alice")
    assert post(client, headers, {**VALID, "birth_year": clock.now().year}).status_code == 201


def test_malformed_bodies_are_400(client, subtests):
    headers = login(client, "alice")
    before = db_snapshot()
    for raw in ("{", "[]", "\"text\"", "null", "{\"name\": \"x\",}", b"\xff\xfe"):
        with subtests.test(raw=raw):
            assert_error(post(client, headers, raw=raw), 400, "VALIDATION_ERROR")
    assert db_snapshot() == before


def test_registration_needs_a_token(client):
    before = db_snapshot()
    assert_error(post(client, {"Content-Type": "application/json"}, VALID), 401, "UNAUTHENTICATED")
    assert_error(post(client, {"Content-Type": "application/json", "Authorization": "Bearer x.y.z"}, VALID),
                 401, "UNAUTHENTICATED")
    assert db_snapshot() == before


def test_me_before_registration_is_403_not_registered(client):
    assert_error(client.http.get("/v1/residents/me", headers=login(client, "alice")), 403, "NOT_REGISTERED")


def test_me_without_token_is_401(client):
    assert_error(client.http.get("/v1/residents/me"), 401, "UNAUTHENTICATED")
