"""Insurance over HTTP: accepting queues a record, check-in of an insured category waits for it,
and admins export the insured list as JSON pages or an Excel-friendly CSV."""
from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest

from functions.core import clock
from functions.core.clock import CHINA_TZ
from functions.core.settings import LOCAL_POLICY_NUMBER
from tests.helpers import admin_headers, as_json, json_headers, verified_resident
from tests.queues import drain

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA_TZ)


def need(category: str, start: datetime, minutes: int = 60) -> dict:
    return {"category": category, "title": "帮忙", "description": "", "start_at": start.isoformat(),
            "duration_minutes": minutes}


@pytest.fixture
def people(client, app):
    clock.set_clock(lambda: NOW)
    requester, _ = verified_resident(client, "in-req", building="1", room="101")
    volunteer, vol = verified_resident(client, "in-vol", building="2", room="201")
    return dict(client=client, app=app, requester=requester, volunteer=volunteer, vol=vol,
                admin=admin_headers(client))


@pytest.fixture
def world(people):
    client, requester, volunteer = people["client"], people["requester"], people["volunteer"]
    ids = []
    for number, (category, start) in enumerate([
            ("companion", datetime(2026, 12, 1, 18, 0, tzinfo=CHINA_TZ)),
            ("pickup", datetime(2026, 12, 2, 16, 30, tzinfo=CHINA_TZ)),
            ("tutoring", datetime(2026, 12, 3, 19, 0, tzinfo=CHINA_TZ))]):
        posted = client.http.post("/v1/requests", body=as_json(need(category, start)),
                                  headers=json_headers(requester, f"in-need-{number}"))
        assert posted.status_code == 201, posted.body
        ids.append(posted.json_body["id"])
        assert client.http.post(f"/v1/requests/{ids[-1]}/accept", headers=volunteer).status_code == 200
    return dict(people, ids=ids)


def export(client, headers, query):
    return client.http.get(f"/v1/admin/insurance-records?{query}", headers=headers)


def refused(response, status, code):
    assert response.status_code == status, response.body
    assert response.json_body["code"] == code
    return response.json_body


def test_accepting_writes_one_record_per_service_and_check_in_needs_no_wait(world):
    client, app, volunteer, ids = world["client"], world["app"], world["volunteer"], world["ids"]
    assert client.http.post(f"/v1/requests/{ids[0]}/check-in", headers=volunteer, body="{}").status_code == 200
    assert drain(app, "insurance") == 3  # the accepted events: each finds its record written

    listed = export(client, world["admin"], "from=2026-12-01&to=2026-12-31")
    assert listed.status_code == 200
    items = listed.json_body["items"]
    assert [i["request_id"] for i in items] == ids and listed.json_body["next_cursor"] is None
    first = items[0]
    assert first["volunteer_id"] == world["vol"]["id"] and first["category"] == "companion"
    assert first["category_name"] == "陪护帮" and first["status"] == "active"
    assert (first["covered_from"], first["covered_to"]) == ("2026-12-01T17:30:00+08:00", "2026-12-01T19:30:00+08:00")
    assert first["policy_number"] == LOCAL_POLICY_NUMBER and first["service_date"] == "2026-12-01"
    # Ids only: no names, phones or addresses in the insured list of this API.
    assert set(first) == {"request_id", "volunteer_id", "category", "category_name", "service_start",
                          "service_date", "duration_minutes", "covered_from", "covered_to", "insurer",
                          "policy_number", "status", "created_at", "cancelled_at", "activity_id"}
    assert first["activity_id"] is None


def test_export_pages_and_filters_by_service_date(world):
    client, app, admin = world["client"], world["app"], world["admin"]
    drain(app, "insurance")
    page = export(client, admin, "from=2026-12-02&to=2026-12-03&limit=1").json_body
    seen = [i["request_id"] for i in page["items"]]
    while page["next_cursor"]:
        page = export(client, admin, f"from=2026-12-02&to=2026-12-03&limit=1&cursor={page['next_cursor']}").json_body
        seen += [i["request_id"] for i in page["items"]]
    assert seen == world["ids"][1:]
    assert export(client, admin, "from=2026-11-01&to=2026-11-30&format=json").json_body == {
        "items": [], "next_cursor": None}


def test_csv_export_is_excel_friendly(world):
    client, app = world["client"], world["app"]
    drain(app, "insurance")
    response = export(client, world["admin"], "from=2026-12-01&to=2026-12-02&format=csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="insured-2026-12-01_2026-12-02.csv"' in response.headers["Content-Disposition"]
    raw = response.body if isinstance(response.body, bytes) else response.body.encode()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:4] == ["需求编号", "志愿者编号", "服务类别代码", "服务类别"]
    assert [r[0] for r in rows[1:]] == world["ids"][:2]
    assert b"\r\n" in raw


def test_non_admins_cannot_export_and_anonymous_callers_are_401(people):
    client = people["client"]
    for who in ("requester", "volunteer"):
        for query in ("from=2026-12-01&to=2026-12-31", "from=2026-12-01&to=2026-12-31&format=csv"):
            refused(export(client, people[who], query), 403, "FORBIDDEN")
    refused(client.http.get("/v1/admin/insurance-records?from=2026-12-01&to=2026-12-31"), 401, "UNAUTHENTICATED")


BAD_QUERIES = [
    ("to=2026-12-31", "from"),
    ("from=2026-12-01", "to"),
    ("from=2026-12-32&to=2026-12-31", "from"),
    ("from=01/12/2026&to=2026-12-31", "from"),
    ("from=2026-12-31&to=2026-12-01", "to"),
    ("from=2026-01-01&to=2026-12-31", "to"),          # more than 92 days
    ("from=2026-12-01&to=2026-12-31&format=xlsx", "format"),
    ("from=2026-12-01&to=2026-12-31&limit=0", "limit"),
    ("from=2026-12-01&to=2026-12-31&cursor=bm90LWEtY3Vyc29y", "cursor"),
    ("from=2026-12-01&to=2026-12-31&cursor=eyJtb250aCI6IjIwMjctMDEiLCJrZXkiOm51bGx9", "cursor"),  # other range
]


def test_bad_export_queries_are_400(people):
    admin = people["admin"]
    for query, field in BAD_QUERIES:
        body = refused(export(people["client"], admin, query), 400, "VALIDATION_ERROR")
        assert field in body["details"]["fields"], query
