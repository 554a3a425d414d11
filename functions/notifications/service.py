"""Sending a notification at most once, only with the recipient's consent.

WeChat subscribe messages are one-time: each time a user taps "allow" for a template in the
mini-program, one message of that template may be sent to them. We keep a counter per
(openid, template): a consent adds one, a send consumes one with a conditional decrement, and a
43101 answer (the user refused, or WeChat's count is lower than ours) sets it to zero.

Every message has a delivery key (e.g. ``match#<request>#<volunteer>``). ``deliver_once``
first claims the key with a conditional put, then consumes a consent, then sends. So a
duplicate event, a retried batch or a schedule firing twice can never send twice; the price is
that a crash after the claim and before the send loses that one message (at most once — a lost
reminder costs less than a duplicate, which would also burn a consent the user gave for later).
Transient failures (WeChat busy, network) give the consent back and release the claim so that
the caller's retry sends it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Mapping, Protocol

from functions.core import clock
from functions.core.errors import ValidationError
from functions.core.observability import logger
from functions.notifications.notifier import Notifier, SendStatus
from functions.notifications.templates import TEMPLATES

# Delivery statuses as stored.
SENDING, SENT, SKIPPED, REFUSED, FAILED = "sending", "sent", "skipped", "refused", "failed"


class DeliveryOutcome(enum.Enum):
    SENT = "sent"
    SKIPPED = "skipped"        # no consent left for this template: not sent, recorded
    REFUSED = "refused"        # WeChat said 43101: consent recorded as used up
    FAILED = "failed"          # permanent failure, recorded
    RETRY = "retry"            # transient failure: claim released, consent given back
    DUPLICATE = "duplicate"    # this delivery key was claimed before: nothing done


@dataclass(frozen=True)
class Consent:
    template: str
    available: int = 0
    accepted_total: int = 0
    refused_total: int = 0
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    key: str
    template: str
    recipient_id: str           # a resident id (never the openid: this is what we record)
    request_id: str | None
    created_at: datetime
    status: str = SENDING
    errcode: int | None = None


class ConsentStore(Protocol):
    def grant(self, openid: str, template: str, at: datetime) -> Consent: ...

    def refuse(self, openid: str, template: str, at: datetime) -> Consent: ...

    def consume(self, openid: str, template: str, at: datetime) -> bool:
        """Take one consent if any is left (atomically); False when none is."""

    def give_back(self, openid: str, template: str) -> None: ...

    def exhaust(self, openid: str, template: str, at: datetime) -> None: ...

    def of(self, openid: str) -> dict[str, Consent]: ...


class DeliveryStore(Protocol):
    def claim(self, delivery: Delivery) -> bool:
        """Record the delivery as ``sending`` unless its key exists; False when it does."""

    def finish(self, key: str, status: str, errcode: int | None, at: datetime) -> None: ...

    def release(self, key: str) -> None:
        """Forget a claim still ``sending`` (a transient failure: the next attempt may claim it)."""

    def claimed(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` were claimed (one batch read: schedules check before writing)."""


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
            self.deliveries.finish(key, SENT, None, now)
            return DeliveryOutcome.SENT
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
        raise ValidationError(details={"fields": {"template": f"must be one of {', '.join(TEMPLATES)}"}})
