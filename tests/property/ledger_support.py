"""Helpers shared by the ledger tests: foreign writes, crash hooks, a barrier hook."""
from __future__ import annotations

import threading

from functions.ledger.model import CommitHooks, Plan, SimulatedCrash


class FakeForeignWrite:
    """A write of another domain joining the ledger transaction (in-memory store only)."""

    def __init__(self, holds: bool = True):
        self.holds = holds
        self.applied = 0

    def holds_in_memory(self) -> bool:
        return self.holds

    def apply_in_memory(self) -> None:
        self.applied += 1


class CrashOnce(CommitHooks):
    """Simulate the process dying just before the commit, or just after it (committed, but the
    caller only sees an exception)."""

    def __init__(self, when: str):
        assert when in ("before", "after")
        self.when = when
        self.armed = True

    def before_commit(self, plan: Plan) -> None:
        if self.when == "before" and self.armed:
            self.armed = False
            raise SimulatedCrash("crash before commit")

    def after_commit(self, plan: Plan) -> None:
        if self.when == "after" and self.armed:
            self.armed = False
            raise SimulatedCrash("crash after commit")


class BarrierHooks(CommitHooks):
    """Every thread must have planned (read whatever it reads) before any of them commits."""

    def __init__(self, parties: int):
        self.barrier = threading.Barrier(parties, timeout=30)

    def before_commit(self, plan: Plan) -> None:
        self.barrier.wait()
