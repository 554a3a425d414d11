"""The port every message goes out through, and what a send can come back with."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping, Protocol


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


class Notifier(Protocol):
    def send(self, openid: str, template: str, data: Mapping[str, str], page: str | None = None) -> SendResult:
        """Send one message of logical ``template`` with logical ``data`` fields; never raises for
        an answer of the remote service (only programming errors escape)."""
