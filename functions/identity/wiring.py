"""Composition of identity: the DynamoDB store and the ledger behind the service.

Handlers, the auth helper and other domains get the service from ``get_identity_service()``;
tests may install another one with ``use_identity_service``.
"""
from __future__ import annotations

from functions.core.errors import IdempotencyMismatch
from functions.core.ids import derived_id
from functions.core.settings import get_settings
from functions.identity.dynamo import DynamoIdentityStore  # importing registers the identity tables
from functions.identity.service import IdentityConfig, IdentityService

STARTING_CREDITS_KIND = "starting_credits"
STARTING_CREDITS_MEMO = "新户启动积分"


def starting_credits_transfer_id(household_id: str) -> str:
    return derived_id("tr", "starting-credits", household_id)


class LedgerStartingCredits:
    """Starting credits as one ledger transfer issuance → household, id derived from the household."""

    def grant(self, household_id: str, amount: int, actor: str) -> None:
        from functions.ledger.accounts import ISSUANCE, household_account
        from functions.ledger.service import get_ledger

        try:
            get_ledger().transfer(
                transfer_id=starting_credits_transfer_id(household_id), debit=ISSUANCE,
                credit=household_account(household_id), asset="service", amount=amount,
                kind=STARTING_CREDITS_KIND, memo=STARTING_CREDITS_MEMO, actor=actor)
        except IdempotencyMismatch:
            # The household's transfer exists already with other content (the configured amount
            # changed between a crashed verify and its retry): it was granted; never grant twice.
            return


_service: IdentityService | None = None


def get_identity_service() -> IdentityService:
    global _service
    if _service is None:
        settings = get_settings()
        _service = IdentityService(
            DynamoIdentityStore(), LedgerStartingCredits(),
            IdentityConfig(community_id=settings.community_id, admin_openids=settings.admin_openids,
                           starting_credits=settings.starting_credits))
    return _service


def use_identity_service(service: IdentityService | None) -> None:
    """Install a service (tests); ``None`` rebuilds the default from settings on next use."""
    global _service
    _service = service
