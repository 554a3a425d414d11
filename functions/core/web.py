"""HTTP plumbing shared by every Blueprint: one way to declare a route, authorize the caller,
validate the request, paginate, and turn errors into API.md's error body.

A route declares what it accepts; the declaration validates the request before the view runs
and is also what ``core.openapi`` documents (request schemas, parameters, error responses), so
the two cannot disagree::

    @route(bp, "/v1/things/{thing_id}", methods=["POST"], auth=Auth.VERIFIED, status=201,
           body=Schema({"name": Str(max_len=40, label="名称")}), errors=(NotFound,),
           response="Thing")
    def create(ctx: RequestContext, thing_id: str):
        \"\"\"Create a thing (the first docstring line is the operation's summary).\"\"\"
        return service.create(ctx.caller, thing_id, ctx.data["name"])

Only response schemas are written by hand, in ``functions/<domain>/openapi.json``.
"""
from __future__ import annotations

import base64
import functools
import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol

from chalice import Blueprint, Response

from functions.core import audit, clock
from functions.core.caller import Auth
from functions.core.errors import IdempotencyMismatch, NotFound, TimebankError, ValidationError
from functions.core.observability import count, logger
from functions.core.ids import derived_id, new_id
from functions.core.validation import Field, FieldError, Id, Schema, Str, field_error

MAX_BODY_BYTES = 64 * 1024
DEFAULT_PAGE = 20
MAX_PAGE = 100
NO_BODY = Schema({})
IDEMPOTENCY_KEY = Str(max_len=128, pattern=r"[A-Za-z0-9._:\-]+", label="Idempotency-Key")


class Authenticator(Protocol):
    def __call__(self, headers: Mapping[str, str], level: Auth) -> Any: ...


_authenticator: Authenticator | None = None


def use_authenticator(authenticator: Authenticator | None) -> None:
    """Called by the composition root (identity provides the implementation)."""
    global _authenticator
    _authenticator = authenticator


_audit_log: Callable[[], audit.AuditLog] | None = None


def use_audit_log(factory: Callable[[], audit.AuditLog] | None) -> None:
    """Called by the app that keeps an audit log (the community's; not the hub's): from then
    on admin routes, proxy acts and personal-data views leave entries (``core.audit``)."""
    global _audit_log
    _audit_log = factory


@dataclass
class RouteSpec:
    """Everything a route declares: what ``route`` enforces and ``core.openapi`` documents."""
    blueprint: str
    handler: str
    path: str
    method: str
    auth: Auth
    status: int
    body: Schema | None
    query: Schema | None
    path_params: dict[str, Field]
    idempotency: str | None            # "required" / "optional" / None
    paged: bool
    errors: tuple[Any, ...]             # error classes, or (status, code) raised behind a port
    response: Any                      # components name, a schema dict, or None (no body)
    responses: dict[int, Any]          # further success statuses (e.g. 200 for "already there")
    produces: str                      # response content type
    consumes: tuple[str, ...]
    summary: str
    description: str
    tags: tuple[str, ...]
    admin_action: str | None = None    # the audit action an admin route records
    personal_data: bool = False        # a view of personal data: audited whoever calls

    @property
    def audited(self) -> bool:
        return self.auth is Auth.ADMIN or self.personal_data

    @property
    def audit_action(self) -> str:
        return self.admin_action or f"{self.method.upper()} {self.path}"

    @property
    def operation_id(self) -> str:
        return f"{self.blueprint.rsplit('.', 2)[-2]}_{self.handler}"


ROUTES: list[RouteSpec] = []


@dataclass
class RequestContext:
    request: Any
    caller: Any
    data: dict[str, Any] = field(default_factory=dict)     # the validated body
    params: dict[str, Any] = field(default_factory=dict)   # the validated query
    key: str | None = None                                 # the Idempotency-Key
    limit: int = DEFAULT_PAGE
    cursor: dict[str, Any] | None = None

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers or {}

    def raw_body(self) -> bytes:
        try:
            raw = self.request.raw_body or b""
        except UnicodeEncodeError:
            # The gateway handed over text that is not Unicode (a lone surrogate): not JSON of ours.
            raise ValidationError("请求体含有无法识别的字符", {"fields": {"body": "含有无法识别的字符"}}) from None
        if len(raw) > MAX_BODY_BYTES:
            raise ValidationError("请求体过大", {"fields": {"body": f"不能超过 {MAX_BODY_BYTES // 1024} KB"}})
        return raw

    def json(self) -> Any:
        raw = self.raw_body()
        if not raw.strip():
            return {}
        return parse_json(raw)


def parse_json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        # Nesting deeper than the interpreter's stack: no schema of ours nests like that.
        raise ValidationError("请求体嵌套过深", {"fields": {"body": "嵌套层级过深"}}) from None
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("请求体不是合法的 JSON", {"fields": {"body": "不是合法的 JSON"}}) from None


def encode_cursor(last_key: Mapping[str, Any] | None) -> str | None:
    if not last_key:
        return None
    return base64.urlsafe_b64encode(json.dumps(last_key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if cursor in (None, ""):
        return None
    try:
        if len(cursor) > 2000:
            raise ValueError
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(value, dict):
            raise ValueError
        return value
    except (ValueError, TypeError, RecursionError):
        raise field_error("cursor", "不是本接口返回的翻页标记") from None


def page_body(items: list[Any], last_key: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": encode_cursor(last_key)}


def _page(params: Mapping[str, str]) -> tuple[int, dict[str, Any] | None]:
    raw_limit = params.get("limit")
    limit = DEFAULT_PAGE
    if raw_limit not in (None, ""):
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
            raise field_error("limit", f"须为 1 到 {MAX_PAGE} 的整数")
        limit = int(raw_limit)
    return limit, decode_cursor(params.get("cursor"))


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate somewhere (an echoed id): ASCII escapes always encode.
        text = json.dumps(body, ensure_ascii=True, separators=(",", ":"))
    return Response(body=text, status_code=status,
                    headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def error_response(error: TimebankError) -> Response:
    return json_response(error.to_body(), error.status)


_PATH_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)}")


def _docstring(view: Callable[..., Any]) -> tuple[str, str]:
    text = inspect.getdoc(view) or ""
    summary, _, rest = text.partition("\n")
    return summary.strip() or view.__name__.replace("_", " "), rest.strip()


def route(bp: Blueprint, path: str, methods: list[str] | None = None, *, auth: Auth,
          status: int = 200, body: Schema | None = None, query: Schema | None = None,
          path_params: Mapping[str, Field] | None = None, idempotency: str | None = None,
          paged: bool = False, errors: Iterable[Any] = (), response: Any = None,
          responses: Mapping[int, Any] | None = None, produces: str = "application/json",
          consumes: Iterable[str] = ("application/json",), tags: Iterable[str] = (),
          admin_action: str | None = None, personal_data: bool = False
          ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a view on a Blueprint with auth, validation, error mapping and JSON output.

    The view receives a ``RequestContext`` (``ctx.caller``, ``ctx.data``, ``ctx.params``,
    ``ctx.key``, ``ctx.limit``/``ctx.cursor``) and the URL parameters; it returns a JSON-able
    value (sent with ``status``) or a ``Response``.

    Audited (``core.audit``): every ``Auth.ADMIN`` route, every ``personal_data`` route and any
    request whose body names ``on_behalf_of``; ``admin_action`` names the entry's action.
    """
    if idempotency not in (None, "required", "optional"):
        raise ValueError("idempotency is 'required', 'optional' or None")
    names = _PATH_PARAM.findall(path)
    declared = dict(path_params or {})
    params = {name: declared.get(name) or Id(label=None) for name in names}

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        summary, description = _docstring(view)
        for method in methods or ["GET"]:
            ROUTES.append(RouteSpec(
                blueprint=getattr(bp, "_import_name", "functions.system.routes"), handler=view.__name__,
                path=path, method=method.lower(), auth=auth, status=status, body=body, query=query,
                path_params=params, idempotency=idempotency, paged=paged, errors=tuple(errors),
                response=response, responses=dict(responses or {}), produces=produces,
                consumes=tuple(consumes), summary=summary, description=description,
                tags=tuple(tags) or (path.split("/")[2] if path.count("/") >= 2 else "system",),
                admin_action=admin_action, personal_data=personal_data))

        @functools.wraps(view)
        def handler(**url_params: str) -> Response:
            request = bp.current_request
            token = None
            try:
                for name, value in url_params.items():
                    try:
                        params[name].clean(value)
                    except (FieldError, ValidationError):
                        # Not an id we could have issued: it cannot exist.
                        raise NotFound(details={name: "unknown"}) from None
                caller = None
                if auth is not Auth.PUBLIC:
                    if _authenticator is None:  # pragma: no cover - composition bug
                        raise RuntimeError("no authenticator configured")
                    caller = _authenticator(request.headers or {}, auth)
                ctx = RequestContext(request, caller)
                query_params = dict(request.query_params or {})
                if paged:
                    ctx.limit, ctx.cursor = _page(query_params)
                if query is not None:
                    ctx.params = query.query(query_params)
                if idempotency is not None:
                    ctx.key = _idempotency_key(ctx, idempotency == "required")
                if body is not None:
                    ctx.data = body.validate(ctx.json())
                elif request.method != "GET" and "application/json" in consumes:
                    NO_BODY.validate(ctx.json())  # no fields accepted: name any that were sent
                entry = _audit_entry(ctx, path, request.method, admin_action, url_params,
                                     auth is Auth.ADMIN or personal_data)
                if entry is not None:
                    token = audit.begin(entry)
                result = view(ctx, **url_params)
                if token is not None:
                    _write_unless_carried(result, status)
            except TimebankError as error:
                if error.status in (409, 422):
                    count("Refused")  # a business rule or a conflict said no (not bad input)
                return error_response(error)
            except Exception:  # noqa: BLE001 - the one place unexpected faults become a 500
                logger.exception("unhandled error", extra={"route": path, "method": request.method})
                return json_response({"code": "INTERNAL_ERROR", "message": "服务器内部错误，请稍后再试",
                                      "details": {}}, 500)
            finally:
                if token is not None:
                    audit.end(token)
            if isinstance(result, Response):
                return result
            return json_response(result, status)

        handler.timebank_auth = auth  # type: ignore[attr-defined]
        bp.route(path, methods=methods or ["GET"],
                 content_types=[*consumes, "text/plain"] if "application/json" in consumes else list(consumes)
                 )(handler)
        return view

    return decorator


def _audit_entry(ctx: RequestContext, path: str, method: str, action: str | None,
                 url_params: Mapping[str, str], audited: bool) -> audit.AuditEntry | None:
    """The entry this request will leave, or None when it is not audited."""
    member = ctx.data.get("on_behalf_of") if isinstance(ctx.data, dict) else None
    if _audit_log is None or ctx.caller is None or not (audited or member):
        return None
    _audit_log()  # built (and its transaction hook installed) before the view's first write
    actor = ctx.caller.actor
    details = audit.details_of({**(ctx.data if isinstance(ctx.data, dict) else {}), **ctx.params})
    target = dict(url_params)
    if member:
        details.update({"proxy": True, "member_id": member})
        target.setdefault("member_id", member)
    entry_id = derived_id("aud", actor, method, path, *target.values(), ctx.key) if ctx.key else new_id("aud")
    return audit.AuditEntry(id=entry_id, at=clock.now(), actor_id=actor,
                            action=action or f"{method.upper()} {path}", target=target,
                            reason=audit.clip_reason(ctx.data.get("reason") if isinstance(ctx.data, dict) else None),
                            details=details, subject=audit.subject_of({"m": member, **target}))


def _write_unless_carried(result: Any, status: int) -> None:
    """A successful request whose change no transaction carried: the entry alone."""
    code = result.status_code if isinstance(result, Response) else status
    entry = audit.pending()
    if entry is not None and code < 400 and _audit_log is not None:
        _audit_log().write(entry)


def _idempotency_key(ctx: RequestContext, required: bool) -> str | None:
    key = None
    for name, value in ctx.headers.items():
        if name.lower() == "idempotency-key":
            key = value
            break
    if key is None:
        if required:
            raise ValidationError("缺少 Idempotency-Key 请求头", {"fields": {"Idempotency-Key": "必填"}})
        return None
    try:
        return IDEMPOTENCY_KEY.clean(key)
    except FieldError as error:
        raise ValidationError("Idempotency-Key 无效", {"fields": {"Idempotency-Key": str(error)}}) from None


def same_or_mismatch(stored_fingerprint: str, fingerprint: str) -> None:
    """A replay of an Idempotency-Key must carry the body the key was first used with."""
    if stored_fingerprint != fingerprint:
        raise IdempotencyMismatch()


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
