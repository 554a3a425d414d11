"""The OpenAPI 3 document, built from the routes' own declarations.

Request bodies, query, path and header parameters and every error response come from what each
route declares in ``core.web.route`` (the same objects validate the request). Only the response
schemas are written by hand, as ``components.schemas`` in ``functions/<domain>/openapi.json``;
a route names its response by component (``response="ServiceRequest"``), and paged routes get
the ``{"items", "next_cursor"}`` envelope around it.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping

from functions.core.errors import Forbidden, IdempotencyMismatch, NotFound, NotVerified, ValidationError
from functions.core.web import Auth, RouteSpec

ERROR_REF = {"$ref": "#/components/schemas/Error"}

_AUTH_ERRORS: dict[Auth, tuple[tuple[int, str], ...]] = {
    Auth.PUBLIC: (),
    Auth.LOGIN: ((401, "UNAUTHENTICATED"),),
    Auth.REGISTERED: ((401, "UNAUTHENTICATED"), (403, "NOT_REGISTERED")),
    Auth.VERIFIED: ((401, "UNAUTHENTICATED"), (403, "NOT_REGISTERED"), (403, NotVerified.code)),
    Auth.VERIFIED_OR_ADMIN: ((401, "UNAUTHENTICATED"), (403, "NOT_REGISTERED"), (403, NotVerified.code)),
    Auth.ADMIN: ((401, "UNAUTHENTICATED"), (403, Forbidden.code)),
    Auth.MERCHANT: ((401, "UNAUTHENTICATED"), (403, Forbidden.code)),
}

_STATUS_TEXT = {400: "请求参数有误", 401: "未登录或登录失效", 403: "无权执行", 404: "不存在",
                409: "状态冲突", 413: "请求体过大", 422: "不符合业务规则", 429: "请求过于频繁",
                502: "外部服务暂时不可用"}


def _error_codes(spec: RouteSpec) -> dict[int, list[str]]:
    codes: dict[int, list[str]] = {}

    def add(status: int, code: str) -> None:
        entry = codes.setdefault(status, [])
        if code not in entry:
            entry.append(code)

    for status, code in _AUTH_ERRORS[spec.auth]:
        add(status, code)
    if spec.body is not None or spec.query is not None or spec.paged or spec.idempotency \
            or spec.method in ("post", "put", "patch", "delete"):
        add(400, ValidationError.code)
    if spec.path_params:
        add(404, NotFound.code)
    if spec.idempotency:
        add(409, IdempotencyMismatch.code)
    for error in spec.errors:
        if isinstance(error, tuple):  # (status, code) raised behind a port by another domain
            add(*error)
        else:
            add(error.status, error.code)
    return codes


def _parameters(spec: RouteSpec) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, rule in spec.path_params.items():
        out.append({"name": name, "in": "path", "required": True, "schema": rule.schema()})
    if spec.query is not None:
        for name, rule in spec.query.fields.items():
            out.append({"name": name, "in": "query", "required": rule.required, "schema": rule.schema()})
    if spec.paged:
        out.append({"name": "limit", "in": "query", "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}})
        out.append({"name": "cursor", "in": "query", "required": False,
                    "schema": {"type": "string", "maxLength": 2000},
                    "description": "next_cursor of the previous page"})
    if spec.idempotency:
        from functions.core.web import IDEMPOTENCY_KEY

        out.append({"name": "Idempotency-Key", "in": "header", "required": spec.idempotency == "required",
                    "description": "the same key with the same body returns the first response; "
                                   "with another body 409 IDEMPOTENCY_MISMATCH",
                    "schema": IDEMPOTENCY_KEY.schema()})
    return out


def _schema_ref(response: Any) -> dict[str, Any]:
    if isinstance(response, str):
        return {"$ref": f"#/components/schemas/{response}"}
    return copy.deepcopy(response)


def _success(spec: RouteSpec, status: int, response: Any) -> dict[str, Any]:
    if response is None:
        return {"description": "no content" if status == 204 else "ok"}
    if spec.produces != "application/json":
        schema = {"type": "string"} if not isinstance(response, dict) else response
        return {"description": "ok", "content": {spec.produces: {"schema": schema}}}
    schema = _schema_ref(response)
    if spec.paged:
        schema = {"type": "object", "required": ["items", "next_cursor"], "properties": {
            "items": {"type": "array", "items": schema},
            "next_cursor": {"type": "string", "nullable": True}}}
    return {"description": "ok", "content": {"application/json": {"schema": schema}}}


def operation(spec: RouteSpec) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": spec.operation_id, "summary": spec.summary, "tags": list(spec.tags),
                          "x-auth": spec.auth.value}
    if spec.description:
        op["description"] = spec.description
    if spec.auth is not Auth.PUBLIC:
        op["security"] = [{"bearerAuth": []}]
    parameters = _parameters(spec)
    if parameters:
        op["parameters"] = parameters
    if spec.body is not None:
        body_schema = ({"$ref": f"#/components/schemas/{spec.body.name}"} if spec.body.name
                       else spec.body.definition())
        content: dict[str, Any] = {"schema": body_schema}
        if spec.body.example is not None:
            content["example"] = spec.body.example
        op["requestBody"] = {"required": True, "content": {"application/json": content}}
    elif spec.consumes and "application/json" not in spec.consumes:
        op["requestBody"] = {"required": True, "content": {
            kind: {"schema": {"type": "string", "format": "binary"}} for kind in spec.consumes}}
    responses: dict[str, Any] = {str(spec.status): _success(spec, spec.status, spec.response)}
    for status, response in spec.responses.items():
        responses[str(status)] = _success(spec, status, response)
    for status, codes in sorted(_error_codes(spec).items()):
        responses[str(status)] = {"description": f"{_STATUS_TEXT.get(status, 'error')}: {' / '.join(codes)}",
                                  "content": {"application/json": {"schema": ERROR_REF}}}
    op["responses"] = responses
    if spec.admin_action:
        op["x-audit-action"] = spec.admin_action
    return op


def build_document(base: Mapping[str, Any], routes: Iterable[RouteSpec],
                   fragments: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``base`` (info, servers, shared components) + one operation per route + each domain's
    hand-written response schemas (``fragments``: source name → its openapi.json)."""
    document = copy.deepcopy(dict(base))
    document["paths"] = {}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for source, fragment in sorted(fragments.items()):
        for name, schema in fragment.get("components", {}).get("schemas", {}).items():
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"{source}: components.schemas.{name} differs from another domain's")
            schemas[name] = schema
    generated: dict[str, dict[str, Any]] = {}
    for spec in routes:
        for named in (spec.body.named() if spec.body is not None else ()):
            definition = named.definition()
            if generated.get(named.name, definition) != definition or (
                    named.name in schemas and named.name not in generated):
                raise ValueError(f"schema {named.name} is declared twice with different fields")
            generated[named.name] = schemas[named.name] = definition
        target = document["paths"].setdefault(spec.path, {})
        if spec.method in target:
            raise ValueError(f"{spec.method.upper()} {spec.path} is declared twice")
        target[spec.method] = operation(spec)
    missing = sorted({ref for ref in _refs(document) if ref not in schemas})
    if missing:
        raise ValueError(f"responses name schemas no domain defines: {', '.join(missing)}")
    return document


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            yield ref.rsplit("/", 1)[-1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)
