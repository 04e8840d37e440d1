"""Time, as a file system asks the kernel for it.

A file system stamps inodes with ``ks.clock.now_ns()``; tests and trace replay hand it
a ``ManualClock`` so timestamps are reproducible.
"""

from __future__ import annotations

import time


class Clock:
    """Wall-clock time in nanoseconds (what ``current_time()`` gives a kernel FS)."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        """For measuring intervals; never goes backwards."""
        return time.monotonic_ns()


class ManualClock(Clock):
    """A clock that moves only when told to."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def monotonic_ns(self) -> int:
        return self._now

    def advance(self, ns: int) -> None:
        self._now += ns
