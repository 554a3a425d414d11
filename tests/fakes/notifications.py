"""In-memory consent and delivery stores with the conditional semantics of the DynamoDB ones
(for domain tests; one process)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Iterable

from functions.notifications.model import UNFINISHED, Consent, Delivery


class InMemoryConsentStore:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Consent] = {}

    def _get(self, openid: str, template: str) -> Consent:
        return self.items.get((openid, template)) or Consent(template=template)

    def grant(self, openid: str, template: str, at: datetime) -> Consent:
        current = self._get(openid, template)
        self.items[(openid, template)] = updated = replace(
            current, available=current.available + 1, accepted_total=current.accepted_total + 1, updated_at=at)
        return updated

    def refuse(self, openid: str, template: str, at: datetime) -> Consent:
        current = self._get(openid, template)
        self.items[(openid, template)] = updated = replace(
            current, refused_total=current.refused_total + 1, updated_at=at)
        return updated

    def consume(self, openid: str, template: str, at: datetime) -> bool:
        current = self._get(openid, template)
        if current.available <= 0:
            return False
        self.items[(openid, template)] = replace(current, available=current.available - 1, updated_at=at)
        return True

    def give_back(self, openid: str, template: str) -> None:
        current = self._get(openid, template)
        self.items[(openid, template)] = replace(current, available=current.available + 1)

    def exhaust(self, openid: str, template: str, at: datetime) -> None:
        self.items[(openid, template)] = replace(self._get(openid, template), available=0, updated_at=at)

    def of(self, openid: str) -> dict[str, Consent]:
        return {template: consent for (owner, template), consent in self.items.items() if owner == openid}


class InMemoryDeliveryStore:
    def __init__(self) -> None:
        self.items: dict[str, Delivery] = {}

    def claim(self, delivery: Delivery) -> bool:
        if delivery.key in self.items:
            return False
        self.items[delivery.key] = delivery
        return True

    def finish(self, key: str, status: str, errcode: int | None, at: datetime) -> None:
        self.items[key] = replace(self.items[key], status=status, errcode=errcode)

    def release(self, key: str) -> None:
        if key in self.items and self.items[key].status in UNFINISHED:
            del self.items[key]

    def claimed(self, keys: Iterable[str]) -> set[str]:
        return {key for key in keys if key in self.items}
