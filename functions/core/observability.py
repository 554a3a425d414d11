"""Structured logs and metrics (powertools), the same way on every handler.

``invocation`` is registered once, as Chalice middleware for every event type (HTTP, SQS,
schedules): each invocation's log lines carry its request id and correlation id and whether it
was a cold start, and its business metrics (``count("RequestPosted")``) are flushed as one EMF
line when it ends. The Chalice app is created with ``configure_logs=False`` so each line is
printed once.

Only the logging and metrics modules of powertools are imported (not the package root, which
also offers the X-Ray tracer). Never log personal data: ids are fine, names, phones, addresses,
bodies are not; openids are logged as ``openid_hash``.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import Metrics, MetricUnit

logger = Logger(service="timebank")
metrics = Metrics(namespace="Timebank", service="timebank")

_cold_start = True


def count(name: str, value: int = 1) -> None:
    """A business metric of this invocation (flushed by ``invocation`` at its end)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def openid_hash(openid: str | None) -> str | None:
    """How an openid appears in logs: the same person links across lines, and is not named."""
    if not openid:
        return None
    return hashlib.sha256(f"timebank-log\x1f{openid}".encode()).hexdigest()[:16]


def actor_ref(resident_id: str | None, openid: str | None) -> str | None:
    """Who did something, as every log line names them: the resident id, or for an admin with
    no resident record the digest of the openid — the one rule for all domains."""
    return resident_id or openid_hash(openid)


def _ids(event: Any) -> tuple[str | None, str | None, str]:
    """(request id, correlation id, kind) of a Chalice event object."""
    lambda_context = getattr(event, "lambda_context", None)
    if lambda_context is None and not isinstance(getattr(event, "context", None), dict):
        lambda_context = getattr(event, "context", None)
    request_id = getattr(lambda_context, "aws_request_id", None)
    if hasattr(event, "method") and hasattr(event, "headers"):  # HTTP
        headers = {k.lower(): v for k, v in (event.headers or {}).items()}
        context = event.context if isinstance(event.context, dict) else {}
        correlation = headers.get("x-correlation-id") or context.get("requestId")
        return request_id or context.get("requestId"), correlation, "http"
    raw = event.to_dict() if hasattr(event, "to_dict") else {}
    if isinstance(raw, dict) and isinstance(raw.get("Records"), list):
        first = raw["Records"][0] if raw["Records"] else {}
        attributes = first.get("messageAttributes") or {}
        correlation = (attributes.get("correlation_id") or {}).get("stringValue") or first.get("messageId")
        return request_id, correlation, "sqs"
    return request_id, (raw.get("id") if isinstance(raw, dict) else None), "schedule"


def invocation(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware ('all'): request/correlation ids and cold start on every log line,
    one metrics flush per invocation."""
    global _cold_start
    request_id, correlation_id, kind = _ids(event)
    cold = _cold_start
    _cold_start = False
    # Thread-local: Lambda runs one invocation per process, the local runtime several at once.
    logger.thread_safe_append_keys(function_request_id=request_id, correlation_id=correlation_id,
                                   cold_start=cold, invocation=kind)
    if cold:
        metrics.add_metadata(key="cold_start", value=True)
    try:
        return get_response(event)
    finally:
        try:
            if metrics.metric_set:
                metrics.flush_metrics()
        finally:
            logger.thread_safe_remove_keys(["function_request_id", "correlation_id", "cold_start", "invocation"])
