"""Create the product's resources on the moto endpoint from the definitions the code, the tests
and infra/ share: ``bootstrap.table_definitions``, ``messaging.QUEUES`` and the settings' bucket.

Every step is idempotent (existing resources are kept), so provisioning twice is harmless.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from functions.core.messaging import QueueSpec, dead_letter_queue_name, queue_name, stack_queues
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

    definitions = table_definitions()
    create_tables(dynamodb, definitions)
    # This stack's own (a district's other stacks share the endpoint).
    existing = set(dynamodb.list_tables()["TableNames"])
    return sorted(d["TableName"] for d in definitions if d["TableName"] in existing)


def provision_queues(sqs: Any) -> dict[str, ProvisionedQueue]:
    """Every queue of this stack (``messaging.stack_queues``) with its dead-letter queue and
    redrive policy."""
    return {logical: provision_queue(sqs, spec) for logical, spec in sorted(stack_queues().items())}


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


def local_secret_value(*parts: str) -> str:
    """A key for the local district (moto): derived from the district and community ids, so the
    community and the hub, provisioning their own copies, hold the same key without talking."""
    import hashlib

    return hashlib.sha256("\x1f".join(("timebank-local-district", *parts)).encode()).hexdigest()


def district_secrets() -> dict[str, str]:
    """Secret name → local value of this stack's district keys (none outside a district)."""
    settings = get_settings()
    if settings.stack == "hub":
        return {entry["key_secret"]: local_secret_value("hub-key", settings.district_id, community)
                for community, entry in sorted(settings.hub_communities.items())}
    if not settings.district_id:
        return {}
    return {settings.hub_key_secret: local_secret_value("hub-key", settings.district_id, settings.community_id),
            settings.phone_hash_secret: local_secret_value("phone-hash", settings.district_id)}


def provision_district_secrets(secretsmanager: Any) -> list[str]:
    """Create this stack's district keys in (moto's) Secrets Manager; existing ones are kept."""
    created = []
    for name, value in district_secrets().items():
        try:
            secretsmanager.create_secret(Name=name, SecretString=value)
            created.append(name)
        except secretsmanager.exceptions.ResourceExistsException:
            pass
    return created
