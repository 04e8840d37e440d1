"""Undo for one operation: the blocks it changed, as they were before it.

jbd2 never undoes: in the kernel an operation that fails half-way is a bug, and the
file system goes read-only. Here the runtime can do better (runtime/guard.py): while
an operation runs (``begin``), the first ``get_write_access`` of each block saves the
block's contents and each ``revoke`` notes its block; with ``data``, so does the
first ``bread``/``getblk`` of every block (a truncate zeroes the tail of a data block
in place, outside the journal). If the operation then raises, ``restore`` writes the
saved journaled blocks back through a handle of its own and logs each revoked block
again (which cancels the revoke), and puts other saved blocks that changed back in
the cache: every block is as it was before the call. What memory derived from
those blocks is the file system's to drop: the runtime reloads it.

A ``write`` runs without ``data`` (saving each block it overwrites would cost what
the write does): a failed write may leave part of its data, as POSIX allows. Data
written around the cache is never saved. One log per thread; ``active`` counts the
logs with ``data`` open in any thread, so the cache's hot path tests one global.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ._buffer_head import BufferHead

if TYPE_CHECKING:
    from ._journal import Journal

_local = threading.local()
active = 0  # open logs that save data blocks too, in all threads


@dataclass
class UndoLog:
    """One operation's blocks: contents before its first touch, which of them it
    journaled, and the blocks it revoked."""

    data: bool = False
    images: dict[int, np.ndarray] = field(default_factory=dict)
    journaled: set[int] = field(default_factory=set)
    revoked: set[int] = field(default_factory=set)

    def saw(self, bh: BufferHead) -> BufferHead:
        if bh.blockno not in self.images:
            self.images[bh.blockno] = bh.data.copy()
        return bh

    def before_change(self, bh: BufferHead) -> None:
        self.saw(bh)
        self.journaled.add(bh.blockno)

    def __len__(self) -> int:
        return len(self.images.keys() | self.revoked)  # journaled blocks are in images


def begin(data: bool) -> None:
    """Open this thread's log (made at its first use: most calls change nothing)."""
    global active
    end()
    _local.scope = data
    active += data


def end() -> UndoLog | None:
    global active
    scope: bool | None = getattr(_local, "scope", None)
    if scope is None:
        return None
    active -= scope
    log: UndoLog | None = _local.log if hasattr(_local, "log") else None
    _local.scope = _local.log = None
    return log


def current() -> UndoLog | None:
    """This thread's log while a scope is open (made now if need be), else None."""
    scope: bool | None = getattr(_local, "scope", None)
    if scope is None:
        return None
    log: UndoLog | None = getattr(_local, "log", None)
    if log is None:
        log = _local.log = UndoLog(scope)
    return log


def saving_data() -> bool:
    return bool(getattr(_local, "scope", None))


def saw_data(bh: BufferHead) -> BufferHead:
    """The cache's hook while ``active``: save ``bh`` if this thread's log asks."""
    if not saving_data():
        return bh
    log = current()
    assert log is not None
    return log.saw(bh)


def restore(journal: Journal, log: UndoLog) -> int:
    """Put ``log``'s blocks back as they were; the number of blocks put back. The
    caller holds no handle (the failed operation's are stopped) and has ended the
    log."""
    logged = sorted(log.journaled | log.revoked)
    step = max(1, journal.max_transaction - 1)
    for i in range(0, len(logged), step):
        chunk = logged[i:i + step]
        with journal.start(len(chunk)) as h:
            for b in chunk:
                with journal.cache.bread(b) as bh:
                    h.get_write_access(bh)
                    if b in log.images:
                        bh.data[:] = log.images[b]
                    h.dirty_metadata(bh)
    changed = 0
    for b, image in log.images.items():
        if b in log.journaled:
            continue
        with journal.cache.bread(b) as bh:
            if not np.array_equal(bh.data, image):
                bh.data[:] = image
                bh.mark_dirty()
                changed += 1
    return len(logged) + changed
