"""The national volunteer-record export (API.md "Administration and data"): one row per volunteer
per completed service or activity, as JSON and as an Excel-friendly CSV; bad ranges are 400;
only admins; each export is an audit entry (a personal-data view)."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from functions.core import clock
from tests.activity_support import END_OFFSET, NOW, START, Clock, attend, close, publish, sign_up
from tests.helpers import admin_headers, as_json, assert_error, json_headers, phone_for, verified_resident
from tests.queues import drain

EXPORT = "/v1/admin/exports/volunteer-records"
RANGE = "from=2026-11-30&to=2026-12-02"


@pytest.fixture
def world(client, app):
    times = Clock(NOW)
    ann_h, ann = verified_resident(client, "exp-ann", building="1", room="101", name="安阿姨")
    ben_h, ben = verified_resident(client, "exp-ben", building="2", room="201", name="贝志愿")

    def need(key, minutes, confirm=True):
        body = {"category": "tutoring", "title": "辅导", "description": "", "duration_minutes": minutes,
                "start_at": (clock.now() + timedelta(hours=1)).isoformat()}
        posted = client.http.post("/v1/requests", body=as_json(body), headers=json_headers(ann_h, key))
        assert posted.status_code == 201, posted.body
        request_id = posted.json_body["id"]
        assert client.http.post(f"/v1/requests/{request_id}/accept", headers=ben_h).status_code == 200
        if confirm:
            for step, payload in (("check-in", "{}"), ("complete", as_json({"minutes": minutes}))):
                assert client.http.post(f"/v1/requests/{request_id}/{step}", headers=ben_h,
                                        body=payload).status_code == 200
            assert client.http.post(f"/v1/requests/{request_id}/confirm", headers=ann_h, body="{}").status_code == 200
        return request_id

    served = need("exp-1", 90)
    need("exp-2", 60, confirm=False)       # accepted, never done: no row
    drain(app, "insurance")
    activity = publish(client)
    assert sign_up(client, ben_h, activity["id"]).status_code == 201
    attend(client, times, ben_h, activity["id"], START, START + timedelta(minutes=75))
    times.at(START + END_OFFSET + timedelta(minutes=1))
    assert close(client, activity["id"]).status_code == 200
    return {"client": client, "ann": ann, "ben": ben, "ben_h": ben_h, "served": served, "activity": activity}


def test_json_rows_in_the_national_fields(world):
    client = world["client"]
    response = client.http.get(f"{EXPORT}?{RANGE}&format=json", headers=admin_headers(client))
    assert response.status_code == 200, response.body
    rows = response.json_body["items"]
    assert sorted((r["name"], r["hours"], r["content"], r["service_date"]) for r in rows) == [
        ("贝志愿", "1.3", "社群活动：社区环境清洁日", "2026-12-01"),   # 75 minutes attended
        ("贝志愿", "1.5", "辅导帮", "2026-12-01"),                    # 90 minutes served
    ]
    assert {r["id_number"] for r in rows} == {""}                    # never collected
    numbers = {r["volunteer_number"] for r in rows}
    assert len(numbers) == 1 and phone_for("exp-ben")[-4:] not in numbers.pop()
    assert len({r["certificate_number"] for r in rows}) == 2
    assert {r["organiser"] for r in rows} == {"test 社区时间银行"}
    again = client.http.get(f"{EXPORT}?{RANGE}", headers=admin_headers(client)).json_body["items"]
    assert again == rows                                              # stable numbers, json by default
    assert client.http.get(f"{EXPORT}?from=2026-12-05&to=2026-12-06", headers=admin_headers(client)
                           ).json_body == {"items": []}


def test_csv_is_utf8_with_bom_and_the_chinese_headers(world):
    client = world["client"]
    response = client.http.get(f"{EXPORT}?{RANGE}&format=csv", headers=admin_headers(client))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="volunteer-records-2026-11-30_2026-12-02.csv"' in response.headers["Content-Disposition"]
    assert response.body.startswith("\ufeff".encode())
    table = list(csv.reader(io.StringIO(response.body.decode("utf-8-sig"))))
    assert table[0] == ["姓名", "证件号码", "志愿者编号", "服务时长", "服务内容", "服务组织", "服务日期", "证明编号"]
    assert len(table) == 3 and {row[0] for row in table[1:]} == {"贝志愿"}
    assert sorted(row[3] for row in table[1:]) == ["1.3", "1.5"]


def test_each_export_is_an_audit_entry(world):
    client = world["client"]
    client.http.get(f"{EXPORT}?{RANGE}&format=csv", headers=admin_headers(client))
    entries = client.http.get("/v1/admin/audit?action=export.volunteer_records",
                              headers=admin_headers(client)).json_body["items"]
    assert len(entries) == 1 and entries[0]["details"] == {"from": "2026-11-30", "to": "2026-12-02",
                                                           "format": "csv"}


def test_bad_ranges_and_callers(world):
    client = world["client"]
    admin = admin_headers(client)
    for query, field in (("to=2026-12-01", "from"), ("from=2026-12-01", "to"), ("from=2026-12-02&to=2026-12-01", "to"),
                         ("from=2025-01-01&to=2026-12-01", "to"), ("from=2026-12-01&to=2026-12-01&format=xml", "format"),
                         ("from=12/01/2026&to=2026-12-01", "from")):
        body = assert_error(client.http.get(f"{EXPORT}?{query}", headers=admin), 400, "VALIDATION_ERROR")
        assert field in body["details"]["fields"], (query, body)
    assert_error(client.http.get(f"{EXPORT}?{RANGE}", headers=world["ben_h"]), 403, "FORBIDDEN")
    assert_error(client.http.get(f"{EXPORT}?{RANGE}"), 401, "UNAUTHENTICATED")
    assert client.http.get("/v1/admin/audit?action=export.volunteer_records", headers=admin).json_body["items"] == []


def test_hours_round_to_one_decimal():
    from functions.admin.model import hours

    assert [hours(m) for m in (0, 1, 3, 6, 45, 60, 89, 90, 100, 119)] == \
        ["0.0", "0.0", "0.1", "0.1", "0.8", "1.0", "1.5", "1.5", "1.7", "2.0"]
