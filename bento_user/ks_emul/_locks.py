"""Kernel-style locks with owner tracking, and a lock-order checker (lockdep).

File-system methods run synchronously on several threads (the runtime decides), so a
file system protects shared state with these, as kernel code uses mutexes and
rw-semaphores. Each lock knows who holds it: releasing a lock you do not hold, or
taking a mutex you already hold (a self-deadlock in the kernel), raises ``LockError``
at once instead of hanging.

Lockdep, when enabled, works on lock *classes* (the ``name`` given at creation, plus an
optional nesting ``subclass``) rather than on instances, as the kernel's does: every
"held A while taking B" is recorded as an edge A→B, and taking B while holding A when
the graph already has a path B→…→A raises ``LockOrderError`` — whether or not this run
would actually deadlock. Two inode locks taken in a fixed order (rename) need
different subclasses, exactly as with the kernel's ``mutex_lock_nested``.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

LockClass = tuple[str, int]


class LockError(RuntimeError):
    """A lock was misused: released by a non-owner, or re-taken by its owner."""


class LockOrderError(LockError):
    """Two lock classes were taken in both orders: a possible deadlock."""


@dataclass(frozen=True)
class LockStatistics:
    """Attributes:
    name: the lock's class name.
    owners: thread idents holding it now (readers too, for a rw-semaphore).
    acquisitions: times it was taken.
    contended: times a taker had to wait.
    """

    name: str
    owners: tuple[int, ...]
    acquisitions: int
    contended: int


class Lockdep:
    """Records the order in which lock classes are taken and reports inversions."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._after: dict[LockClass, dict[LockClass, str]] = {}  # A -> {B: where first seen}
        self._held = threading.local()

    def held(self) -> list[LockClass]:
        """Lock classes the calling thread holds, in the order it took them."""
        stack: list[LockClass] | None = getattr(self._held, "stack", None)
        if stack is None:
            stack = self._held.stack = []
        return stack

    def will_acquire(self, cls: LockClass) -> None:
        """Check taking ``cls`` now against every order seen so far, then record it."""
        held = self.held()
        if not held:
            return
        with self._mutex:
            for h in held:
                if h == cls:
                    continue  # same class re-taken: owner checks catch true recursion
                path = self._path(cls, h)
                if path is not None:
                    chain = " -> ".join(_fmt(c) for c in path)
                    first = self._after[path[0]][path[1]]
                    raise LockOrderError(
                        f"lock order inversion: taking {_fmt(cls)} while holding {_fmt(h)}, "
                        f"but {chain} was seen before, first at:\n{first}"
                    )
            where = None
            for h in held:
                edges = self._after.setdefault(h, {})
                if cls not in edges and h != cls:
                    where = where or "".join(traceback.format_stack(limit=8)[:-3])
                    edges[cls] = where

    def acquired(self, cls: LockClass) -> None:
        self.held().append(cls)

    def released(self, cls: LockClass) -> None:
        held = self.held()
        for i in range(len(held) - 1, -1, -1):
            if held[i] == cls:
                del held[i]
                return

    def _path(self, src: LockClass, dst: LockClass) -> list[LockClass] | None:
        """A chain of recorded edges src -> ... -> dst, if there is one."""
        seen = {src}
        stack: list[list[LockClass]] = [[src]]
        while stack:
            path = stack.pop()
            for nxt in self._after.get(path[-1], ()):
                if nxt == dst:
                    return path + [nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(path + [nxt])
        return None


def _fmt(cls: LockClass) -> str:
    name, sub = cls
    return name if sub == 0 else f"{name}/{sub}"


class _Tracked:
    """Owner tracking and lockdep hooks shared by all lock kinds."""

    def __init__(self, name: str, lockdep: Lockdep | None) -> None:
        self.name = name
        self._lockdep = lockdep
        self._owners: dict[int, list[LockClass]] = {}  # thread -> classes it holds this as
        self._acquisitions = 0
        self._contended = 0

    def _before(self, subclass: int) -> LockClass:
        cls = (self.name, subclass)
        if self._lockdep is not None:
            self._lockdep.will_acquire(cls)
        return cls

    def _after(self, cls: LockClass, contended: bool) -> None:
        self._owners.setdefault(threading.get_ident(), []).append(cls)
        self._acquisitions += 1
        self._contended += contended
        if self._lockdep is not None:
            self._lockdep.acquired(cls)

    def _release_owner(self) -> None:
        me = threading.get_ident()
        held = self._owners.get(me)
        if not held:
            raise LockError(f"{self.name}: released by thread {me}, which does not hold it")
        cls = held.pop()
        if not held:
            del self._owners[me]
        if self._lockdep is not None:
            self._lockdep.released(cls)

    def held_by_me(self) -> bool:
        return threading.get_ident() in self._owners

    def statistics(self) -> LockStatistics:
        return LockStatistics(self.name, tuple(self._owners), self._acquisitions,
                              self._contended)


class Mutex(_Tracked):
    """A sleeping lock with one owner (the kernel's ``struct mutex``)."""

    def __init__(self, name: str = "mutex", lockdep: Lockdep | None = None) -> None:
        super().__init__(name, lockdep)
        self._lock = threading.Lock()

    def acquire(self, subclass: int = 0) -> None:
        if threading.get_ident() in self._owners:
            raise LockError(f"{self.name}: taken again by its owner (self-deadlock)")
        cls = self._before(subclass)
        contended = not self._lock.acquire(blocking=False)
        if contended:
            self._lock.acquire()
        self._after(cls, contended)

    def try_acquire(self, subclass: int = 0) -> bool:
        if not self._lock.acquire(blocking=False):
            return False
        self._after((self.name, subclass), False)
        return True

    def release(self) -> None:
        self._release_owner()
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> Mutex:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Semaphore(_Tracked):
    """A counting semaphore; ``owners`` lists the threads currently inside it."""

    def __init__(self, value: int, name: str = "semaphore", lockdep: Lockdep | None = None) -> None:
        super().__init__(name, lockdep)
        self._sem = threading.Semaphore(value)

    def acquire(self, subclass: int = 0) -> None:
        cls = self._before(subclass)
        contended = not self._sem.acquire(blocking=False)
        if contended:
            self._sem.acquire()
        self._after(cls, contended)

    def release(self) -> None:
        self._release_owner()
        self._sem.release()

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RWSemaphore(_Tracked):
    """Many readers or one writer (the kernel's ``rw_semaphore``).

    Writers are not starved: once a writer waits, new readers queue behind it. That is
    what lets a live upgrade close its gate while requests keep arriving.
    """

    def __init__(self, name: str = "rwsem", lockdep: Lockdep | None = None) -> None:
        super().__init__(name, lockdep)
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def acquire_read(self, subclass: int = 0) -> None:
        if threading.get_ident() in self._owners:
            raise LockError(f"{self.name}: taken again by a thread that holds it")
        cls = self._before(subclass)
        with self._cond:
            contended = self._writer or self._writers_waiting > 0
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        self._after(cls, contended)

    def release_read(self) -> None:
        self._release_owner()
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self, subclass: int = 0, timeout: float | None = None) -> bool:
        """Take the lock exclusively; with a ``timeout``, give up (False) when it passes."""
        if threading.get_ident() in self._owners:
            raise LockError(f"{self.name}: taken again by a thread that holds it")
        cls = self._before(subclass)
        with self._cond:
            contended = self._writer or self._readers > 0
            self._writers_waiting += 1
            try:
                ok = self._cond.wait_for(lambda: not (self._writer or self._readers), timeout)
                if not ok:
                    return False
                self._writer = True
            finally:
                self._writers_waiting -= 1
                if not self._writer:
                    self._cond.notify_all()
        self._after(cls, contended)
        return True

    def release_write(self) -> None:
        self._release_owner()
        with self._cond:
            self._writer = False
            self._cond.notify_all()

    @contextmanager
    def read(self, subclass: int = 0) -> Iterator[None]:
        self.acquire_read(subclass)
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self, subclass: int = 0) -> Iterator[None]:
        self.acquire_write(subclass)
        try:
            yield
        finally:
            self.release_write()
