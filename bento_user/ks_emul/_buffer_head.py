"""The buffer head: one cached disk block, as a file system holds it.

Lifecycle (cf. xv6's ``struct buf`` and Linux's ``struct buffer_head``):

1. ``cache.bread(n)`` or ``cache.getblk(n)`` returns the head with a *reference* taken
   (``refcount`` ≥ 1). While referenced it stays in the cache and ``data`` — a writable
   NumPy uint8 view of its arena slot — stays valid.
2. The holder reads or changes ``data``. A change to plain data is followed by
   ``mark_dirty()``; a change to metadata goes through a journal handle instead
   (``get_write_access`` before, ``dirty_metadata`` after), which *pins* the buffer:
   it cannot reach its home location before its transaction commits.
3. ``brelse`` (or leaving the ``with`` block) drops the reference. The block stays
   cached until evicted; only clean, unreferenced, unpinned buffers are evicted, and
   eviction sets ``data`` to None so a stale holder fails loudly instead of scribbling
   on another block's memory.

Dirty buffers reach the disk by write-back (``cache.writeback``/``cache.sync``), by the
background writer, by the journal's checkpoint, or when an allocation needs room.

Fields are guarded by the cache's lock and change only through the cache's methods,
which keep each buffer in the one set of the cache its state calls for (``jtrans``
through ``cache.pin``/``unpin``); except ``data`` (the holder's, under whatever lock
the file system uses for that block, e.g. ``bh.lock``) and ``jcheckpoint`` (the
journal's lock).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ._locks import Mutex

if TYPE_CHECKING:
    from ._buffer_cache import BufferCache


class BufferHead:
    """One cached block. See the module docstring for the rules of use.

    Attributes:
        blockno: the block's number on the device.
        data: writable uint8 view of the block (None once evicted).
        uptodate: ``data`` holds the disk's contents (or newer ones).
        dirty: ``data`` is newer than the disk.
        refcount: references held by callers of bread/getblk.
        jtrans: the running or committing journal transaction that pins it, or None.
        jcheckpoint: the committed transaction that still needs it written home.
    """

    __slots__ = ("blockno", "data", "slot", "uptodate", "dirty", "refcount", "jtrans",
                 "jcheckpoint", "dirtied_ns", "_cache", "_io", "_lock")

    def __init__(self, cache: BufferCache, blockno: int, slot: int, data: np.ndarray) -> None:
        self.blockno = blockno
        self.slot = slot
        self.data: np.ndarray | None = data
        self.uptodate = False
        self.dirty = False
        self.refcount = 0
        self.jtrans: Any = None
        self.jcheckpoint: Any = None
        self.dirtied_ns = 0  # when it last went from clean to dirty (write-back age)
        self._cache = cache
        self._io = threading.Lock()  # held while the block is being read or written
        self._lock: Mutex | None = None

    @property
    def lock(self) -> Mutex:
        """The buffer's own lock (``lock_buffer``), for file systems that need one."""
        if self._lock is None:
            self._lock = Mutex("buffer", self._cache.lockdep)
        return self._lock

    def mark_dirty(self) -> None:
        """Note that ``data`` changed and must be written back."""
        if not self.dirty:
            self._cache._mark_dirty(self)

    def wait_io(self) -> None:
        """Wait until no read or write of this block is in flight."""
        self._io.acquire()
        self._io.release()

    @contextlib.contextmanager
    def io_exclusive(self) -> Iterator[None]:
        """No read or write-back of this block runs while inside: for a holder that
        changes ``data`` and also sends the block to the device another way (a write
        of a write-back already under way would otherwise land after, stale)."""
        with self._io:
            yield

    def release(self) -> None:
        self._cache.brelse(self)

    def __enter__(self) -> BufferHead:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cache.brelse(self)

    def __repr__(self) -> str:
        state = "".join(
            flag for flag, on in (("U", self.uptodate), ("D", self.dirty), ("J", self.jtrans))
            if on
        )
        return f"<BufferHead {self.blockno} ref={self.refcount} {state or '-'}>"
