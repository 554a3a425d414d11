"""The audit log's request-scoped half: the entry an audited request will leave, held in a
context variable while the request runs (issue 12, API.md "Administration and data").

Who opens an entry: ``core.web.route``, for every ``auth=Auth.ADMIN`` route, every request
whose body names ``on_behalf_of`` (a proxy act) and every route declared ``personal_data=True``
— no route writes its own. Who writes it: the first ``TransactWriteItems`` the request commits
carries the entry as one more put (``adapters.dynamo.TransactWrite``), so the entry and the
change commit or fail together; a request that commits none (a read, a view, a plain
single-item write) gets the entry written alone after its successful response. A refused
request (any 4xx) leaves no entry: the transaction that would have carried it never committed,
and the lone write is skipped.

The entry id is derived from (actor, method, path, Idempotency-Key) when the request carries
one, so a retried request overwrites its own entry instead of adding a second; without a key
each request is its own entry. Entries hold ids, an action name, the reason the admin typed
and a few non-personal details (filters, outcome, proxy member id) — never names or phones.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

MAX_REASON = 200
# Query/body fields that may be copied into details: filters and choices, never personal data.
DETAIL_KEYS = ("status", "from", "to", "format", "outcome", "actor", "action", "dry_run", "month", "minutes")


@dataclass
class AuditEntry:
    id: str
    at: datetime
    actor_id: str
    action: str
    target: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None      # the resident or household the entry is about (they may read it)
    written: bool = False


class AuditLog(Protocol):
    """Where entries are kept (``adapters.audit.DynamoAuditLog``)."""

    def write(self, entry: AuditEntry) -> None: ...


_pending: contextvars.ContextVar[AuditEntry | None] = contextvars.ContextVar("timebank_audit", default=None)


def begin(entry: AuditEntry) -> contextvars.Token:
    return _pending.set(entry)


def end(token: contextvars.Token) -> None:
    _pending.reset(token)


def pending() -> AuditEntry | None:
    """The request's entry while nothing has written it yet (what a transaction should carry)."""
    entry = _pending.get()
    return entry if entry is not None and not entry.written else None


def current() -> AuditEntry | None:
    return _pending.get()


def about(subject: str | None = None, **details: Any) -> None:
    """A route or use case naming whom the entry concerns or adding a detail (ids only).
    Outside an audited request it does nothing."""
    entry = _pending.get()
    if entry is None:
        return
    if subject:
        entry.subject = subject
    entry.details.update(details)


def subject_of(values: dict[str, Any]) -> str | None:
    """The first resident or household id among path parameters / a proxy's member."""
    for value in values.values():
        if isinstance(value, str) and value.startswith(("res_", "hh_")):
            return value
    return None


def clip_reason(value: Any) -> str:
    return value[:MAX_REASON] if isinstance(value, str) else ""


def details_of(values: dict[str, Any]) -> dict[str, Any]:
    """The filters and choices of a request worth keeping (``DETAIL_KEYS``), as plain values."""
    out: dict[str, Any] = {}
    for key in DETAIL_KEYS:
        value = values.get(key)
        if isinstance(value, (date, datetime)):
            value = value.isoformat()
        if isinstance(value, bool) or isinstance(value, int) or (isinstance(value, str) and len(value) <= 40):
            out[key] = value
    return out
