"""Helpers of the activity tests: publish an activity, read its on-site code, sign residents up
and check them in and out, all through the HTTP API (``chalice.test.Client``)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from functions.core import clock
from functions.core.clock import CHINA_TZ
from tests.helpers import admin_headers, as_json, json_headers

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA_TZ)
START = NOW + timedelta(hours=3)
END_OFFSET = timedelta(hours=2)


class Clock:
    """A fake clock the tests move."""

    def __init__(self, now: datetime = NOW):
        self.now = now
        clock.set_clock(lambda: self.now)

    def at(self, moment: datetime) -> None:
        self.now = moment

    def advance(self, **delta: Any) -> None:
        self.now += timedelta(**delta)


def activity_body(**changes: Any) -> dict[str, Any]:
    body = {"title": "社区环境清洁日", "description": "清理楼道与绿地", "place": "社区广场",
            "start_at": START.isoformat(), "end_at": (START + timedelta(hours=2)).isoformat(), "capacity": 30,
            "asset": "volunteer", "award": {"mode": "per_hour", "minutes": 60}}
    body.update(changes)
    return body


def publish(client: Any, key: str | None = None, **changes: Any) -> dict[str, Any]:
    response = client.http.post("/v1/admin/activities", body=as_json(activity_body(**changes)),
                                headers=json_headers(admin_headers(client), key))
    assert response.status_code == 201, response.body
    return response.json_body


def code_of(client: Any, activity_id: str) -> str:
    response = client.http.get(f"/v1/admin/activities/{activity_id}/code", headers=admin_headers(client))
    assert response.status_code == 200, response.body
    return response.json_body["code"]


def sign_up(client: Any, headers: dict[str, str], activity_id: str) -> Any:
    return client.http.post(f"/v1/activities/{activity_id}/signup", headers=headers)


def check(client: Any, headers: dict[str, str], activity_id: str, direction: str, code: str) -> Any:
    return client.http.post(f"/v1/activities/{activity_id}/{direction}", headers=headers,
                            body=as_json({"code": code}))


def attend(client: Any, times: Clock, headers: dict[str, str], activity_id: str, arrive: datetime,
           leave: datetime) -> None:
    """Check in at ``arrive`` and out at ``leave`` with the code shown then."""
    for moment, direction in ((arrive, "check-in"), (leave, "check-out")):
        times.at(moment)
        response = check(client, headers, activity_id, direction, code_of(client, activity_id))
        assert response.status_code == 200, response.body


def close(client: Any, activity_id: str) -> Any:
    return client.http.post(f"/v1/admin/activities/{activity_id}/close", headers=admin_headers(client))


def ledger_ok(client: Any) -> dict[str, Any]:
    report = client.http.get("/v1/admin/ledger/check", headers=admin_headers(client)).json_body
    assert report["ok"], report["violations"]
    return report
