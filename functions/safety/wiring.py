"""Builds the safety services from their real adapters (one per process)."""
from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from functions.core.errors import NotFound
from functions.core.settings import get_settings
from functions.safety.access_log_store import DynamoAccessLog
from functions.safety.evidence import EvidenceService
from functions.safety.evidence_storage import S3ObjectStorage
from functions.safety.insurance import InsurancePolicy, InsuranceRegister
from functions.safety.insurance_store import DynamoInsuranceRecordStore


def _category_name(category_id: str) -> str:
    from functions.requests.catalog import get_catalog

    try:
        return get_catalog().get(category_id).name
    except NotFound:
        return category_id  # a category removed since: the id still identifies it


def insurance_policy() -> InsurancePolicy:
    settings = get_settings()
    return InsurancePolicy(settings.insurer, settings.insurance_policy_number,
                           timedelta(minutes=settings.insurance_buffer_minutes))


@lru_cache(maxsize=1)
def insurance_register() -> InsuranceRegister:
    from functions.requests.wiring import get_request_store

    return InsuranceRegister(DynamoInsuranceRecordStore(), get_request_store(), _category_name,
                             insurance_policy())


@lru_cache(maxsize=1)
def evidence_service() -> EvidenceService:
    from functions.requests.wiring import get_request_store

    settings = get_settings()
    return EvidenceService(get_request_store(), S3ObjectStorage(settings.evidence_bucket), DynamoAccessLog(),
                           retention_days=settings.evidence_retention_days)
