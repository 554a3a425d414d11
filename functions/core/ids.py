"""Identifiers.

New things get sortable random ids; things created under an ``Idempotency-Key`` get ids
derived from (scope, caller, key) so that a replay lands on the same item and the storage
condition ``attribute_not_exists`` makes it apply once, forever.
"""
from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _b32(data: bytes, length: int) -> str:
    number = int.from_bytes(data, "big")
    out = []
    for _ in range(length):
        number, rem = divmod(number, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """Time-ordered random id, e.g. ``res_01jx...``."""
    millis = int(time.time() * 1000).to_bytes(6, "big")
    return f"{prefix}_{_b32(millis, 10)}{_b32(os.urandom(10), 16)}"


def derived_id(prefix: str, *parts: str) -> str:
    """Deterministic id for idempotent creation."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return f"{prefix}_{_b32(digest[:16], 26)}"


def content_hash(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]
