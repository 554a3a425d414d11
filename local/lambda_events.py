"""Lambda-shaped events and contexts for the local runtime (what the real services send)."""
from __future__ import annotations

import base64
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable

from chalice.local import LambdaContext

LOCAL_ACCOUNT = "123456789012"  # moto's default account
DEFAULT_MEMORY_MB = 512


def partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws"


def lambda_context(function_name: str, timeout_seconds: float) -> LambdaContext:
    return LambdaContext(function_name, memory_size=DEFAULT_MEMORY_MB,
                         max_runtime_ms=int(timeout_seconds * 1000))


def sqs_event(messages: Iterable[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS → Lambda event from ``ReceiveMessage`` results, one record per message."""
    return {"Records": [_sqs_record(m, queue_arn, region) for m in messages]}


def _sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: str(v) for k, v in message.get("Attributes", {}).items()},
        "messageAttributes": {name: _message_attribute(value)
                              for name, value in message.get("MessageAttributes", {}).items()},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    # ReceiveMessage says StringValue/BinaryValue (bytes); Lambda says stringValue/binaryValue
    # (base64 text) and always carries both list fields.
    converted: dict[str, Any] = {
        "dataType": value["DataType"],
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [_b64(v) for v in value.get("BinaryListValues", [])],
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = _b64(value["BinaryValue"])
    return converted


def _b64(raw: bytes | str) -> str:
    return base64.b64encode(raw if isinstance(raw, bytes) else raw.encode()).decode()


def scheduled_event(rule_name: str, region: str, now: datetime | None = None) -> dict[str, Any]:
    """An EventBridge scheduled-rule event."""
    now = now or datetime.now(timezone.utc)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT,
        "time": now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:{partition(region)}:events:{region}:{LOCAL_ACCOUNT}:rule/{rule_name}"],
        "detail": {},
    }
