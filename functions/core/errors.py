"""The one error hierarchy of Timebank.

Domain code raises these; entrypoints map them to HTTP responses (see ``core.web``) or to
queue results. ``code`` is the stable machine-readable code of API.md, ``message`` is the
readable zh-CN text shown to residents, ``details`` carries the offending fields.
"""
from __future__ import annotations

from typing import Any


class TimebankError(Exception):
    status = 400
    code = "BAD_REQUEST"
    default_message = "请求无效"

    def __init__(self, message: str | None = None, details: dict[str, Any] | None = None,
                 code: str | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        if code:
            self.code = code
        super().__init__(self.message)

    def to_body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ValidationError(TimebankError):
    status = 400
    code = "VALIDATION_ERROR"
    default_message = "请求参数有误"


class Unauthenticated(TimebankError):
    status = 401
    code = "UNAUTHENTICATED"
    default_message = "请先登录"


class Forbidden(TimebankError):
    status = 403
    code = "FORBIDDEN"
    default_message = "无权执行此操作"


class NotVerified(Forbidden):
    code = "NOT_VERIFIED"
    default_message = "请等待社区审核通过后再操作"


class NotFound(TimebankError):
    status = 404
    code = "NOT_FOUND"
    default_message = "未找到"


class Conflict(TimebankError):
    status = 409
    code = "CONFLICT"
    default_message = "状态冲突"


class AlreadyExists(Conflict):
    code = "ALREADY_EXISTS"
    default_message = "已存在"


class InvalidState(Conflict):
    code = "INVALID_STATE"
    default_message = "当前状态不允许此操作"


class IdempotencyMismatch(Conflict):
    code = "IDEMPOTENCY_MISMATCH"
    default_message = "同一幂等键对应了不同的请求内容"


class BusinessRuleViolation(TimebankError):
    status = 422
    code = "BUSINESS_RULE"
    default_message = "不符合业务规则"


class InsufficientCredits(BusinessRuleViolation):
    code = "INSUFFICIENT_CREDITS"
    default_message = "可用时间积分不足"


class LimitExceeded(BusinessRuleViolation):
    code = "LIMIT_EXCEEDED"
    default_message = "超出限额"


class NotRelative(BusinessRuleViolation):
    code = "NOT_RELATIVE"
    default_message = "只能转给家庭成员、亲属或社区公益池"


class UpstreamError(TimebankError):
    """An external service (WeChat, insurer, 志愿汇) failed; not the caller's fault."""
    status = 502
    code = "UPSTREAM_ERROR"
    default_message = "外部服务暂时不可用，请稍后再试"
