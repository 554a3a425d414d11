"""Builds the request service from its real adapters (one per process)."""
from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache

from functions.core.messaging import SqsPublisher
from functions.requests.catalog import get_catalog
from functions.requests.service import DEFAULT_AUTO_CONFIRM, RequestService
from functions.requests.store import RequestStore


def auto_confirm_period() -> timedelta:
    hours = os.environ.get("TIMEBANK_AUTO_CONFIRM_HOURS")
    return timedelta(hours=int(hours)) if hours else DEFAULT_AUTO_CONFIRM


@lru_cache(maxsize=1)
def get_request_store() -> RequestStore:
    return RequestStore(auto_confirm_period())


@lru_cache(maxsize=1)
def get_request_service() -> RequestService:
    from functions.identity.directory import get_directory
    from functions.ledger.service import get_ledger
    from functions.requests.volunteer_store import get_volunteer_service
    from functions.safety.insurance import get_insurance_register
    from functions.safety.wiring import evidence_service

    return RequestService(get_request_store(), get_ledger(), get_catalog(), SqsPublisher(),
                          get_insurance_register(), get_directory(), get_volunteer_service(),
                          evidence_service())
