"""Sending a notification at most once, only with the recipient's consent.

WeChat subscribe messages are one-time: each time a user taps "allow" for a template in the
mini-program, one message of that template may be sent to them. We keep a counter per
(openid, template): a consent adds one, a send consumes one with a conditional decrement, and a
43101 answer (the user refused, or WeChat's count is lower than ours) sets it to zero.

Every message has a delivery key (e.g. ``match#<request>#<volunteer>``). ``deliver_once``
first claims the key with a conditional put, then consumes a consent, then sends; a message
that went out leaves the claim as its record (``claimed``), any other outcome is written over it. So a
duplicate event, a retried batch or a schedule firing twice can never send twice; the price is
that a crash after the claim and before the send loses that one message (at most once — a lost
reminder costs less than a duplicate, which would also burn a consent the user gave for later).
Transient failures (WeChat busy, network) give the consent back and release the claim so that
the caller's retry sends it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable, Iterable, Mapping

from functions.core import clock
from functions.core.observability import logger
from functions.core.validation import field_error
from functions.notifications.model import (FAILED, REFUSED, SKIPPED, TEMPLATES, Consent, Delivery,
                                           DeliveryOutcome, SendStatus)
from functions.notifications.ports import ConsentStore, DeliveryStore, Notifier


class NotificationService:
    def __init__(self, consents: ConsentStore, deliveries: DeliveryStore, notifier: Notifier,
                 now: Callable[[], datetime] = clock.now):
        self.consents, self.deliveries, self.notifier, self.now = consents, deliveries, notifier, now

    # --- consent ----------------------------------------------------------------------------
    def record_consent(self, openid: str, template: str, accepted: bool) -> Consent:
        check_template(template)
        if accepted:
            return self.consents.grant(openid, template, self.now())
        return self.consents.refuse(openid, template, self.now())

    def consents_of(self, openid: str) -> list[Consent]:
        stored = self.consents.of(openid)
        return [stored.get(name) or Consent(template=name) for name in TEMPLATES]

    # --- delivery ---------------------------------------------------------------------------
    def already_claimed(self, keys: Iterable[str]) -> set[str]:
        return self.deliveries.claimed(keys)

    def deliver_once(self, key: str, *, openid: str, template: str, data: Mapping[str, str],
                     page: str | None, recipient_id: str, request_id: str | None = None) -> DeliveryOutcome:
        check_template(template)
        now = self.now()
        if not self.deliveries.claim(Delivery(key=key, template=template, recipient_id=recipient_id,
                                              request_id=request_id, created_at=now)):
            return DeliveryOutcome.DUPLICATE
        if not self.consents.consume(openid, template, now):
            self.deliveries.finish(key, SKIPPED, None, now)
            logger.info("notification skipped: no consent", extra={"template": template, "delivery": key})
            return DeliveryOutcome.SKIPPED
        try:
            result = self.notifier.send(openid, template, data, page)
        except Exception:  # noqa: BLE001 - an adapter fault must not strand the consent and the claim
            logger.exception("notifier raised", extra={"template": template, "delivery": key})
            result = None
        if result is None or result.status is SendStatus.RETRY:
            self.consents.give_back(openid, template)
            self.deliveries.release(key)
            return DeliveryOutcome.RETRY
        if result.status is SendStatus.SENT:
            return DeliveryOutcome.SENT  # the claim stays as the record: no second write
        if result.status is SendStatus.REFUSED:
            self.consents.exhaust(openid, template, now)
            self.deliveries.finish(key, REFUSED, result.errcode, now)
            return DeliveryOutcome.REFUSED
        # Permanent failure: WeChat did not deliver, so the user's consent was not used either.
        self.consents.give_back(openid, template)
        self.deliveries.finish(key, FAILED, result.errcode, now)
        return DeliveryOutcome.FAILED


def check_template(template: str) -> None:
    if template not in TEMPLATES:
        raise field_error("template", f"须为以下之一：{'、'.join(TEMPLATES)}")
