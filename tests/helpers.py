"""Shared test helpers: log in, register and verify residents through the public HTTP API.

Every helper goes through the real endpoints (``chalice.test.Client``), so a test that uses
them exercises the same path as the mini-program::

    headers, resident = verified_resident(client, "alice", building="3", unit="1", room="502")
    client.http.post("/v1/requests", body=as_json({...}), headers=headers)

Tokens come from ``POST /v1/auth/wechat {"code": "dev-<openid>"}`` (the local fake WeChat).
The community admin of the test stage is ``ADMIN_OPENID`` (from ``TIMEBANK_ADMIN_OPENIDS``).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

ADMIN_OPENID = "admin-test"


def as_json(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False)


def json_headers(headers: dict[str, str] | None = None, idempotency_key: str | None = None) -> dict[str, str]:
    out = {"Content-Type": "application/json", **(headers or {})}
    if idempotency_key is not None:
        out["Idempotency-Key"] = idempotency_key
    return out


def _expect(response: Any, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        raise AssertionError(f"{what}: expected {status}, got {response.status_code}: {response.body!r}")
    return response.json_body


def token_for(client: Any, openid: str) -> str:
    response = client.http.post("/v1/auth/wechat", body=as_json({"code": f"dev-{openid}"}),
                                headers=json_headers())
    return _expect(response, 200, f"login {openid}")["token"]


def login(client: Any, openid: str) -> dict[str, str]:
    """Headers (Authorization + JSON content type) for ``openid``."""
    return json_headers({"Authorization": f"Bearer {token_for(client, openid)}"})


def admin_headers(client: Any) -> dict[str, str]:
    return login(client, ADMIN_OPENID)


def phone_for(openid: str) -> str:
    """A valid mainland mobile number, stable per openid."""
    digits = int(hashlib.sha256(openid.encode()).hexdigest(), 16) % 10**8
    return f"139{digits:08d}"


def register(client: Any, openid: str, *, building: str = "1", unit: str = "1", room: str = "101",
             name: str = "测试居民", phone: str | None = None,
             birth_year: int = 1980) -> tuple[dict[str, str], dict[str, Any]]:
    """Log in and register ``openid`` at an address; returns (headers, resident) — status pending."""
    headers = login(client, openid)
    body = {"name": name, "phone": phone or phone_for(openid), "building": building, "unit": unit,
            "room": room, "birth_year": birth_year}
    response = client.http.post("/v1/residents", body=as_json(body), headers=headers)
    return headers, _expect(response, 201, f"register {openid}")


def verify(client: Any, resident_id: str) -> dict[str, Any]:
    """Verify a resident as the test admin; returns the verified resident."""
    response = client.http.post(f"/v1/admin/residents/{resident_id}/verify", headers=admin_headers(client))
    return _expect(response, 200, f"verify {resident_id}")


def verified_resident(client: Any, openid: str, **registration: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """Register and verify ``openid`` (keyword args as ``register``); returns (headers, resident).

    The first verified resident of a household brings it the starting credits.
    """
    headers, resident = register(client, openid, **registration)
    return headers, verify(client, resident["id"])


def add_dependant(client: Any, headers: dict[str, str], *, name: str = "老人", birth_year: int = 1940,
                  relation: str = "parent", idempotency_key: str | None = None) -> dict[str, Any]:
    """Add a dependant (no login) to the caller's household; the caller must be verified."""
    response = client.http.post("/v1/households/mine/members",
                                body=as_json({"name": name, "birth_year": birth_year, "relation": relation}),
                                headers=json_headers(headers, idempotency_key))
    return _expect(response, 201, "add dependant")


def declare_relatives(client: Any, headers_a: dict[str, str], household_a: str,
                      headers_b: dict[str, str], household_b: str, relation: str = "parent") -> None:
    """Make two households mutually declared relatives (both sides declare)."""
    for headers, other in ((headers_a, household_b), (headers_b, household_a)):
        response = client.http.post("/v1/households/mine/relatives",
                                    body=as_json({"household_id": other, "relation": relation}),
                                    headers=headers)
        if response.status_code not in (200, 201):
            raise AssertionError(f"declare relatives: {response.status_code}: {response.body!r}")


def db_snapshot(audit: bool = False) -> dict[str, list[Any]]:
    """Every item of every DynamoDB table (moto), for asserting that a refused call wrote nothing.

    Without ``audit`` the audit log's table is left out: an admin's successful read (a code shown,
    a close replayed) is an audit entry by design, which is not the state those checks are about.
    Refused calls write no entry either; ``audit=True`` checks that too."""
    import boto3

    dynamodb = boto3.client("dynamodb")
    snapshot: dict[str, list[Any]] = {}
    for name in dynamodb.list_tables()["TableNames"]:
        if not audit and name.endswith("-audit-entries"):
            continue
        items: list[Any] = []
        kwargs: dict[str, Any] = {"TableName": name}
        while True:
            page = dynamodb.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        snapshot[name] = sorted(items, key=lambda item: json.dumps(item, sort_keys=True, default=repr))  # bytes: B, BS
    return snapshot


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is API.md's error body with this status and code; returns the body."""
    assert response.status_code == status, response.body
    body = response.json_body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    return body
