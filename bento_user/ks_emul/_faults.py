"""Failures on purpose: a kernel-services call that raises, for the fuzzers.

``bento fuzz ops`` asks what happens when a file system's operation fails half-way
— a bug of its own, a corrupt block — at any point: ``FAULTS.arm(n)`` makes the n-th
kernel-services call of the arming thread raise ``InjectedFault`` (the calls: a
buffer read or get, a journal handle started, a block declared for change or
changed, a revoke, an ordered data block). It fires once, then is disarmed. A
disarmed plan costs each of those calls one attribute test.
"""

from __future__ import annotations

import threading


class InjectedFault(Exception):
    """Raised by an armed ``FaultPlan``: to the file system, an unexpected error."""


class FaultPlan:
    def __init__(self) -> None:
        self.countdown = 0
        self.fired: str | None = None  # where the last armed fault fired
        self.op = ""  # the operation being called (the runtime's dispatcher sets it)
        self._ops: frozenset[str] = frozenset()
        self._thread = 0

    def arm(self, n: int, ops: frozenset[str] = frozenset()) -> None:
        """Fail the n-th call from now, counting only inside operations ``ops`` (by
        API name; all if empty): a fault meant for an unlink must not fire in the
        forget that follows it."""
        self.fired, self._thread, self._ops, self.countdown = None, threading.get_ident(), ops, n

    def disarm(self) -> None:
        self.countdown = 0

    def point(self, where: str) -> None:
        """A candidate point: the armed thread's n-th raises."""
        if threading.get_ident() != self._thread or self._ops and self.op not in self._ops:
            return
        self.countdown -= 1
        if self.countdown == 0:
            self.fired = where
            raise InjectedFault(f"injected at {where}")


FAULTS = FaultPlan()
