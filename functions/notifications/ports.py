"""What the notification use cases need from outside: consent and delivery stores, the channel
messages go out through (WeChat, or the local outbox), the services to remind of and whom to
reach."""
from __future__ import annotations

from datetime import datetime
from typing import Iterable, Mapping, Protocol

from functions.notifications.model import Consent, Delivery, SendResult
from functions.requests.model import ServiceRequest


class Notifier(Protocol):
    def send(self, openid: str, template: str, data: Mapping[str, str], page: str | None = None) -> SendResult:
        """Send one message of logical ``template`` with logical ``data`` fields; never raises for
        an answer of the remote service (only programming errors escape)."""


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


class UpcomingServices(Protocol):
    def starting_between(self, start: datetime, end: datetime) -> Iterable[ServiceRequest]: ...


class Contacts(Protocol):
    def openid_of(self, resident_id: str, household_id: str | None) -> str | None: ...
