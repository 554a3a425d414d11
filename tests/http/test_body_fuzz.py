"""Every JSON body of the OpenAPI document, fuzzed with what outside testing threw at it: lone
UTF-16 surrogates in any text, nesting deeper than the interpreter's stack, numbers no integer
field can hold, and fields the schema does not know. No response is ever ≥ 500; the surrogates
and unknown fields are 400 VALIDATION_ERROR naming a field, and every field reason is Chinese.

The bodies start from a valid-looking instance built from the document's own schema, so the
mutation is what the server meets, not a body refused for something else first."""
from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import functions.app  # noqa: F401  (declares every route the document describes)
from functions.system.routes import openapi_document
from tests.helpers import admin_headers, json_headers, verified_resident

DOCUMENT = openapi_document()
SCHEMAS = DOCUMENT["components"]["schemas"]
CJK = re.compile("[\u4e00-\u9fff]")
OPERATIONS = sorted(
    (path, method) for path, item in DOCUMENT["paths"].items() for method, op in item.items()
    if "application/json" in op.get("requestBody", {}).get("content", {}))


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema or "allOf" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[-1]] if "$ref" in schema else schema["allOf"][0]
    return schema


def instance(schema: dict[str, Any]) -> Any:
    """A plausible value of ``schema`` (enough to get past the other fields)."""
    schema = resolve(schema)
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {name: instance(sub) for name, sub in schema.get("properties", {}).items()
                if name in schema.get("required", [])}
    if kind == "array":
        return [instance(schema["items"])] if schema.get("minItems") else []
    if kind == "integer":
        return max(schema.get("minimum", 1), 1) if schema.get("maximum", 2) >= 1 else schema.get("minimum", 0)
    if kind == "number":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if schema.get("format") == "date-time":
        return "2026-12-01T12:00:00+08:00"
    if schema.get("format") == "date":
        return "2026-12-01"
    return "x" * max(schema.get("minLength", 1), 1)


def leaves(value: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [p for key, sub in value.items() for p in leaves(sub, (*path, key))] or [path]
    if isinstance(value, list):
        return [p for index, sub in enumerate(value) for p in leaves(sub, (*path, index))] or [path]
    return [path]


def put(body: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = dict(body) if isinstance(body, dict) else list(body)
    copy[head] = put(copy[head], tuple(rest), value)
    return copy


DEEP = "[" * 30_000 + "]" * 30_000  # 60 KB: under the body limit, far over the stack


def mutate(body: Any, kind: str, pick: int) -> tuple[str, bool]:
    """The raw JSON text to send and whether it must be a 400."""
    spots = leaves(body)
    spot = spots[pick % len(spots)]
    if kind == "surrogate":
        text_spots = [p for p in spots if p and isinstance(_get(body, p), str)]
        if not text_spots:
            kind = "unknown"
        else:
            spot = text_spots[pick % len(text_spots)]
            return json.dumps(put(body, spot, "ab\ud800cd")), True
    if kind == "unknown":
        if not isinstance(body, dict):
            return json.dumps({"surplus": 1}), True
        return json.dumps({**body, "surplus_field": "x"}), True
    if kind == "deep":
        return json.dumps(put(body, spot, "__DEEP__")).replace('"__DEEP__"', DEEP), False
    if kind == "huge":
        return json.dumps(put(body, spot, "__HUGE__")).replace('"__HUGE__"', "1" + "0" * 5000), False
    return json.dumps(put(body, spot, "__INF__")).replace('"__INF__"', "1e999"), False


def _get(body: Any, path: tuple) -> Any:
    for key in path:
        body = body[key]
    return body


@pytest.fixture(scope="module")
def callers():
    from chalice.test import Client
    from moto import mock_aws

    import boto3
    import os
    from functions import bootstrap
    from local.provision import provision_evidence_bucket, provision_queues, provision_tables

    with mock_aws():
        provision_tables(boto3.client("dynamodb"))
        provision_queues(boto3.client("sqs"))
        provision_evidence_bucket(boto3.client("s3"), os.environ["AWS_REGION"])
        bootstrap.reset()
        with Client(functions.app.app) as client:
            resident, _ = verified_resident(client, "fuzz-resident")
            yield client, {"resident": resident, "admin": admin_headers(client)}
        bootstrap.reset()


def concrete(path: str) -> str:
    return re.sub(r"{[^}]+}", "fuzz_id_1", path)


@pytest.mark.parametrize("path, method", OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_no_body_mutation_is_a_server_error(callers, path, method):
    client, headers = callers
    schema = DOCUMENT["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    body = instance(schema)

    @settings(max_examples=12, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(["surrogate", "unknown", "deep", "huge", "infinite"]),
           pick=st.integers(0, 50), who=st.sampled_from(["resident", "admin"]))
    def case(kind, pick, who):
        text, must_refuse = mutate(body, kind, pick)
        response = client.http.request(method.upper(), concrete(path), body=text,
                                       headers=json_headers(headers[who], f"fuzz-{kind}-{pick}"))
        assert response.status_code < 500, (kind, response.body[:300])
        reply = json.loads(response.body) if response.body else {}
        if response.status_code == 400:
            reasons = reply["details"].get("fields", {})
            assert reasons and all(CJK.search(reason) for reason in reasons.values()), reply
        if must_refuse and response.status_code not in (401, 403, 404):
            assert response.status_code == 400 and reply["code"] == "VALIDATION_ERROR", (kind, reply)

    case()


def test_the_fuzzer_reaches_every_body():
    assert len(OPERATIONS) >= 20
