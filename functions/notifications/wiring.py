"""Composition of notifications: which notifier a stage uses, the stores, the reminder job.

Local stages (``local``, ``test``) write every message to the ``outbox`` table
(``GET /v1/admin/outbox``); deployed stages send WeChat subscribe messages with the app
credentials from SSM. There is deliberately no setting to use the outbox in a deployed stage.
"""
from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from functions.core.secrets import get_secrets
from functions.core.settings import get_settings
from functions.notifications.dynamo import DynamoConsentStore, DynamoDeliveryStore, OutboxNotifier
from functions.notifications.notifier import Notifier
from functions.notifications.reminders import ReminderService
from functions.notifications.service import NotificationService
from functions.notifications.templates import TemplateRegistry
from functions.notifications.wechat import WeChatSubscribeNotifier


@lru_cache(maxsize=1)
def get_templates() -> TemplateRegistry:
    settings = get_settings()
    return TemplateRegistry(settings.wechat_templates, local_defaults=settings.is_local)


@lru_cache(maxsize=1)
def get_notifier() -> Notifier:
    settings = get_settings()
    if settings.is_local:
        return OutboxNotifier(get_templates())
    secrets = get_secrets()
    return WeChatSubscribeNotifier(
        settings.wechat_api_base,
        app_id=lambda: secrets.get(settings.wechat_app_id_parameter),
        app_secret=lambda: secrets.get(settings.wechat_app_secret_parameter),
        templates=get_templates(), miniprogram_state=settings.wechat_miniprogram_state)


@lru_cache(maxsize=1)
def get_notification_service() -> NotificationService:
    return NotificationService(DynamoConsentStore(), DynamoDeliveryStore(), get_notifier())


class IdentityContacts:
    """Openids of residents, from identity (one GetItem when the household is known)."""

    def openid_of(self, resident_id: str, household_id: str | None) -> str | None:
        from functions.core.errors import NotFound
        from functions.identity.wiring import get_identity_service

        service = get_identity_service()
        if household_id is not None:
            resident = service.store.get_resident(household_id, resident_id)
            return resident.openid if resident is not None else None
        try:
            return service.resident(resident_id).openid
        except NotFound:
            return None


@lru_cache(maxsize=1)
def get_reminder_service() -> ReminderService:
    from functions.requests.wiring import get_request_service

    return ReminderService(get_request_service(), IdentityContacts(), get_notification_service(),
                           lead=timedelta(minutes=get_settings().reminder_lead_minutes))


def send_due_reminders() -> dict[str, int]:
    return get_reminder_service().run()


def reset_wiring() -> None:
    """Forget built objects (tests that change settings)."""
    for factory in (get_templates, get_notifier, get_notification_service, get_reminder_service):
        factory.cache_clear()
