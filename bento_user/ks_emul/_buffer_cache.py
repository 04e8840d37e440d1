"""The buffer cache: disk blocks in memory, shared by every user of one device.

All block memory is one page-aligned arena (``capacity`` slots of one block each), so
O_DIRECT reads and writes land in the slots in place and NumPy views of a slot give
typed access to on-disk structures with no copy.

- One lock (``_lock``) guards the map, the LRU order, the dirty set, reference counts
  and the free-slot list. It is never held across device I/O.
- A block being read or written holds its buffer's ``_io`` lock; others wanting it
  wait on that, not on the cache lock.
- Eviction takes the least recently used buffer that is clean, unreferenced and not
  pinned by the journal. If there is none, dirty unpinned buffers are written back
  first; if there is still none, the caller gets ``ENOMEM`` (the cache is too small
  for what is held at once).
- Misses that continue a sequential run read ahead: the window doubles from 4 blocks
  up to ``readahead_max`` and resets on a random access; the whole window is one
  vectored read.
- Write-back sorts dirty buffers by block number and writes each run of adjacent
  blocks with a single vectored write.

Invariant: a buffer in ``_map`` is in ``_lru``; a buffer in ``_dirty`` is in ``_map``.
"""

from __future__ import annotations

import errno
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from ..blockdev import BlockDevice, BlockRangeError, aligned_blocks
from ._buffer_head import BufferHead
from ._locks import Lockdep


@dataclass(frozen=True)
class CacheStatistics:
    """Attributes:
    hits / misses: bread and getblk calls served from memory / not.
    reads / writes: device calls the cache made (a vectored run counts once).
    bytes_read / bytes_written: bytes those calls moved.
    readahead_blocks: blocks read ahead of a request.
    evictions: buffers dropped to make room.
    cached / dirty / capacity: buffers now cached, now dirty, at most.
    """

    hits: int
    misses: int
    reads: int
    writes: int
    bytes_read: int
    bytes_written: int
    readahead_blocks: int
    evictions: int
    cached: int
    dirty: int
    capacity: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class BufferCache:
    """A cache of ``capacity`` blocks of ``device``, safe to use from several threads."""

    def __init__(
        self,
        device: BlockDevice,
        capacity: int = 8192,
        readahead_max: int = 64,
        lockdep: Lockdep | None = None,
    ) -> None:
        if capacity < 8:
            raise ValueError(f"a buffer cache needs at least 8 blocks, not {capacity}")
        self.device = device
        self.block_size = device.block_size
        self.capacity = capacity
        self.readahead_max = readahead_max
        self.lockdep = lockdep
        self._arena = aligned_blocks(capacity, device.block_size)
        self._free = list(range(capacity - 1, -1, -1))
        self._map: dict[int, BufferHead] = {}
        self._lru: OrderedDict[int, BufferHead] = OrderedDict()
        self._dirty: dict[int, BufferHead] = {}
        self._lock = threading.Lock()
        self._ra_next = -1
        self._ra_window = 1
        self._hits = self._misses = self._evictions = self._readahead = 0
        self._reads = self._writes = self._bytes_read = self._bytes_written = 0

    # -- getting and releasing buffers ------------------------------------------------

    def bread(self, blockno: int) -> BufferHead:
        """The block's buffer, read from the device if needed, with a reference held."""
        lock = self._lock
        lock.acquire()
        bh = self._map.get(blockno)
        if bh is not None:
            bh.refcount += 1
            self._lru.move_to_end(blockno)
            self._hits += 1
            lock.release()
            return bh if bh.uptodate else self._wait_read(bh)
        lock.release()
        return self._bread_miss(blockno)

    def getblk(self, blockno: int) -> BufferHead:
        """The block's buffer without reading it: for blocks about to be overwritten.

        The contents are the cached ones if the block is cached, else zeros; either
        way the buffer counts as up to date.
        """
        self._check_range(blockno, 1)
        while True:
            with self._lock:
                bh = self._map.get(blockno)
                if bh is not None:
                    bh.refcount += 1
                    self._lru.move_to_end(blockno)
                    self._hits += 1
                else:
                    slot = self._take_slot()
                    if slot is not None:
                        bh = self._install(blockno, slot, refcount=1)
                        bh.data.fill(0)  # type: ignore[union-attr]
                        bh.uptodate = True
                        self._misses += 1
                        return bh
            if bh is not None:
                return bh if bh.uptodate else self._wait_read(bh)
            self._make_room()

    def brelse(self, bh: BufferHead) -> None:
        """Drop a reference taken by bread or getblk."""
        with self._lock:
            if bh.refcount <= 0:
                raise RuntimeError(f"brelse of block {bh.blockno}, which is not held")
            bh.refcount -= 1

    def readahead(self, start: int, count: int) -> None:
        """Start reading blocks a file system knows it will need (uncached ones only)."""
        end = min(start + count, self.device.nblocks)
        blockno = max(start, 0)
        while blockno < end:
            with self._lock:
                if blockno in self._map:
                    blockno += 1
                    continue
                run = self._install_run(blockno, end - blockno, first_refcount=0)
            if not run:
                return
            self._read_run(run)
            self._readahead += len(run)
            blockno += len(run)

    # -- dirty buffers ----------------------------------------------------------------

    def _mark_dirty(self, bh: BufferHead) -> None:
        with self._lock:
            if bh.data is None:
                raise RuntimeError(f"block {bh.blockno} marked dirty after eviction")
            bh.dirty = True
            self._dirty[bh.blockno] = bh

    def writeback(self, buffers: Iterable[BufferHead] | None = None) -> int:
        """Write dirty buffers home, adjacent blocks merged; returns blocks written.

        Buffers pinned by a running or committing transaction are skipped: their home
        location may only see committed contents. Writing does not flush the device.
        """
        with self._lock:
            pool = list(self._dirty.values()) if buffers is None else list(buffers)
            chosen = []
            for bh in sorted(pool, key=lambda b: b.blockno):
                if bh.dirty and bh.jtrans is None and bh._io.acquire(blocking=False):
                    bh.dirty = False
                    del self._dirty[bh.blockno]
                    bh.refcount += 1
                    chosen.append(bh)
        written = calls = 0
        try:
            for run in _runs(chosen):
                self.device.write_blocks(run[0].blockno, [b.data for b in run])  # type: ignore[misc]
                calls += 1
                written += len(run)
        except OSError:
            with self._lock:
                for bh in chosen[written:]:
                    bh.dirty = True
                    self._dirty[bh.blockno] = bh
            raise
        finally:
            with self._lock:
                self._writes += calls
                self._bytes_written += written * self.block_size
                for bh in chosen:
                    bh.refcount -= 1
                    bh._io.release()
        return written

    def sync(self) -> None:
        """Write back every unpinned dirty buffer, then flush the device."""
        self.writeback()
        self.device.flush()

    def forget(self, bh: BufferHead) -> None:
        """Release ``bh`` and throw away its unwritten changes (its block was freed)."""
        with self._lock:
            if bh.dirty:
                bh.dirty = False
                self._dirty.pop(bh.blockno, None)
            bh.refcount -= 1

    def invalidate(self, blocknos: Iterable[int]) -> None:
        """Drop cached copies of blocks changed on the device behind the cache's back.

        Used after journal recovery, which writes to the device directly. A buffer
        that is held or dirty cannot be dropped: that is a caller bug.
        """
        with self._lock:
            for n in blocknos:
                bh = self._map.get(n)
                if bh is None:
                    continue
                if bh.refcount or bh.dirty or bh.jtrans is not None or not bh.uptodate:
                    raise RuntimeError(f"cannot invalidate block {n}: it is in use ({bh!r})")
                self._evict(bh)

    def statistics(self) -> CacheStatistics:
        with self._lock:
            return CacheStatistics(
                self._hits, self._misses, self._reads, self._writes, self._bytes_read,
                self._bytes_written, self._readahead, self._evictions, len(self._map),
                len(self._dirty), self.capacity,
            )

    def find(self, blockno: int) -> BufferHead | None:
        """The block's buffer with a reference held if it is cached and up to date,
        else None; never reads. For file systems that move file data to and from
        the device themselves and must see (and keep current) cached copies."""
        with self._lock:
            bh = self._map.get(blockno)
            if bh is None or not bh.uptodate:
                return None
            bh.refcount += 1
            return bh

    def cached(self, blockno: int) -> BufferHead | None:
        """The cached buffer for a block, without taking a reference (for inspection)."""
        return self._map.get(blockno)

    # -- misses, reads and slots (internal) -----------------------------------------------

    def _bread_miss(self, blockno: int) -> BufferHead:
        self._check_range(blockno, 1)
        while True:
            with self._lock:
                bh = self._map.get(blockno)
                if bh is not None:  # another thread got here first
                    bh.refcount += 1
                    self._lru.move_to_end(blockno)
                    self._hits += 1
                    run = None
                else:
                    window = self._readahead_window(blockno)
                    run = self._install_run(blockno, window, first_refcount=1)
                    if run:
                        self._misses += 1
                        self._readahead += len(run) - 1
                        self._ra_next = blockno + len(run)
            if bh is not None:
                return bh if bh.uptodate else self._wait_read(bh)
            if run:
                self._read_run(run)
                return run[0]
            self._make_room()

    def _readahead_window(self, blockno: int) -> int:
        """How many blocks to read for a miss at ``blockno``. Caller holds ``_lock``."""
        if self.readahead_max <= 1:
            return 1
        if blockno == self._ra_next:
            self._ra_window = min(max(self._ra_window * 2, 4), self.readahead_max)
        else:
            self._ra_window = 1
        return min(self._ra_window, self.device.nblocks - blockno)

    def _install_run(self, start: int, count: int, first_refcount: int) -> list[BufferHead]:
        """New buffers for uncached blocks ``start``... (stops at a cached one or when
        no slot is free), each with its ``_io`` lock held. Caller holds ``_lock``."""
        run: list[BufferHead] = []
        for blockno in range(start, start + count):
            if blockno in self._map:
                break
            slot = self._take_slot()
            if slot is None:
                break
            bh = self._install(blockno, slot, first_refcount if not run else 0)
            bh._io.acquire()
            run.append(bh)
        return run

    def _read_run(self, run: list[BufferHead]) -> None:
        """Read freshly installed buffers in one device call and release their ``_io``."""
        try:
            self.device.read_blocks(run[0].blockno, [bh.data for bh in run])  # type: ignore[misc]
        except OSError:
            with self._lock:
                for bh in run:
                    slot = bh.slot
                    self._map_remove(bh)
                    self._free.append(slot)
            for bh in run:
                bh._io.release()
            raise
        with self._lock:
            self._reads += 1
            self._bytes_read += len(run) * self.block_size
        for bh in run:
            bh.uptodate = True
            bh._io.release()

    def _wait_read(self, bh: BufferHead) -> BufferHead:
        """Wait for another thread's read of ``bh``; retry ourselves if it failed."""
        bh.wait_io()
        if bh.uptodate:
            return bh
        with self._lock:
            bh.refcount -= 1
        return self.bread(bh.blockno)

    def _install(self, blockno: int, slot: int, refcount: int) -> BufferHead:
        bh = BufferHead(self, blockno, slot, self._arena[slot])
        bh.refcount = refcount
        self._map[blockno] = bh
        self._lru[blockno] = bh
        return bh

    def _take_slot(self) -> int | None:
        """A free arena slot, evicting if needed; None if nothing can go. Holds ``_lock``."""
        if self._free:
            return self._free.pop()
        for bh in self._lru.values():
            if bh.refcount == 0 and not bh.dirty and bh.jtrans is None and bh.uptodate:
                slot = bh.slot
                self._map_remove(bh)
                self._evictions += 1
                return slot
        return None

    def _evict(self, bh: BufferHead) -> None:
        slot = bh.slot
        self._map_remove(bh)
        self._free.append(slot)
        self._evictions += 1

    def _map_remove(self, bh: BufferHead) -> None:
        del self._map[bh.blockno]
        del self._lru[bh.blockno]
        self._dirty.pop(bh.blockno, None)
        bh.data = None
        bh.slot = -1

    def _make_room(self) -> None:
        """Nothing was evictable: write back dirty buffers, or report a full cache."""
        if self.writeback():
            return
        with self._lock:
            if self._free or any(
                bh.refcount == 0 and not bh.dirty and bh.jtrans is None
                for bh in self._lru.values()
            ):
                return
            held = sum(1 for bh in self._lru.values() if bh.refcount)
            pinned = sum(1 for bh in self._lru.values() if bh.jtrans is not None)
        raise OSError(
            errno.ENOMEM,
            f"buffer cache full: {held} of {self.capacity} buffers held and {pinned} "
            f"pinned by the journal; give the cache more capacity",
        )

    def _check_range(self, blockno: int, count: int) -> None:
        if blockno < 0 or blockno + count > self.device.nblocks:
            raise BlockRangeError(self.device.name, blockno, count, self.device.nblocks)


MAX_RUN = 256  # blocks per vectored write: 1 MiB, well under the kernel's IOV_MAX (1024)


def _runs(buffers: list[BufferHead]) -> list[list[BufferHead]]:
    """Split buffers sorted by block number into runs of adjacent blocks."""
    runs: list[list[BufferHead]] = []
    for bh in buffers:
        if runs and runs[-1][-1].blockno + 1 == bh.blockno and len(runs[-1]) < MAX_RUN:
            runs[-1].append(bh)
        else:
            runs.append([bh])
    return runs
