"""The one place where runtime calls reach a file system.

Both runtimes (FUSE and direct) call the file system through a ``Dispatcher``: it
counts and times every operation (``bento stat`` reads these), and it is where a
live upgrade will swap the instance. Errors pass through unchanged: what to do with
a non-``FsError`` exception is each runtime's policy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..api import Filesystem


@dataclass
class OpStatistics:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    samples: list[float] = field(default_factory=list)  # latencies, a bounded reservoir

    RESERVOIR = 4096


class Dispatcher:
    """Calls ``fs``'s operations by name, keeping per-operation statistics."""

    def __init__(self, fs: Filesystem) -> None:
        self.fs = fs
        self.stats: dict[str, OpStatistics] = {}
        self._lock = threading.Lock()

    def call(self, op: str, *args: Any) -> Any:
        method: Callable[..., Any] = getattr(self.fs, op)
        start = time.perf_counter()
        failed = True
        try:
            result = method(*args)
            failed = False
            return result
        finally:
            self._record(op, time.perf_counter() - start, failed)

    def _record(self, op: str, seconds: float, failed: bool) -> None:
        with self._lock:
            s = self.stats.get(op)
            if s is None:
                s = self.stats[op] = OpStatistics()
            s.calls += 1
            s.errors += failed
            s.seconds += seconds
            if len(s.samples) < OpStatistics.RESERVOIR:
                s.samples.append(seconds)
            else:
                s.samples[s.calls % OpStatistics.RESERVOIR] = seconds
