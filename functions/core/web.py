"""HTTP plumbing shared by every Blueprint: one way to declare a route, authorize the caller,
read the body, paginate, and turn errors into API.md's error body.

Handlers stay thin::

    @route(bp, "/v1/things/{thing_id}", methods=["POST"], auth=Auth.VERIFIED, status=201)
    def create(ctx: RequestContext, thing_id: str):
        body = ctx.body({"name": Str(max_len=40)})
        return service.create(ctx.caller, thing_id, body["name"])
"""
from __future__ import annotations

import base64
import enum
import functools
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from chalice import Blueprint, Response

from functions.core.errors import TimebankError, ValidationError
from functions.core.observability import logger
from functions.core.validation import Field, Str, validate

MAX_BODY_BYTES = 64 * 1024
DEFAULT_PAGE = 20
MAX_PAGE = 100


class Auth(enum.Enum):
    PUBLIC = "public"          # no token needed
    LOGIN = "login"            # a valid token, registered or not
    REGISTERED = "registered"  # a resident record exists (any status)
    VERIFIED = "verified"      # a verified resident
    ADMIN = "admin"            # an admin of this community
    VERIFIED_OR_ADMIN = "verified_or_admin"  # acts of a party that admins may also take (confirm, cancel)


class Authenticator(Protocol):
    def __call__(self, headers: Mapping[str, str], level: Auth) -> Any: ...


_authenticator: Authenticator | None = None


def use_authenticator(authenticator: Authenticator) -> None:
    """Called once by the app composition root (identity provides the implementation)."""
    global _authenticator
    _authenticator = authenticator


@dataclass
class RequestContext:
    request: Any
    caller: Any

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers or {}

    def json(self) -> Any:
        raw = self.request.raw_body or b""
        if len(raw) > MAX_BODY_BYTES:
            raise ValidationError("请求体过大", {"fields": {"body": f"at most {MAX_BODY_BYTES} bytes"}})
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ValidationError("请求体不是合法的 JSON", {"fields": {"body": "malformed JSON"}}) from None

    def body(self, spec: Mapping[str, Field]) -> dict[str, Any]:
        return validate(self.json(), spec)

    def query(self, spec: Mapping[str, Field]) -> dict[str, Any]:
        params = dict(self.request.query_params or {})
        return validate(params, spec)

    def idempotency_key(self, required: bool = True) -> str | None:
        key = self.headers.get("idempotency-key")
        if key is None:
            if required:
                raise ValidationError("缺少 Idempotency-Key 请求头",
                                      {"fields": {"Idempotency-Key": "is required"}})
            return None
        try:
            return Str(max_len=128, pattern=r"[A-Za-z0-9._:\-]+").clean(key)
        except ValueError as exc:
            raise ValidationError("Idempotency-Key 无效", {"fields": {"Idempotency-Key": str(exc)}}) from None

    def page(self) -> tuple[int, dict[str, Any] | None]:
        """``?limit=`` (default 20, max 100) and the decoded ``?cursor=``."""
        params = self.request.query_params or {}
        raw_limit = params.get("limit")
        limit = DEFAULT_PAGE
        if raw_limit is not None:
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
                raise ValidationError(details={"fields": {"limit": f"must be an integer from 1 to {MAX_PAGE}"}})
            limit = int(raw_limit)
        return limit, decode_cursor(params.get("cursor"))


def encode_cursor(last_key: Mapping[str, Any] | None) -> str | None:
    if not last_key:
        return None
    return base64.urlsafe_b64encode(json.dumps(last_key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if cursor in (None, ""):
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(value, dict):
            raise ValueError
        return value
    except (ValueError, TypeError):
        raise ValidationError(details={"fields": {"cursor": "is not a cursor this API returned"}}) from None


def page_body(items: list[Any], last_key: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": encode_cursor(last_key)}


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


def error_response(error: TimebankError) -> Response:
    return json_response(error.to_body(), error.status)


def route(bp: Blueprint, path: str, methods: list[str] | None = None, *, auth: Auth,
          status: int = 200) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a view on a Blueprint with auth, error mapping and JSON output.

    The view receives a ``RequestContext`` and the URL parameters; it returns a JSON-able
    value (sent with ``status``) or a ``Response``.
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def handler(**url_params: str) -> Response:
            request = bp.current_request
            try:
                caller = None
                if auth is not Auth.PUBLIC:
                    if _authenticator is None:  # pragma: no cover - composition bug
                        raise RuntimeError("no authenticator configured")
                    caller = _authenticator(request.headers or {}, auth)
                result = view(RequestContext(request, caller), **url_params)
            except TimebankError as error:
                return error_response(error)
            except Exception:  # noqa: BLE001 - the one place unexpected faults become a 500
                logger.exception("unhandled error", extra={"route": path, "method": request.method})
                return json_response({"code": "INTERNAL_ERROR", "message": "服务器内部错误，请稍后再试",
                                      "details": {}}, 500)
            if isinstance(result, Response):
                return result
            return json_response(result, status)

        handler.timebank_auth = auth  # type: ignore[attr-defined]
        bp.route(path, methods=methods or ["GET"], content_types=["application/json", "text/plain"])(handler)
        return view

    return decorator


# Errors Chalice raises before a view runs (unknown method, unsupported content type, …) come
# in its own {"Code", "Message"} shape; API.md promises one error body everywhere.
_CHALICE_ERRORS = {
    405: ("METHOD_NOT_ALLOWED", "该接口不支持此请求方法"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "请求体须为 JSON（Content-Type: application/json）"),
    400: ("VALIDATION_ERROR", "请求无效"),
    404: ("NOT_FOUND", "未找到"),
    413: ("VALIDATION_ERROR", "请求体过大"),
}
NOT_FOUND_ROUTE_BODY = {"code": "NOT_FOUND", "message": "接口不存在", "details": {}}


def contract_error_shape(event: Any, get_response: Callable[[Any], Response]) -> Response:
    """HTTP middleware: rewrite Chalice's own error bodies into API.md's error body."""
    response = get_response(event)
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and set(body) == {"Code", "Message"}:
        code, message = _CHALICE_ERRORS.get(response.status_code, ("BAD_REQUEST", "请求无效"))
        return json_response({"code": code, "message": message, "details": {}}, response.status_code)
    return response
