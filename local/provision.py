"""Create the product's resources on the moto endpoint from the definitions the code, the tests
and infra/ share: ``bootstrap.table_definitions``, ``messaging.QUEUES`` and the settings' bucket.

Every step is idempotent (existing resources are kept), so provisioning twice is harmless.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from functions.core.messaging import QUEUES, QueueSpec, dead_letter_queue_name, queue_name
from functions.core.settings import get_settings
from functions.adapters.dynamo import create_tables

DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # the SQS maximum: time to look at what failed


@dataclass(frozen=True)
class ProvisionedQueue:
    spec: QueueSpec
    url: str
    arn: str
    dead_letter_url: str
    dead_letter_arn: str


def provision_tables(dynamodb: Any) -> list[str]:
    from functions.bootstrap import table_definitions

    create_tables(dynamodb, table_definitions())
    return sorted(dynamodb.list_tables()["TableNames"])


def provision_queues(sqs: Any) -> dict[str, ProvisionedQueue]:
    """Every queue of ``QUEUES`` with its dead-letter queue and redrive policy."""
    return {logical: provision_queue(sqs, spec) for logical, spec in sorted(QUEUES.items())}


def provision_queue(sqs: Any, spec: QueueSpec) -> ProvisionedQueue:
    dlq_url = sqs.create_queue(
        QueueName=dead_letter_queue_name(spec.logical_name),
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)},
    )["QueueUrl"]
    dlq_arn = _arn(sqs, dlq_url)
    attributes = {
        "VisibilityTimeout": str(spec.visibility_timeout_seconds),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(spec.max_receive_count)}),
    }
    url = sqs.create_queue(QueueName=queue_name(spec.logical_name))["QueueUrl"]
    # set_queue_attributes rather than create_queue(Attributes=...): a queue that already
    # exists with other attributes would make create_queue fail.
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return ProvisionedQueue(spec, url, _arn(sqs, url), dlq_url, dlq_arn)


def provision_evidence_bucket(s3: Any, region: str) -> str:
    """Private bucket for check-in/out photos: all public access blocked, encrypted at rest."""
    bucket = get_settings().evidence_bucket
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True,
        "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
    })
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}],
    })
    return bucket


def _arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
