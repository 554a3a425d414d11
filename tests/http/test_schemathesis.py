"""Schemathesis against ``/openapi.json`` on the app under moto.

EVERY documented operation is fuzzed from the document, as a verified resident and (where the
route admits admins) as the community admin; every response must be documented: no 5xx, a
documented status code, the documented content type and a body matching the documented schema.
Schema-invalid input (schemathesis' negative mode) must be refused with a 4xx, which also keeps
the document's constraints (types, enums, lengths, ranges, required) no stricter than the code.

One moto account serves the whole module: a world of residents, requests in every state, a
photo, a skill, a transfer, an insurance record and an outbox message is seeded once, and path
parameters are drawn both from the generator and from ids that exist, so the fuzzing reaches
success paths and state conflicts, not only 404s; the request-body examples of the document are
sent too. The run is deterministic (``derandomize``, a fixed number of examples, the clock
pinned); operations run in document order and change the shared world as they go, the same way
on every run.
"""
from __future__ import annotations

import base64
import http
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from moto import mock_aws
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from functions.core import clock
from functions.core.clock import CHINA_TZ
import functions.app  # noqa: F401  (declares every route the document describes)
from functions.system.routes import openapi_document
from tests.helpers import ADMIN_OPENID, as_json, json_headers, login, register, verified_resident
from tests.queues import drain
from tests.rewards_helpers import DEMO_ASSETS, ITEM

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA_TZ)
RESIDENT_EXAMPLES = 25   # per operation, as the verified resident
ADMIN_EXAMPLES = 15      # per operation that admits admins (admin, verified-or-admin, any login)
NEGATIVE_EXAMPLES = 10   # per operation with something to invalidate (as the admin on admin-only routes)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
METHODS = ("get", "put", "post", "delete", "patch")
ADMIN_LEVELS = {"admin", "verified_or_admin", "login"}
# Unknown query parameters and body fields are ignored by design (the contract may grow), so
# negative cases do not invent them; the Authorization header is ours, never generated.
CONFIG = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False,
                                                       "with-security-parameters": False}})

OPERATIONS = sorted((path, method) for path, item in openapi_document()["paths"].items()
                    for method in item if method in METHODS)
OPERATION_IDS = [f"{method.upper()} {path}" for path, method in OPERATIONS]


# --- the app as a WSGI application over chalice.test.Client -------------------------------------

class ChaliceWSGI:
    """Hands each WSGI request to ``chalice.test.Client`` (Chalice's local API Gateway), so
    schemathesis' in-process WSGI transport drives the real routing, auth and error mapping."""

    def __init__(self, client):
        self.client = client

    def __call__(self, environ, start_response):
        # werkzeug's RAW_URI is the path as sent (still percent-encoded), without the query.
        uri = environ.get("RAW_URI") or quote(environ.get("PATH_INFO", "/"))
        if "?" not in uri and environ.get("QUERY_STRING"):
            uri += "?" + environ["QUERY_STRING"]
        headers = {name[5:].replace("_", "-").title(): value for name, value in environ.items()
                   if name.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        response = self.client.http.request(environ["REQUEST_METHOD"], uri, headers=headers, body=body)
        status = response.status_code
        start_response(f"{status} {http.HTTPStatus(status).phrase}", list(response.headers.items()))
        return [response.body or b""]


# --- who calls, and what exists ---------------------------------------------------------------------

@dataclass
class Actor:
    openid: str
    headers: dict[str, str]

    def authorization(self) -> dict[str, str]:
        return {"Authorization": self.headers["Authorization"]}


@dataclass
class World:
    client: Any
    app: Any
    schema: Any
    resident: Actor
    neighbour: Actor
    admin: Actor
    path_values: dict[str, list[str]]
    auth_of: dict[tuple[str, str], str]
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def record(self, label: str, status: int) -> None:
        self.statuses[label][status] += 1


def need(category: str, hours_ahead: int, minutes: int = 30) -> dict:
    return {"category": category, "title": "帮忙", "description": "schemathesis seed",
            "start_at": (NOW + timedelta(hours=hours_ahead)).isoformat(), "duration_minutes": minutes}


def activity(start: datetime) -> dict:
    return {"title": "社区清洁", "description": "schemathesis seed", "place": "广场", "start_at": start.isoformat(),
            "end_at": (start + timedelta(hours=2)).isoformat(), "capacity": 5,
            "award": {"mode": "per_hour", "minutes": 60}}


def _ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.body
    return response.json_body


def seed(client, app) -> tuple[Actor, Actor, Actor, dict[str, list[str]]]:
    """Three households (the fuzzing resident's, a neighbour's, a pending one's), requests in
    every state, a photo and its access log, a skill, a donation, an insurance record and an
    outbox message: the ids the fuzzer's path parameters can name."""
    post = client.http.post
    mine, resident = verified_resident(client, "sch-alice", building="1", unit="1", room="101")
    theirs, neighbour = verified_resident(client, "sch-bob", building="2", unit="1", room="201")
    _, pending = register(client, "sch-carol", building="3", unit="1", room="301")
    admin = Actor(ADMIN_OPENID, login(client, ADMIN_OPENID))

    def posted(headers, key, body):
        return _ok(post("/v1/requests", body=as_json(body), headers=json_headers(headers, key)), 201)["id"]

    _ok(client.http.put("/v1/volunteers/me", headers=mine, body=as_json(
        {"accepting": True, "categories": ["tutoring", "pet"],
         "availability": [{"weekday": 2, "start": "08:00", "end": "22:00"}]})))
    _ok(post("/v1/notifications/consents", headers=mine, body=as_json({"template": "match", "accepted": True})))
    open_id = posted(theirs, "seed-open", need("tutoring", 4))
    drain(app, "matching")   # suggests the open need to the resident; the outbox gets the message
    own_id = posted(mine, "seed-own", need("parcel", 5))
    accepted_id = posted(theirs, "seed-accepted", need("companion", 6))
    in_service_id = posted(theirs, "seed-in-service", need("tutoring", 7))
    completed_id = posted(theirs, "seed-completed", need("tutoring", 8))
    disputed_id = posted(theirs, "seed-disputed", need("tutoring", 9))
    settled_id = posted(theirs, "seed-settled", need("tutoring", 10))
    for request_id in (accepted_id, in_service_id, completed_id, disputed_id, settled_id):
        _ok(post(f"/v1/requests/{request_id}/accept", headers=mine))
    drain(app, "insurance")
    form = _ok(post(f"/v1/requests/{accepted_id}/evidence", headers=mine, body=as_json({})))
    uploaded = requests.put(form["upload_url"], data=b"\xff\xd8photo", headers=form["headers"])
    assert uploaded.status_code == 200, uploaded.text
    _ok(client.http.get(f"/v1/requests/{accepted_id}/evidence", headers=theirs))   # a logged view
    for request_id in (in_service_id, completed_id, disputed_id, settled_id):
        _ok(post(f"/v1/requests/{request_id}/check-in", headers=mine, body=as_json({})))
    for request_id in (completed_id, disputed_id, settled_id):
        _ok(post(f"/v1/requests/{request_id}/complete", headers=mine, body=as_json({"minutes": 30})))
    _ok(post(f"/v1/requests/{disputed_id}/dispute", headers=theirs, body=as_json({"reason": "少了半小时"})))
    _ok(post(f"/v1/requests/{settled_id}/confirm", headers=theirs, body=as_json({"rating": 5})))
    skill = _ok(post("/v1/volunteers/me/skills", headers=mine,
                     body=as_json({"name": "摄影", "description": "活动拍照"})), 201)
    donation = _ok(post("/v1/transfers", headers=json_headers(mine, "seed-donation"),
                        body=as_json({"to": {"pool": True}, "amount": 10, "memo": "捐赠"})), 201)
    # 通存通兑: one transfer to another community of the district, pending (the hub is a stub).
    remote = _ok(post("/v1/transfers", headers=json_headers(mine, "seed-remote"),
                      body=as_json({"to": {"community": "demo-east", "self": True}, "amount": 10})), 202)
    rewards = seed_rewards(client, app, mine, resident, admin)
    # the neighbour serves the resident back: a rapid back-and-forth, flagged for the admins
    back_id = posted(mine, "seed-back", {**need("tutoring", 11), "from": "resident"})   # paid from what she earned
    _ok(post(f"/v1/requests/{back_id}/accept", headers=theirs))
    _ok(post(f"/v1/requests/{back_id}/check-in", headers=theirs, body=as_json({})))
    _ok(post(f"/v1/requests/{back_id}/complete", headers=theirs, body=as_json({"minutes": 30})))
    _ok(post(f"/v1/requests/{back_id}/confirm", headers=mine, body=as_json({"rating": 4})))
    drain(app, "risk-flags")
    flag_id = _ok(client.http.get("/v1/admin/risk/flags", headers=admin.headers))["items"][0]["id"]
    # a need that is not a credit item, posted often: the weekly run suggests it to the admins
    for n in range(3):
        posted(theirs, f"seed-suggestion-{n}", {**need("volunteer", 12 + n, minutes=15), "title": "帮忙修自行车"})
    drain(app, "stats")
    from local.lambda_events import scheduled_event

    app.handler_map["stats-suggestions"](scheduled_event("timebank-test-stats-suggestions", "cn-north-1"), None)
    suggestion_id = _ok(client.http.get("/v1/admin/suggestions", headers=admin.headers))["items"][0]["id"]
    # an activity that starts soon (check-in is open), the resident signed up; a later one
    admin_json = json_headers(admin.headers)
    soon = _ok(post("/v1/admin/activities", headers=admin_json, body=as_json(activity(NOW + timedelta(minutes=10)))),
               201)["id"]
    later = _ok(post("/v1/admin/activities", headers=admin_json, body=as_json(activity(NOW + timedelta(days=3)))),
                201)["id"]
    _ok(post(f"/v1/activities/{soon}/signup", headers=mine), 201)
    _ok(post(f"/v1/activities/{later}/signup", headers=mine), 201)
    _ok(post("/v1/households/mine/proxies", headers=mine, body=as_json({"member_id": resident["id"]})), 201)
    path_values = {
        "request_id": [open_id, own_id, accepted_id, in_service_id, completed_id, disputed_id, settled_id],
        "skill_id": [skill["id"]],
        # Not the fuzzing resident: the admin's role changes must not make it an admin midway.
        "resident_id": [neighbour["id"], pending["id"]],
        "household_id": [neighbour["household_id"], resident["household_id"]],
        "account_id": [resident["id"], resident["household_id"], neighbour["household_id"], "pool"],
        "category_id": ["tutoring", "pickup", "volunteer"],
        **rewards,
        "activity_id": [later, soon],
        "flag_id": [flag_id],
        "member_id": [resident["id"]],
        "transfer_id": [donation["id"], remote["id"]],
        "suggestion_id": [suggestion_id],
    }
    return Actor("sch-alice", mine), Actor("sch-bob", theirs), admin, path_values


def seed_rewards(client, app, mine, resident, admin) -> dict[str, list[str]]:
    """The fuzzing resident also owns a shop (so the merchant routes are its own), holds points
    to convert, redeem and exchange, a voucher and an exchange; the neighbour's are not its."""
    from functions import bootstrap
    from functions.ledger.accounts import ISSUANCE, household_account

    post = client.http.post
    household = household_account(resident["household_id"])
    for asset in ("volunteer", "green", "service", "skill", "welfare"):
        bootstrap.ledger().transfer(f"seed-{asset}", ISSUANCE, household, asset, 5000, kind="grant")
    shop = _ok(post("/v1/admin/merchants", headers=admin.headers,
                    body=as_json({"name": "便民超市", "kind": "supermarket", "owner_openid": "sch-alice"})), 201)
    for asset in ("service", "volunteer", "skill", "green", "welfare", "contribution"):   # what it could sell back
        bootstrap.ledger().transfer(f"seed-shop-{asset}", ISSUANCE, shop["account_id"], asset, 10**6, kind="grant")
    items = [_ok(post("/v1/merchant/items", headers=json_headers(mine, f"seed-item-{n}"),
                      body=as_json({**ITEM, "stock": 1000, "per_person_limit": 100, "title": f"礼品{n}"})), 201)
             for n in range(2)]
    voucher = _ok(post(f"/v1/rewards/items/{items[0]['id']}/redeem", headers=json_headers(mine, "seed-voucher"),
                       body=as_json({})), 201)
    exchange = _ok(post("/v1/exchanges/zyh", headers=json_headers(mine, "seed-exchange"),
                        body=as_json({"asset": "volunteer", "amount": 30, "zyh_user_id": "zyh-seed"})), 202)
    drain(app, "zyh-exchanges")
    return {"merchant_id": [shop["id"]], "item_id": [item["id"] for item in items], "voucher_id": [voucher["id"]],
            "exchange_id": [exchange["id"]]}


def freeze_hypothesis_constants(patch: pytest.MonkeyPatch) -> None:
    """Hypothesis also draws literals found in every local module loaded so far, so what a
    derandomized run generates would depend on which test files ran before in the same
    process; generate from Hypothesis' own constants only (version pinned in pyproject)."""
    from hypothesis.internal.conjecture import providers

    patch.setattr(providers, "_get_local_constants", lambda: providers.Constants())
    providers.CONSTANTS_CACHE.cache.clear()


HUB_KEY = "timebank/test/hub-key"


def in_a_district(patch: pytest.MonkeyPatch) -> None:
    """The fuzzed community belongs to a district (its hub a stub), so the district's routes
    reach their success paths too; the keys are in (moto's) Secrets Manager."""
    from functions.core.settings import reset_settings

    for name, value in {"TIMEBANK_DISTRICT": "test-district", "TIMEBANK_HUB_URL": "http://hub.invalid/api",
                        "TIMEBANK_HUB_KEY_SECRET": HUB_KEY,
                        "TIMEBANK_PHONE_HASH_SECRET": "timebank/test/phone-hash-key"}.items():
        patch.setenv(name, value)
    reset_settings()
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name=HUB_KEY, SecretString="schemathesis-hub-key")
    secrets.create_secret(Name="timebank/test/phone-hash-key", SecretString="schemathesis-phone-key")


@pytest.fixture(scope="module")
def world():
    """One moto account for the whole module, provisioned like ``tests/conftest.py``'s ``aws``."""
    from chalice.test import Client

    from local.provision import provision_evidence_bucket, provision_queues, provision_tables

    clock.set_clock(lambda: NOW)
    try:
        with pytest.MonkeyPatch.context() as patch, mock_aws():
            freeze_hypothesis_constants(patch)
            # The fuzzing world settles many services between its two households in one day:
            # the community's per-day limits (tested in test_risk_controls.py) are off here.
            for limit in ("PAIR_DAILY", "DAILY_SERVICES", "DAILY_MINUTES"):
                patch.setenv(f"TIMEBANK_RISK_{limit}", "0")
            in_a_district(patch)
            from functions.app import app

            provision_tables(boto3.client("dynamodb"))
            provision_queues(boto3.client("sqs"))
            provision_evidence_bucket(boto3.client("s3"), os.environ["AWS_REGION"])
            from functions import bootstrap
            from tests.fakes.district import StubHub

            # The demo community's point kinds, so conversions have rates to succeed with.
            patch.setenv("TIMEBANK_ASSETS", json.dumps(DEMO_ASSETS))
            bootstrap.reset()
            bootstrap.use("hub_client", StubHub())
            bootstrap.catalog().forget()
            with Client(app) as client:
                resident, neighbour, admin, path_values = seed(client, app)
                schema = schemathesis.openapi.from_wsgi("/openapi.json", ChaliceWSGI(client), config=CONFIG)
                auth_of = {(path, method.lower()): entry.view_function.timebank_auth.value
                           for path, methods in app.routes.items() for method, entry in methods.items()}
                yield World(client, app, schema, resident, neighbour, admin, path_values, auth_of)
    finally:
        clock.set_clock(None)
        from functions.core.settings import reset_settings
        from functions import bootstrap

        reset_settings()
        bootstrap.reset()
        from hypothesis.internal.conjecture import providers

        providers.CONSTANTS_CACHE.cache.clear()   # computed without local constants


# --- fuzzing ----------------------------------------------------------------------------------------

def strategy(world: World, operation, mode: GenerationMode):
    """Generated cases; in positive mode also cases naming existing ids and the document's examples."""
    generated = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.NEGATIVE:
        return generated
    options = [generated, *operation.get_strategies_from_examples()]
    names = [p.name for p in operation.path_parameters]
    if names:
        existing = st.fixed_dictionaries({name: st.sampled_from(world.path_values[name]) for name in names})
        options.append(existing.flatmap(lambda values: st.one_of(
            operation.as_strategy(path_parameters=values),
            *operation.get_strategies_from_examples(path_parameters=values))))
    return st.one_of(options)


def fuzz(world: World, operation, actor: Actor, mode: GenerationMode, examples: int) -> None:
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(case=strategy(world, operation, mode))
    def run(case):
        headers = actor.authorization()
        response = case.call(headers=headers)
        world.record(f"{operation.label} as {actor.openid} ({mode.value})", response.status_code)
        if operation.path == "/v1/auth/logout" and response.status_code == 200:
            actor.headers = login(world.client, actor.openid)   # logout revoked every token of the actor
        case.validate_response(response, checks=checks, headers=headers)

    run()


def negatable(operation) -> bool:
    """Something a negative case can make invalid (a plain string path parameter cannot be)."""
    return bool(operation.body) or any(p.location != "path" for p in operation.iter_parameters())


@pytest.mark.parametrize("path, method", OPERATIONS, ids=OPERATION_IDS)
def test_operation_conforms_to_the_document(world, path, method):
    operation = world.schema[path][method.upper()]
    auth = world.auth_of[(path, method)]
    fuzz(world, operation, world.resident, GenerationMode.POSITIVE, RESIDENT_EXAMPLES)
    if auth in ADMIN_LEVELS:
        fuzz(world, operation, world.admin, GenerationMode.POSITIVE, ADMIN_EXAMPLES)
    if negatable(operation):
        fuzz(world, operation, world.admin if auth == "admin" else world.resident,
             GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)


# --- inputs the generator does not produce -----------------------------------------------------------

def example_body(operation) -> Any:
    for alternative in operation.body:
        example = alternative.definition.get("example")
        if example is not None:
            return example
    return NOT_SET


def explicit_call(world: World, operation, actor: Actor, **parts: Any):
    body = parts.pop("body", example_body(operation))
    case = operation.Case(body=body, media_type="application/json" if body is not NOT_SET
                          else None, **parts)
    headers = actor.authorization()
    response = case.call(headers=headers)
    world.record(f"{operation.label} as {actor.openid} (explicit)", response.status_code)
    case.validate_response(response, checks=CHECKS, headers=headers)
    return response


def call_path(world: World, operation, actor: Actor, path_parameters: dict[str, str]):
    """Send exactly this path (werkzeug keeps an empty segment that schemathesis' URL building
    would collapse) and check the response against the operation's document."""
    from werkzeug import Client as WSGIClient

    path = operation.path
    for name, value in path_parameters.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    body = example_body(operation)
    headers = actor.authorization()
    response = WSGIClient(ChaliceWSGI(world.client)).open(
        path, method=operation.method.upper(), headers=headers, **({} if body is NOT_SET else {"json": body}))
    world.record(f"{operation.label} as {actor.openid} (explicit)", response.status_code)
    case = operation.Case(path_parameters=path_parameters, body=body,
                          media_type=None if body is NOT_SET else "application/json")
    case.validate_response(response, checks=CHECKS, headers=headers)
    return response


EDGE_ID_OPERATIONS = [(path, method) for path, method in OPERATIONS if "{" in path]


@pytest.mark.parametrize("path, method", EDGE_ID_OPERATIONS,
                         ids=[f"{m.upper()} {p}" for p, m in EDGE_ID_OPERATIONS])
def test_ids_that_cannot_exist_are_refused_as_documented(world, path, method):
    """An empty id (``/v1/requests//accept``) and one longer than any id we issue: DynamoDB refuses
    such keys, which must never surface as a 500. (An empty last segment is another route.)"""
    operation = world.schema[path][method.upper()]
    names = [p.name for p in operation.path_parameters]
    actor = world.admin if world.auth_of[(path, method)] in ADMIN_LEVELS else world.resident
    for name in names:
        edges = ["x" * 300] + ([] if path.endswith("{" + name + "}") else [""])
        for edge in edges:
            values = {other: world.path_values[other][0] for other in names} | {name: edge}
            response = call_path(world, operation, actor, values)
            assert 400 <= response.status_code < 500


def foreign_cursor() -> str:
    """Base64 JSON of a DynamoDB key of no list of ours: what a tampered cursor looks like."""
    key = {"request_id": {"S": "req_x"}, "status": {"S": "open"}, "created_key": {"S": "x"}, "other": {"S": "y"}}
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


LISTS = [(path, method) for path, method in OPERATIONS
         if any(p.get("name") == "cursor" for p in openapi_document()["paths"][path][method].get("parameters", []))]
REQUIRED_QUERY = {"/v1/admin/insurance-records": {"from": "2026-12-01", "to": "2026-12-31"},
                  "/v1/admin/requests": {"status": "open"}}


@pytest.mark.parametrize("path, method", LISTS, ids=[f"{m.upper()} {p}" for p, m in LISTS])
def test_cursors_the_api_did_not_issue_are_400(world, path, method):
    """A cursor is the store's last key; a tampered one must be the caller's 400 before it
    reaches DynamoDB (which would refuse it with a 500-making ValidationException)."""
    operation = world.schema[path][method.upper()]
    names = [p.name for p in operation.path_parameters]
    actor = world.admin if world.auth_of[(path, method)] == "admin" else world.resident
    if path.startswith("/v1/accounts/"):
        values = {"account_id": world.path_values["account_id"][0]}
    else:
        values = {name: world.path_values[name][0] for name in names}
    for cursor in (foreign_cursor(), "e30", "bm90LWpzb24"):   # a foreign key, {}, not JSON
        response = explicit_call(world, operation, actor, path_parameters=values or None,
                                 query={**REQUIRED_QUERY.get(path, {}), "cursor": cursor})
        assert response.status_code == 400, (cursor, response.text)
        assert "cursor" in response.json()["details"]["fields"]


def test_success_responses_the_fuzzer_rarely_reaches_conform(world):
    """A scripted path through what random data seldom gets right (a login code, a relative
    declared and withdrawn, services through every step of their life), checked like the rest."""
    resident, neighbour, admin = world.resident, world.neighbour, world.admin

    def call(method: str, path: str, actor: Actor, status: int, **parts: Any):
        response = explicit_call(world, world.schema[path][method], actor, **parts)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    call("POST", "/v1/auth/wechat", resident, 200, body={"code": "dev-sch-dave"})
    other_household = world.path_values["household_id"][0]
    call("POST", "/v1/households/mine/relatives", resident, 201,
         body={"household_id": other_household, "relation": "parent"})
    call("DELETE", "/v1/households/mine/relatives/{household_id}", resident, 204,
         path_parameters={"household_id": other_household})

    def lifecycle(need_id: str, *steps: tuple[str, Actor, Any]) -> dict:
        for action, actor, body in steps:
            changed = call("POST", f"/v1/requests/{{request_id}}/{action}", actor, 200,
                           path_parameters={"request_id": need_id}, body=body)
        return changed

    needs = [call("POST", "/v1/requests", neighbour, 201, headers={"Idempotency-Key": f"scripted-{n}"},
                  body=need("tutoring", 30 + n))["id"] for n in range(3)]
    served = (("accept", resident, NOT_SET), ("evidence", resident, {}), ("check-in", resident, {}),
              ("complete", resident, {"minutes": 30}))
    assert lifecycle(needs[0], *served, ("dispute", neighbour, {"reason": "时长有出入"}))["status"] == "disputed"
    resolved = call("POST", "/v1/admin/requests/{request_id}/resolve", admin, 200,
                    path_parameters={"request_id": needs[0]},
                    body={"outcome": "pay", "minutes": 30, "reason": "按实际时长支付"})
    assert resolved["status"] == "settled" and resolved["credits_paid"] > 0
    assert lifecycle(needs[1], *served, ("confirm", neighbour, {"rating": 4}))["status"] == "settled"
    assert lifecycle(needs[2], ("cancel", neighbour, {"reason": "不需要了"}))["status"] == "cancelled"
    # 亲情代理, and a community activity from check-in to close (the code is the admin's to read)
    named = explicit_call(world, world.schema["/v1/households/mine/proxies"]["POST"], resident,
                          body={"member_id": world.path_values["member_id"][0]})
    assert named.status_code in (200, 201), named.text   # 201 if the fuzzing withdrew it
    soon = world.path_values["activity_id"][1]
    for direction in ("check-in", "check-out"):
        code = call("GET", "/v1/admin/activities/{activity_id}/code", admin, 200,
                    path_parameters={"activity_id": soon})["code"]
        call("POST", f"/v1/activities/{{activity_id}}/{direction}", resident, 200,
             path_parameters={"activity_id": soon}, body={"code": code})
    clock.set_clock(lambda: NOW + timedelta(hours=3))
    try:
        closed = call("POST", "/v1/admin/activities/{activity_id}/close", admin, 200,
                      path_parameters={"activity_id": soon})
    finally:
        clock.set_clock(lambda: NOW)
    assert closed["status"] == "closed"
    # Rewards: a code only a redemption gives, and the partner's signed answer.
    item_id = world.path_values["item_id"][1]
    # What the fuzzing did to the item and the balances before does not matter: reset them.
    call("PUT", "/v1/merchant/items/{item_id}", resident, 200, path_parameters={"item_id": item_id},
         body={"price": 10, "stock": 100, "per_person_limit": 100, "asset": "service"})
    from functions import bootstrap
    from functions.ledger.accounts import ISSUANCE, household_account

    for asset in ("service", "volunteer"):
        bootstrap.ledger().transfer(f"scripted-{asset}", ISSUANCE, household_account(resident_household(world)),
                                    asset, 1000, kind="grant")
    voucher = call("POST", "/v1/rewards/items/{item_id}/redeem", resident, 201, path_parameters={"item_id": item_id},
                   headers={"Idempotency-Key": "scripted-voucher"}, body={})
    assert call("POST", "/v1/merchant/vouchers/redeem", resident, 200, body={"code": voucher["code"]})["status"] == \
        "redeemed"
    pending = call("POST", "/v1/exchanges/zyh", resident, 202, headers={"Idempotency-Key": "scripted-exchange"},
                   body={"asset": "volunteer", "amount": 10, "zyh_user_id": "timeout-scripted"})
    answer = signed_call(world, "/v1/partners/zyh/answers",
                         {"exchange_id": pending["id"], "status": "accepted", "ref": "zyh-scripted"})
    assert answer.status_code == 200 and answer.json["effect"] == "applied"
    # A transfer the fuzzing's random targets and amounts rarely make valid: one donation.
    call("POST", "/v1/transfers", resident, 201, headers={"Idempotency-Key": "scripted-donation"},
         body={"to": {"pool": True}, "amount": 1, "memo": "捐赠"})
    signed_calls_from_the_hub(world)
    roster_upload(world, admin)


def roster_upload(world: World, admin: Actor) -> None:
    """The roster import takes the file itself: random strings are never a valid roster."""
    from werkzeug import Client as WSGIClient

    path = "/v1/admin/imports/residents"
    raw = "姓名,手机,楼栋,单元,房号,出生年份\r\n脚本导入,13311112222,99,1,101,1960\r\n".encode()
    headers = admin.authorization()
    response = WSGIClient(ChaliceWSGI(world.client)).open(
        path, method="POST", headers={**headers, "Content-Type": "text/csv"}, data=raw)
    operation = world.schema[path]["POST"]
    world.record(f"{operation.label} as {admin.openid} (explicit)", response.status_code)
    operation.Case(body=NOT_SET).validate_response(response, checks=CHECKS, headers=headers)
    assert response.status_code == 200, response.text


def hub_signed_call(world: World, method: str, path: str, body: Any = None):
    """A call signed as the district hub, checked against the operation's document."""
    from werkzeug import Client as WSGIClient

    from functions.core.signing import sign

    key = boto3.client("secretsmanager").get_secret_value(SecretId=HUB_KEY)["SecretString"].encode()
    raw = b"" if body is None else json.dumps(body).encode()
    headers = sign(key, method=method, path=path, body=raw, sender="hub", recipient="test",
                   now=int(NOW.timestamp()))
    response = WSGIClient(ChaliceWSGI(world.client)).open(
        path, method=method, headers={**headers, "Content-Type": "application/json"}, data=raw)
    operation = world.schema[path][method]
    world.record(f"{operation.label} as hub (explicit)", response.status_code)
    case = operation.Case(body=NOT_SET if body is None else body,
                          media_type=None if body is None else "application/json")
    case.validate_response(response, checks=CHECKS)
    assert response.status_code == 200, response.text
    return response.json


def signed_calls_from_the_hub(world: World) -> None:
    remote = world.path_values["transfer_id"][1]
    assert hub_signed_call(world, "POST", "/v1/district/outcomes",
                       {"id": remote, "status": "refused", "failure_code": "UNKNOWN_RECEIVER",
                        "failure_details": {"to": "self"}})["status"] == "failed"
    answer = hub_signed_call(world, "POST", "/v1/district/incoming", {
        "id": "tr_from_elsewhere", "source": "demo-east", "destination": "test", "asset": "service", "amount": 5,
        "to": {"household_id": world.path_values["household_id"][1]},
        "payer": {"household_id": "hh_elsewhere", "declared": []}})
    assert answer == {"id": "tr_from_elsewhere", "status": "refused", "failure_code": "NOT_RELATIVE",
                      "failure_details": {"household_id": world.path_values["household_id"][1]}}
    assert hub_signed_call(world, "GET", "/v1/district/reconcile")["ok"] is True



def resident_household(world: World) -> str:
    return world.client.http.get("/v1/residents/me", headers=world.resident.headers).json_body["household_id"]


def signed_call(world: World, path: str, body: dict):
    """A notification signed by the partner (the key of the test stage), checked like the rest."""
    import time

    from werkzeug import Client as WSGIClient

    from functions.core.settings import get_settings
    from functions.rewards.zyh import signed_headers

    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json",
               **signed_headers(get_settings().zyh_key, "POST", path, raw, time.time())}
    operation = world.schema[path]["POST"]
    response = WSGIClient(ChaliceWSGI(world.client)).open(path, method="POST", headers=headers, data=raw)
    world.record(f"{operation.label} as partner (explicit)", response.status_code)
    case = operation.Case(body=body, media_type="application/json")
    case.validate_response(response, checks=CHECKS, headers=headers)
    return response


def test_every_served_operation_was_fuzzed_and_reached_its_success_response(world):
    served = sorted((path, method.lower()) for path, methods in world.app.routes.items() for method in methods)
    assert served == OPERATIONS
    fuzzed = {label.split(" as ")[0] for label in world.statuses if label.endswith("(positive)")}
    if len(fuzzed) < len(OPERATIONS):
        pytest.skip("some operations were deselected: the coverage summary needs the whole module")
    total = sum(sum(counts.values()) for counts in world.statuses.values())
    for label, counts in sorted(world.statuses.items()):
        print(f"{label}: {dict(sorted(counts.items()))}")
    print(f"{len(OPERATIONS)} operations, {total} requests")
    succeeded = {label.split(" as ")[0] for label, counts in world.statuses.items()
                 if any(200 <= status < 300 for status in counts)}
    assert sorted({f"{method.upper()} {path}" for path, method in OPERATIONS} - succeeded) == []
