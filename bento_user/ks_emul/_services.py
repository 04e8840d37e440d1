"""The one object a file system gets from the "kernel": ``KernelServices``.

It owns the device, the buffer cache, the journal (once the file system opens it),
the clock and the lock factory. It outlives any one file-system instance: a live
upgrade hands the same object to the new version, so cached blocks, the running
transaction and the device stay where they are.
"""

from __future__ import annotations

import numpy as np

from ..blockdev import BlockDevice, aligned_blocks
from ._buffer_cache import BufferCache
from ._buffer_head import BufferHead
from ._journal import Journal
from ._locks import Lockdep, Mutex, RWSemaphore, Semaphore
from ._process import ProcessInfo, ProcessTable
from ._recovery import RecoveryReport
from ._time import Clock


class KernelServices:
    """Kernel services over one block device.

    Args:
        device: the disk.
        cache_blocks: buffer-cache capacity in blocks.
        debug_locks: record lock order and raise on inversions (lockdep).
        clock: the time source (a ``ManualClock`` in tests).
        commit_interval: seconds between timer commits of the journal (None: off).
        writeback: hold dirty buffers to the cache's write-back limits with a
            background writer (mounts); off, write-back happens only when asked or
            when an allocation needs room, which keeps runs deterministic (fuzzers).
    """

    def __init__(
        self,
        device: BlockDevice,
        *,
        cache_blocks: int = 8192,
        debug_locks: bool = False,
        clock: Clock | None = None,
        commit_interval: float | None = 5.0,
        writeback: bool = False,
    ) -> None:
        self.device = device
        self.lockdep = Lockdep() if debug_locks else None
        self.cache = BufferCache(device, cache_blocks, lockdep=self.lockdep)
        if writeback and not device.read_only:
            self.cache.start_writeback()
        self.clock = clock or Clock()
        self.commit_interval = commit_interval
        self.journal: Journal | None = None
        self.block_size = device.block_size
        self.processes = ProcessTable()

    # -- buffer cache ------------------------------------------------------------------

    def bread(self, blockno: int) -> BufferHead:
        return self.cache.bread(blockno)

    def getblk(self, blockno: int) -> BufferHead:
        return self.cache.getblk(blockno)

    def brelse(self, bh: BufferHead) -> None:
        self.cache.brelse(bh)

    # -- block I/O around the cache (the kernel's bios) --------------------------------

    def io_buffers(self, count: int) -> np.ndarray:
        """``count`` blocks of page-aligned memory, as O_DIRECT transfers need."""
        return aligned_blocks(count, self.block_size)

    def read_blocks(self, start: int, buffers: list[np.ndarray]) -> None:
        """Read blocks straight from the device, bypassing the cache: for file data a
        file system moves itself (it must consult ``cache.find`` for cached copies)."""
        self.device.read_blocks(start, buffers)

    def write_blocks(self, start: int, buffers: list[np.ndarray]) -> None:
        """Write blocks straight to the device; durable after the next flush."""
        self.device.write_blocks(start, buffers)

    # -- journal -----------------------------------------------------------------------

    def open_journal(self, start: int, nblocks: int, uuid: bytes) -> tuple[Journal, RecoveryReport]:
        """Open (and recover) the journal in the area the file system keeps for it.

        Calling it again with the same area returns the journal already open: after a
        live upgrade the new file system finds its predecessor's running journal.
        """
        j = self.journal
        if j is not None:
            if (j.area_start, j.area_len, j.uuid) != (start, nblocks, bytes(uuid)):
                raise ValueError("a different journal is already open on this device")
            return j, RecoveryReport(next_tid=j._next_tid)
        j = Journal(self.cache, start, nblocks, uuid, clock=self.clock,
                    commit_interval=self.commit_interval)
        report = j.load()
        self.journal = j
        return j, report

    # -- locks and time ------------------------------------------------------------------

    def mutex(self, name: str) -> Mutex:
        return Mutex(name, self.lockdep)

    def semaphore(self, name: str, value: int) -> Semaphore:
        return Semaphore(value, name, self.lockdep)

    def rwsem(self, name: str) -> RWSemaphore:
        return RWSemaphore(name, self.lockdep)

    def now_ns(self) -> int:
        return self.clock.now_ns()

    def process(self, pid: int) -> ProcessInfo:
        """What the kernel knows of process ``pid`` (the pid a ``Request`` carries):
        executable, command line, uid, parent — best-effort, cached per process."""
        return self.processes.lookup(pid)

    # -- lifetime ------------------------------------------------------------------------

    def sync(self) -> None:
        """Commit the journal, write back every dirty buffer and flush the device."""
        if self.journal is not None:
            self.journal.force_commit()
        self.cache.sync()

    def discard(self) -> None:
        """Close and write nothing: for tools that only look (fsck replays the journal
        into a memory overlay and leaves the image as it found it)."""
        try:
            self.cache.stop_writeback()
            if self.journal is not None:
                self.journal.stop_timer()
                self.journal = None
        finally:
            self.device.close()

    def close(self, keep_device: bool = False) -> None:
        """Unmount: close the journal (commit + checkpoint), write back, flush, close
        (the device too, unless a tool goes on with it: fsck -y after the replay)."""
        try:
            self.cache.stop_writeback()
            if self.journal is not None:
                self.journal.close()
                self.journal = None
            if not self.device.read_only:
                self.cache.sync()
        finally:
            if not keep_device:
                self.device.close()
