"""POST /v1/admin/imports/residents: the roster file itself (xlsx or csv), all rows or none."""
from __future__ import annotations

import json

import pytest

from functions import bootstrap
from functions.identity.service import starting_credits_transfer_id
from functions.ledger.accounts import household_account
from tests.helpers import admin_headers, as_json, assert_error, db_snapshot, login, register, verified_resident
from tests.roster_files import CHINESE, ENGLISH, XLSX, csv_bytes, roster, xlsx

PATH = "/v1/admin/imports/residents"


def upload(client, body: bytes, content_type: str = XLSX, query: str = "", headers=None):
    auth = headers if headers is not None else admin_headers(client)
    # Lower case: chalice.test then base64-encodes a binary type's body, as API Gateway does.
    return client.http.post(PATH + query, body=body,
                            headers={"Authorization": auth["Authorization"], "content-type": content_type})


def balance(household_id: str) -> int:
    totals = bootstrap.ledger().balances(household_account(household_id)).get("service")
    return totals.posted if totals else 0


def test_an_xlsx_roster_imports_verified_residents_by_household_with_starting_credits(client):
    rows = [["王阿姨", 13812345678, "3幢", 1, 502, 1956],   # Excel keeps phones and rooms as numbers
            ["李叔", "138 1234 5679", "3", "1单元", "502室", 1950],  # same flat, written differently
            ["张三", "13812345680", "4", "2", "101", 1990]]
    response = upload(client, xlsx(rows))
    assert response.status_code == 200, response.body
    assert response.json_body["imported"] == 3 and response.json_body["households"] == 2
    listed = client.http.get("/v1/admin/residents?status=verified", headers=admin_headers(client)).json_body["items"]
    by_name = {r["name"]: r for r in listed}
    assert set(by_name) == {"王阿姨", "李叔", "张三"}
    assert by_name["王阿姨"]["household_id"] == by_name["李叔"]["household_id"] != by_name["张三"]["household_id"]
    assert by_name["王阿姨"]["phone"] == "138****5678"  # masked on the way out
    for household in {r["household_id"] for r in listed}:
        assert balance(household) == 300  # once per household, as verification gives it
        assert bootstrap.ledger().get_transfer(starting_credits_transfer_id(household)) is not None


@pytest.mark.parametrize("encoding,header", [("utf-8", CHINESE), ("utf-8-sig", ENGLISH), ("gbk", CHINESE)])
def test_csv_in_utf8_with_and_without_bom_and_in_gbk(client, encoding, header):
    body = csv_bytes([["王阿姨", "13812345678", "3", "1", "502", "1956"]], header, encoding)
    response = upload(client, body, "text/csv")
    assert response.status_code == 200, response.body
    listed = client.http.get("/v1/admin/residents?status=verified", headers=admin_headers(client)).json_body["items"]
    assert [r["name"] for r in listed] == ["王阿姨"]


def test_bad_rows_get_a_per_row_report_and_nothing_is_imported(client):
    _, existing = register(client, "someone", phone="13700000001", building="9", room="901")
    rows = [["王阿姨", "13812345678", "3", "1", "502", 1956],   # row 2: fine
            ["", "13812345679", "3", "1", "503", 1950],         # row 3: no name
            ["李叔", "1381234", "3", "1", "504", 1950],          # row 4: bad phone
            ["赵", "13812345678", "3", "1", "505", 1950],        # row 5: same phone as row 2
            ["钱", "13700000001", "3", "1", "506", 1950],        # row 6: an existing resident's phone
            ["孙", "13812345690", "", "1", "507", 1850]]        # row 7: no building, birth year out of range
    before = db_snapshot()
    response = upload(client, xlsx(rows))
    body = assert_error(response, 422, "IMPORT_INVALID")
    report = {r["row"]: r["errors"] for r in body["details"]["rows"]}
    # Rows 2-5 fail in the file; the existing-phone check runs only on a file with no such errors.
    assert set(report) == {3, 4, 5, 7}
    assert set(report[3]) == {"name"} and set(report[4]) == {"phone"}
    assert "第 2 行" in report[5]["phone"] and set(report[7]) == {"building", "birth_year"}
    assert db_snapshot() == before
    fixed = [r for i, r in enumerate(rows) if i in (0, 4)]
    body = assert_error(upload(client, xlsx(fixed)), 422, "IMPORT_INVALID")
    assert body["details"]["rows"] == [{"row": 3, "errors": {"phone": "已有居民使用该手机号（已登记或已导入）"}}]
    assert db_snapshot() == before


def test_unknown_and_missing_columns_are_reported_on_the_header_row(client):
    body = xlsx([["王阿姨", "13812345678", "3", "1", "502", "女"]], ["姓名", "手机", "楼栋", "单元", "房号", "性别"])
    error = assert_error(upload(client, body), 422, "IMPORT_INVALID")
    assert error["details"]["rows"][0]["row"] == 1
    assert set(error["details"]["rows"][0]["errors"]) == {"性别", "birth_year"}
    assert "表头" in error["message"]


@pytest.mark.parametrize("body", [b"", xlsx([]), "姓名,手机,楼栋,单元,房号,出生年份\r\n,,,,,\r\n".encode()])
def test_an_empty_file_is_refused(client, body):
    assert_error(upload(client, body, XLSX if body[:2] == b"PK" else "text/csv"), 422, "IMPORT_EMPTY")


def test_a_file_that_is_not_a_workbook_is_refused_clearly(client):
    assert_error(upload(client, b"PK\x03\x04 not really a zip"), 422, "IMPORT_INVALID")


def test_a_5_mb_file_is_413_and_says_how_to_import_it_instead(client):
    rows = roster(1)
    body = csv_bytes(rows) + b"#" * (5 * 1024 * 1024)
    before = db_snapshot()
    error = assert_error(upload(client, body, "text/csv"), 413, "IMPORT_TOO_LARGE")
    assert "make import-residents" in error["message"]
    assert db_snapshot() == before


def test_dry_run_counts_and_writes_nothing(client):
    before = db_snapshot()
    response = upload(client, xlsx(roster(3, per_household=2)), query="?dry_run=true")
    assert response.status_code == 200, response.body
    assert response.json_body["imported"] == 6 and response.json_body["households"] == 3
    assert response.json_body["dry_run"] is True
    assert db_snapshot() == before


def test_the_same_file_twice_imports_once(client):
    body = xlsx(roster(4))
    first, second = upload(client, body), upload(client, body)
    assert first.status_code == second.status_code == 200, second.body
    listed = client.http.get("/v1/admin/residents?status=verified&limit=100",
                             headers=admin_headers(client)).json_body["items"]
    assert len(listed) == 4


def test_only_admins_import(client):
    body = xlsx(roster(1))
    assert_error(client.http.post(PATH, body=body, headers={"Content-Type": XLSX}), 401, "UNAUTHENTICATED")
    headers, _ = verified_resident(client, "plain")
    assert_error(upload(client, body, headers=headers), 403, "FORBIDDEN")


def test_another_content_type_is_415(client):
    response = client.http.post(PATH, body=json.dumps({"rows": []}),
                                headers={**admin_headers(client), "Content-Type": "application/json"})
    assert response.status_code == 415


def test_the_first_registration_with_the_phone_and_address_takes_the_record_over(client):
    assert upload(client, xlsx([["王阿姨", "13812345678", "3", "1", "502", 1956]])).status_code == 200
    imported = client.http.get("/v1/admin/residents?status=verified", headers=admin_headers(client)).json_body["items"][0]
    headers = login(client, "wang")
    registration = {"name": "王阿姨", "phone": "13812345678", "building": "3栋", "unit": "1", "room": "502",
                    "birth_year": 1956}
    response = client.http.post("/v1/residents", body=as_json(registration), headers=headers)
    assert response.status_code == 201, response.body
    assert response.json_body["id"] == imported["id"] and response.json_body["status"] == "verified"
    me = client.http.get("/v1/residents/me", headers=login(client, "wang")).json_body
    assert me["id"] == imported["id"] and me["household_id"] == imported["household_id"]
    assert balance(me["household_id"]) == 300  # the import brought them; taking over adds nothing
    # The record is taken: another login with the same phone registers as a new, pending resident.
    other = client.http.post("/v1/residents", body=as_json(registration), headers=login(client, "wang-2"))
    assert other.status_code == 201 and other.json_body["status"] == "pending"


def test_the_same_phone_at_another_address_is_refused(client):
    assert upload(client, xlsx([["王阿姨", "13812345678", "3", "1", "502", 1956]])).status_code == 200
    registration = {"name": "王阿姨", "phone": "13812345678", "building": "4", "unit": "1", "room": "502",
                    "birth_year": 1956}
    before = db_snapshot()
    error = assert_error(client.http.post("/v1/residents", body=as_json(registration), headers=login(client, "wang")),
                         409, "PHONE_ADDRESS_MISMATCH")
    assert "502" not in error["message"] and error["details"] == {}  # the address on record is not told
    after = db_snapshot()
    assert {k: v for k, v in after.items() if not k.endswith("logins")} == \
        {k: v for k, v in before.items() if not k.endswith("logins")}


def test_api_gateway_hands_the_xlsx_over_as_binary(app):
    """Without the binary media type API Gateway would pass the zip as (mangled) text; chalice
    writes the app's binary types into the API definition it deploys."""
    from chalice.deploy.swagger import CFNSwaggerGenerator

    swagger = CFNSwaggerGenerator().generate_swagger(app)
    assert XLSX in swagger["x-amazon-apigateway-binary-media-types"]
    assert "text/csv" not in app.api.binary_types  # the insured list is served as text/csv text


def test_the_xlsx_bytes_arrive_intact_base64_encoded_as_the_gateway_sends_them(client, app):
    """``upload`` names the header in lower case, so chalice.test recognises the binary type and
    sends the body base64-encoded with ``isBase64Encoded`` (as API Gateway does); the app decodes it."""
    from chalice.local import LambdaEventConverter, RouteMatcher  # what chalice.test builds events with

    body = xlsx(roster(2))
    converter = LambdaEventConverter(RouteMatcher(list(app.routes)), app.api.binary_types)
    event = converter.create_lambda_event("POST", PATH, {"content-type": XLSX}, body)
    assert event["isBase64Encoded"] is True and event["body"] != body
    assert upload(client, body).json_body["imported"] == 2


def test_more_rows_than_the_endpoint_can_write_in_29_s_is_413_naming_the_command(client):
    from functions.identity.service import MAX_ENDPOINT_ROWS

    body = csv_bytes(roster(MAX_ENDPOINT_ROWS + 1))
    before = db_snapshot()
    error = assert_error(upload(client, body, "text/csv"), 413, "IMPORT_TOO_LARGE")
    assert error["details"]["max_rows"] == MAX_ENDPOINT_ROWS and "make import-residents" in error["message"]
    assert db_snapshot() == before
