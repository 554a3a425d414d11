"""Signed calls between the stacks of a district (通存通兑): HMAC-SHA256 over what a request is.

A community and the district hub share one key per community (in Secrets Manager on each side).
Every call between them carries::

    X-Timebank-Sender     who signs ("hub", or the community id)
    X-Timebank-Timestamp  Unix seconds when it was signed
    X-Timebank-Nonce      random, once per request
    X-Timebank-Signature  hex HMAC-SHA256(key, canonical string)

The canonical string names the method, the path, the timestamp, the nonce, the sender, the
recipient and the SHA-256 of the body, so a signature is good for exactly one request to one
recipient: another body, path, or a reflection of a community's call back to it (sender and
recipient swap) does not verify. The verifier accepts a timestamp within ``window`` seconds of
its clock and each (sender, nonce) once (``adapters.signed_calls`` keeps the nonces), so a
captured request cannot be replayed. During a key rotation several key versions are accepted
(see ``infra/README.md``, "District hub").

Plain Python: no AWS here, so the domains and the in-memory tests use the same rules.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Iterable, Mapping

from functions.core.errors import Unauthenticated

VERSION = "TB1"
HUB = "hub"   # the sender/recipient id of the district hub
SENDER = "X-Timebank-Sender"
TIMESTAMP = "X-Timebank-Timestamp"
NONCE = "X-Timebank-Nonce"
SIGNATURE = "X-Timebank-Signature"
MAX_NONCE = 64


class SignatureRefused(Unauthenticated):
    """401: a call between stacks that is not signed by whom it claims, stale, or replayed."""
    code = "BAD_SIGNATURE"
    default_message = "签名无效"


class SignatureExpired(SignatureRefused):
    code = "SIGNATURE_EXPIRED"
    default_message = "签名已过期"


class Replayed(SignatureRefused):
    code = "REPLAYED"
    default_message = "重复的请求"


class UnknownSender(SignatureRefused):
    code = "UNKNOWN_SENDER"
    default_message = "未知的调用方"


SIGNATURE_ERRORS = (SignatureRefused, SignatureExpired, Replayed, UnknownSender)


def canonical(method: str, path: str, timestamp: str, nonce: str, sender: str, recipient: str,
              body: bytes) -> bytes:
    return "\n".join([VERSION, method.upper(), path, timestamp, nonce, sender, recipient,
                      hashlib.sha256(body).hexdigest()]).encode()


def signature(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(key: bytes, *, method: str, path: str, body: bytes, sender: str, recipient: str,
         now: int, nonce: str | None = None) -> dict[str, str]:
    """The headers of one signed request."""
    nonce = nonce or os.urandom(16).hex()
    stamp = str(int(now))
    return {SENDER: sender, TIMESTAMP: stamp, NONCE: nonce,
            SIGNATURE: signature(key, canonical(method, path, stamp, nonce, sender, recipient, body))}


@dataclass(frozen=True)
class SignedRequest:
    sender: str
    timestamp: int
    nonce: str
    given: str


def parse(headers: Mapping[str, str]) -> SignedRequest:
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        sender, stamp = lowered[SENDER.lower()], lowered[TIMESTAMP.lower()]
        nonce, given = lowered[NONCE.lower()], lowered[SIGNATURE.lower()]
    except KeyError:
        raise SignatureRefused("缺少签名") from None
    if not (0 < len(sender) <= 40 and stamp.isdigit() and len(stamp) <= 12
            and 0 < len(nonce) <= MAX_NONCE and nonce.isalnum() and len(given) == 64):
        raise SignatureRefused()
    return SignedRequest(sender, int(stamp), nonce, given)


def check(request: SignedRequest, keys: Iterable[bytes], *, method: str, path: str, body: bytes,
          recipient: str, now: int, window: int) -> None:
    """Raise unless one of ``keys`` signed this request within ``window`` seconds of ``now``
    (the nonce's single use is the caller's to record)."""
    if abs(now - request.timestamp) > window:
        raise SignatureExpired()
    message = canonical(method, path, str(request.timestamp), request.nonce, request.sender, recipient, body)
    if not any(hmac.compare_digest(signature(key, message), request.given) for key in keys):
        raise SignatureRefused()


def keyed_phone_hash(key: bytes, phone: str) -> str:
    """The same person across the communities of a district, without the phone: HMAC-SHA256
    under the district-wide key (a plain hash of an 11-digit number is reversed by trying
    them all). Every community computes it the same way, so equal phones give equal hashes."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return hmac.new(key, f"timebank-phone\x1f{digits}".encode(), hashlib.sha256).hexdigest()
