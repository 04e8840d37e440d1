"""The one place where runtime calls reach a file system.

Both runtimes (FUSE and direct) call the file system through a ``Dispatcher``: it
counts and times every operation (``bento stat`` reads these), and every call passes
its upgrade gate, which a live upgrade closes to swap the instance (upgrade.py). For
a file system that overrides ``evict`` it also counts the kernel's references to
inodes (references.py).
Errors pass through unchanged: what to do with a non-``FsError`` exception is each
runtime's policy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..api import Filesystem
from ..ks_emul import FAULTS
from .references import COUNTED, References, wanted


@dataclass
class OpStatistics:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    samples: list[float] = field(default_factory=list)  # latencies, a bounded reservoir

    RESERVOIR = 4096


class Gate:
    """Every call passes through; an upgrade closes it.

    Calls hold it shared (``enter``/``leave``), ``close`` waits until none is inside
    and holds new ones at the door — a reader-writer lock whose writer goes first.
    """

    def __init__(self) -> None:
        # Calls take the plain lock, a C-level ``with`` (the gate costs a call 0.7 µs,
        # 1.1 µs through the Condition's Python methods); waits go through the
        # Condition built on that same lock.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._inside = 0
        self._closed = False

    def enter(self) -> None:
        with self._lock:
            while self._closed:
                self._cond.wait()
            self._inside += 1

    def leave(self) -> None:
        with self._lock:
            self._inside -= 1
            if self._closed and not self._inside:
                self._cond.notify_all()

    def close(self, timeout: float) -> bool:
        """Stop new calls and wait for those inside; False (and open again) if they
        do not all leave within ``timeout`` seconds."""
        with self._cond:
            self._closed = True
            if self._cond.wait_for(lambda: not self._inside, timeout):
                return True
            self._closed = False
            self._cond.notify_all()
            return False

    def open(self) -> None:
        with self._cond:
            self._closed = False
            self._cond.notify_all()


# A trace hook: (op, args, result, error, start, seconds), see runtime/trace.py.
TraceHook = Callable[[str, tuple[Any, ...], Any, BaseException | None, float, float], None]


class Dispatcher:
    """Calls ``fs``'s operations by name, keeping per-operation statistics."""

    def __init__(self, fs: Filesystem) -> None:
        self.fs = fs
        # counted from the mount on, for the class mounted first (references.py)
        self.references = References() if wanted(type(fs)) else None
        self.stats: dict[str, OpStatistics] = {}
        self.trace: TraceHook | None = None
        self.gate = Gate()
        self._lock = threading.Lock()
        self._serial = threading.RLock()  # for a file system that asks one call at a time

    def call(self, op: str, *args: Any) -> Any:
        if FAULTS.countdown:  # a fuzzer's fault may be meant for this operation
            FAULTS.op = op
        self.gate.enter()
        try:
            if self.fs.serial:
                with self._serial:
                    return self._counted(op, args)
            return self._counted(op, args)
        finally:
            self.gate.leave()

    def _counted(self, op: str, args: tuple[Any, ...]) -> Any:
        """The call, then, for a file system that asks (references.py), its effect on
        the kernel's references and the evictions it brings."""
        result = self._call(op, args)
        if self.references is not None and op in COUNTED:
            for ino in self.references.after(op, args, result):
                self._call("evict", (ino,))
        return result

    def _call(self, op: str, args: tuple[Any, ...]) -> Any:
        if self.trace is not None:
            return self._call_traced(op, args)
        method: Callable[..., Any] = getattr(self.fs, op)
        start = time.perf_counter()
        failed = True
        try:
            result = method(*args)
            failed = False
            return result
        finally:
            self._record(op, time.perf_counter() - start, failed)

    def _call_traced(self, op: str, args: tuple[Any, ...]) -> Any:
        assert self.trace is not None
        start = time.perf_counter()
        result: Any = None
        error: BaseException | None = None
        try:
            result = getattr(self.fs, op)(*args)
            if op == "readdir":
                result = list(result)  # the trace reads it; and so must the caller
            return result
        except BaseException as e:
            error = e
            raise
        finally:
            seconds = time.perf_counter() - start
            self._record(op, seconds, error is not None)
            self.trace(op, args, result, error, start, seconds)

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
