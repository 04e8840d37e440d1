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
from collections.abc import Callable
from dataclasses import dataclass

LockClass = tuple[str, int]

_OWNERS = threading.Lock()  # guards every semaphore's owners table (a few instructions)
_COUNTS = threading.Lock()  # guards every rw-semaphore's counts (a few instructions)


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
    """Owner tracking and lockdep hooks shared by all lock kinds.

    A file system makes one lock per cached inode, tens of thousands of them: slots,
    and an owners table only while someone holds the lock, keep each small.
    """

    __slots__ = ("name", "_lockdep", "_owners", "_acquisitions", "_contended")

    def __init__(self, name: str, lockdep: Lockdep | None) -> None:
        self.name = name
        self._lockdep = lockdep
        # thread -> classes it holds this as; None while nobody does
        self._owners: dict[int, list[LockClass]] | None = None
        self._acquisitions = 0
        self._contended = 0

    def _before(self, subclass: int) -> LockClass:
        cls = (self.name, subclass)
        if self._lockdep is not None:
            self._lockdep.will_acquire(cls)
        return cls

    # The owners table and counts change under a lock the caller holds: an
    # rw-semaphore's ``_COUNTS``, a semaphore's ``_OWNERS``. One lock per acquire, not
    # two. (A mutex keeps its one owner itself, below.)

    def _own(self, cls: LockClass, contended: bool) -> None:
        """Record the calling thread as a holder."""
        if self._owners is None:
            self._owners = {}
        self._owners.setdefault(threading.get_ident(), []).append(cls)
        self._acquisitions += 1
        self._contended += contended

    def _disown(self) -> LockClass:
        """Remove the calling thread's newest hold; LockError if it has none."""
        me = threading.get_ident()
        held = self._owners.get(me) if self._owners is not None else None
        if not held:
            raise LockError(f"{self.name}: released by thread {me}, which does not hold it")
        cls = held.pop()
        if not held:
            del self._owners[me]  # type: ignore[union-attr]
            if not self._owners:
                self._owners = None
        return cls

    def _acquired(self, cls: LockClass) -> None:
        if self._lockdep is not None:
            self._lockdep.acquired(cls)

    def _released(self, cls: LockClass) -> None:
        if self._lockdep is not None:
            self._lockdep.released(cls)

    def held_by_me(self) -> bool:
        owners = self._owners
        return owners is not None and threading.get_ident() in owners

    def statistics(self) -> LockStatistics:
        return LockStatistics(self.name, tuple(self._owners or ()), self._acquisitions,
                              self._contended)


class Mutex(_Tracked):
    """A sleeping lock with one owner (the kernel's ``struct mutex``).

    One owner at most, so the owner is a thread ident (0: free) rather than the
    owners table the shared kinds keep: every operation takes several mutexes, and
    this makes a pair cheaper (0.8 µs against 1.3). Only the holder writes
    ``_holder``; another thread reading it mid-change can only see a value that is
    not its own ident.
    """

    __slots__ = ("_lock", "_holder", "_subclass")

    def __init__(self, name: str = "mutex", lockdep: Lockdep | None = None) -> None:
        super().__init__(name, lockdep)
        self._lock = threading.Lock()
        self._holder = 0
        self._subclass = 0

    def acquire(self, subclass: int = 0) -> None:
        me = threading.get_ident()
        if self._holder == me:
            raise LockError(f"{self.name}: taken again by its owner (self-deadlock)")
        if self._lockdep is not None:
            self._lockdep.will_acquire((self.name, subclass))
        if not self._lock.acquire(blocking=False):
            self._lock.acquire()
            self._contended += 1
        self._holder, self._subclass = me, subclass
        self._acquisitions += 1
        if self._lockdep is not None:
            self._lockdep.acquired((self.name, subclass))

    def try_acquire(self, subclass: int = 0) -> bool:
        if not self._lock.acquire(blocking=False):
            return False
        self._holder, self._subclass = threading.get_ident(), subclass
        self._acquisitions += 1
        if self._lockdep is not None:
            self._lockdep.acquired((self.name, subclass))
        return True

    def release(self) -> None:
        me = threading.get_ident()
        if self._holder != me:
            raise LockError(f"{self.name}: released by thread {me}, which does not hold it")
        self._holder = 0
        subclass = self._subclass
        self._lock.release()
        if self._lockdep is not None:
            self._lockdep.released((self.name, subclass))

    def locked(self) -> bool:
        return self._lock.locked()

    def held_by_me(self) -> bool:
        return self._holder == threading.get_ident()

    def statistics(self) -> LockStatistics:
        holder = self._holder
        return LockStatistics(self.name, (holder,) if holder else (), self._acquisitions,
                              self._contended)

    def __enter__(self) -> Mutex:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Semaphore(_Tracked):
    """A counting semaphore; ``owners`` lists the threads currently inside it."""

    __slots__ = ("_sem",)

    def __init__(self, value: int, name: str = "semaphore", lockdep: Lockdep | None = None) -> None:
        super().__init__(name, lockdep)
        self._sem = threading.Semaphore(value)

    def acquire(self, subclass: int = 0) -> None:
        cls = self._before(subclass)
        contended = not self._sem.acquire(blocking=False)
        if contended:
            self._sem.acquire()
        with _OWNERS:  # several threads hold it at once
            self._own(cls, contended)
        self._acquired(cls)

    def release(self) -> None:
        with _OWNERS:
            cls = self._disown()
        self._sem.release()
        self._released(cls)

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RWSemaphore(_Tracked):
    """Many readers or one writer (the kernel's ``rw_semaphore``).

    Writers are not starved: once a writer waits, new readers queue behind it. That is
    what lets a live upgrade close its gate while requests keep arriving.

    The counts of every rw-semaphore are guarded by one module-wide mutex, held for a
    few instructions, and a condition to sleep on is made only while someone waits:
    an uncontended semaphore is four small fields, not a Condition (1.5 KiB).
    """

    __slots__ = ("_readers", "_writer", "_writers_waiting", "_cond", "_sleepers")

    def __init__(self, name: str = "rwsem", lockdep: Lockdep | None = None) -> None:
        super().__init__(name, lockdep)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._cond: threading.Condition | None = None  # while anyone sleeps on it
        self._sleepers = 0

    def _sleep_until(self, ready: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait, with ``_COUNTS`` held, until ``ready()``; False if ``timeout`` passed."""
        if ready():
            return True
        if self._cond is None:
            self._cond = threading.Condition(_COUNTS)
        self._sleepers += 1
        try:
            return self._cond.wait_for(ready, timeout)
        finally:
            self._sleepers -= 1
            if not self._sleepers:
                self._cond = None

    def _wake(self) -> None:
        if self._cond is not None:
            self._cond.notify_all()

    def acquire_read(self, subclass: int = 0) -> None:
        if self.held_by_me():
            raise LockError(f"{self.name}: taken again by a thread that holds it")
        cls = self._before(subclass)
        with _COUNTS:
            contended = self._writer or self._writers_waiting > 0
            if contended:
                self._sleep_until(lambda: not (self._writer or self._writers_waiting))
            self._readers += 1
            self._own(cls, contended)
        self._acquired(cls)

    def release_read(self) -> None:
        with _COUNTS:
            cls = self._disown()
            self._readers -= 1
            if self._readers == 0:
                self._wake()
        self._released(cls)

    def acquire_write(self, subclass: int = 0, timeout: float | None = None) -> bool:
        """Take the lock exclusively; with a ``timeout``, give up (False) when it passes."""
        if self.held_by_me():
            raise LockError(f"{self.name}: taken again by a thread that holds it")
        cls = self._before(subclass)
        with _COUNTS:
            contended = self._writer or self._readers > 0
            if contended:
                self._writers_waiting += 1  # holds new readers back
                try:
                    if not self._sleep_until(lambda: not (self._writer or self._readers), timeout):
                        self._wake()  # gave up: readers it held back may go on
                        return False
                finally:
                    self._writers_waiting -= 1
            self._writer = True
            self._own(cls, contended)
        self._acquired(cls)
        return True

    def release_write(self) -> None:
        with _COUNTS:
            cls = self._disown()
            self._writer = False
            self._wake()
        self._released(cls)

    def read(self, subclass: int = 0) -> _Held:
        """``with sem.read():`` — taken here, released when the block ends."""
        self.acquire_read(subclass)
        return _Held(self.release_read)

    def write(self, subclass: int = 0) -> _Held:
        self.acquire_write(subclass)
        return _Held(self.release_write)


class _Held:
    """What ``read()``/``write()`` return: a lock already taken, released on exit
    (a generator-based context manager costs three times as much)."""

    __slots__ = ("_release",)

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self._release()
