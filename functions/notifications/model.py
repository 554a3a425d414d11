"""Notifications as plain values and rules: the logical message templates and their WeChat
configuration, consents, deliveries and what a send can come back with.

Logical message templates and their WeChat subscribe-message configuration.

Domain code speaks of logical templates (``match``, ``reminder``) with logical fields
(``title``, ``start_at`` …). Which WeChat template a community uses, and which keyword
(``thing1``, ``time2`` …) each logical field fills, is chosen in the WeChat console when the
template is picked, so it is configuration: ``TIMEBANK_WECHAT_TEMPLATES`` maps each logical
name to either a template id (keywords default to ``DEFAULT_FIELDS``) or
``{"id": "<template id>", "fields": {"title": "thing2", ...}}``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

MATCH = "match"
REMINDER = "reminder"
TEMPLATES: tuple[str, ...] = (MATCH, REMINDER)

# Logical field → WeChat keyword, as in the templates suggested to communities.
DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    MATCH: {"category": "thing1", "title": "thing2", "start_at": "time3", "note": "thing4"},
    REMINDER: {"title": "thing1", "start_at": "time2", "note": "thing3"},
}

# WeChat's value limits per keyword kind (characters); longer values are refused with 47003.
_KEYWORD_LIMITS = {"thing": 20, "name": 10, "phrase": 5, "character_string": 32, "number": 32,
                   "letter": 32, "symbol": 5, "time": 40, "date": 40, "amount": 16, "phone_number": 17,
                   "car_number": 8}


@dataclass(frozen=True)
class TemplateConfig:
    logical: str
    template_id: str
    fields: Mapping[str, str]


class TemplateRegistry:
    def __init__(self, configured: Mapping[str, Any], local_defaults: bool):
        self._templates: dict[str, TemplateConfig] = {}
        for logical in TEMPLATES:
            raw = configured.get(logical)
            if raw is None:
                if not local_defaults:
                    continue  # not configured: the notifier reports it as a permanent failure
                raw = f"local-{logical}"
            self._templates[logical] = _parse(logical, raw)
        unknown = set(configured) - set(TEMPLATES)
        if unknown:
            raise ValueError(f"unknown notification templates configured: {sorted(unknown)}")

    def get(self, logical: str) -> TemplateConfig | None:
        return self._templates.get(logical)

    def all(self) -> list[TemplateConfig]:
        return [self._templates[name] for name in TEMPLATES if name in self._templates]


def _parse(logical: str, raw: Any) -> TemplateConfig:
    if isinstance(raw, str) and raw:
        return TemplateConfig(logical, raw, dict(DEFAULT_FIELDS[logical]))
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        fields = raw.get("fields", DEFAULT_FIELDS[logical])
        if not isinstance(fields, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in fields.items()):
            raise ValueError(f"template {logical}: fields must map names to WeChat keywords")
        return TemplateConfig(logical, raw["id"], dict(fields))
    raise ValueError(f"template {logical}: expected a template id or {{\"id\", \"fields\"}}")


def wechat_data(config: TemplateConfig, data: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The ``data`` object of subscribeMessage.send: configured keywords, values cut to WeChat's limits."""
    out: dict[str, dict[str, str]] = {}
    for name, keyword in config.fields.items():
        value = data.get(name)
        if value is None:
            continue
        out[keyword] = {"value": _fit(keyword, str(value))}
    return out


def _fit(keyword: str, value: str) -> str:
    kind = keyword.rstrip("0123456789")
    limit = _KEYWORD_LIMITS.get(kind)
    if limit is None or len(value) <= limit:
        return value
    return value[: limit - 1] + "…"


# --- sending -------------------------------------------------------------------------------------

class SendStatus(enum.Enum):
    SENT = "sent"        # handed to WeChat (or written to the local outbox)
    REFUSED = "refused"  # the user refused, or their one-time consent is used up (43101): never retry
    FAILED = "failed"    # permanent: bad data, bad template, unknown recipient — retrying cannot help
    RETRY = "retry"      # transient: WeChat busy, network, token trouble — try again later


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    errcode: int | None = None
    message_id: str | None = None


# Delivery statuses as stored. A claim is written ``claimed`` and stays so when the message
# went out (a second write per message only to say "sent" was a third of a notification's
# cost); the other outcomes overwrite it. ``sending`` / ``sent``: claims written before.
CLAIMED, SENDING, SENT, SKIPPED, REFUSED, FAILED = "claimed", "sending", "sent", "skipped", "refused", "failed"
UNFINISHED = (CLAIMED, SENDING)


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
    status: str = CLAIMED
    errcode: int | None = None
