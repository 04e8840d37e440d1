"""The buffer cache: disk blocks in memory, shared by every user of one device.

All block memory is one page-aligned arena (``capacity`` slots of one block each), so
O_DIRECT reads and writes land in the slots in place and NumPy views of a slot give
typed access to on-disk structures with no copy.

Every cached buffer is in ``_map`` and in at most one of three ordered sets, chosen by
its state whenever that state changes (``_settle``), so no operation ever scans:

- ``_lru``: buffers that can be evicted now — up to date, clean, unreferenced and not
  pinned by the journal — least recently released first. Eviction takes the first.
- ``_dirty``: dirty buffers the journal does not pin, oldest first: what write-back
  may write now.
- ``_pinned_dirty``: dirty buffers a running or committing transaction pins; their
  home may only see committed contents. The journal's ``unpin`` moves them on.

Buffers in none of them are referenced (or being read) while clean: they return to
``_lru`` on their last ``brelse``.

- One lock (``_lock``) guards the map, the three sets, reference counts and the free
  slots. It is never held across device I/O.
- A block being read or written holds its buffer's ``_io`` lock; others wanting it
  wait on that, not on the cache lock.
- When ``_lru`` is empty an allocation writes back the oldest dirty buffers itself;
  if nothing can be freed the caller gets ``ENOMEM`` (the cache is too small for what
  is held at once). The background writer (``_writeback.Flusher``) keeps this rare:
  it writes old dirty buffers home before anyone needs their slots, and a writer that
  dirties past the hard limit writes a batch back itself (``balance_dirty``).
- Misses that continue a sequential run read ahead: the window doubles from 4 blocks
  up to ``readahead_max`` and resets on a random access; the whole window is one
  vectored read.
- Write-back sorts dirty buffers by block number and writes each run of adjacent
  blocks with a single vectored write.
"""

from __future__ import annotations

import errno
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..blockdev import BlockDevice, BlockRangeError, aligned_blocks
from ._buffer_head import BufferHead
from . import _undo
from ._faults import FAULTS
from ._locks import Lockdep
from ._writeback import Flusher, WritebackLimits, runs


@dataclass(frozen=True)
class CacheStatistics:
    """Attributes:
    hits / misses: bread and getblk calls served from memory / not.
    reads / writes: device calls the cache made (a vectored run counts once).
    bytes_read / bytes_written: bytes those calls moved.
    readahead_blocks: blocks read ahead of a request.
    evictions: buffers dropped to make room.
    cached / dirty / capacity: buffers now cached, now dirty, at most.
    pinned_dirty: dirty buffers the journal pins (part of ``dirty``).
    evictable: buffers that could be dropped right now.
    background_writes / throttled / stalls: blocks the background writer wrote;
    times a writer past the hard limit wrote back itself; allocations that found
    nothing evictable and had to write back first.
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
    pinned_dirty: int = 0
    evictable: int = 0
    background_writes: int = 0
    throttled: int = 0
    stalls: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class BufferCache:
    """A cache of ``capacity`` blocks of ``device``, safe to use from several threads.

    ``limits`` sets the write-back thresholds; they apply only after
    ``start_writeback()`` (the kernel services start it for a mount; a bare cache in a
    test writes back only when asked or when it must).
    """

    def __init__(
        self,
        device: BlockDevice,
        capacity: int = 8192,
        readahead_max: int = 64,
        lockdep: Lockdep | None = None,
        limits: WritebackLimits | None = None,
    ) -> None:
        if capacity < 8:
            raise ValueError(f"a buffer cache needs at least 8 blocks, not {capacity}")
        self.device = device
        self.block_size = device.block_size
        self.capacity = capacity
        self.readahead_max = readahead_max
        self.lockdep = lockdep
        self.limits = (limits or WritebackLimits()).for_capacity(capacity)
        self._arena = aligned_blocks(capacity, device.block_size)
        self._fresh = 0  # slots below this were handed out at least once
        self._free: list[int] = []  # slots given back (eviction, failed reads)
        self._map: dict[int, BufferHead] = {}
        self._lru: OrderedDict[int, BufferHead] = OrderedDict()
        self._dirty: dict[int, BufferHead] = {}
        self._pinned_dirty: dict[int, BufferHead] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the background writer sleeps here
        self._io_done = threading.Condition(self._lock)  # a read or write finished
        self._in_flight = 0  # buffers being read or written, outside every set
        self._flusher: Flusher | None = None
        self._balancing = False  # writers past the hard limit write back themselves
        self._ra_next = -1
        self._ra_window = 1
        self._hits = self._misses = self._evictions = self._readahead = 0
        self._reads = self._writes = self._bytes_read = self._bytes_written = 0
        self._background = self._throttled = self._stalls = 0

    # -- getting and releasing buffers ------------------------------------------------

    def bread(self, blockno: int) -> BufferHead:
        """The block's buffer, read from the device if needed, with a reference held."""
        if FAULTS.countdown:
            FAULTS.point("bread")
        if _undo.active:
            return _undo.saw_data(self._bread(blockno))
        return self._bread(blockno)

    def _bread(self, blockno: int) -> BufferHead:
        lock = self._lock
        lock.acquire()
        bh = self._map.get(blockno)
        if bh is not None:
            bh.refcount += 1
            self._lru.pop(blockno, None)
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
        if FAULTS.countdown:
            FAULTS.point("getblk")
        if _undo.active and _undo.saving_data():
            # The contents it replaces must be saved: read them (a getblk would give
            # zeros for a block not cached).
            return _undo.saw_data(self._bread(blockno))
        return self._getblk(blockno)

    def _getblk(self, blockno: int) -> BufferHead:
        self._check_range(blockno, 1)
        while True:
            with self._lock:
                bh = self._map.get(blockno)
                if bh is not None:
                    bh.refcount += 1
                    self._lru.pop(blockno, None)
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
            if bh.refcount == 0:
                self._settle(bh)

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
            bh.dirtied_ns = time.monotonic_ns()
            self._settle(bh)
            if not self._balancing:
                return
            if len(self._dirty) >= self.limits.background and self._flusher is not None:
                self._wake.notify()
            throttle = len(self._dirty) >= self.limits.hard
        if throttle:
            self.balance_dirty()

    def balance_dirty(self) -> None:
        """Past the hard limit, the writer pays: write the oldest batch back now
        (the kernel's balance_dirty_pages), so dirty data cannot outgrow the cache."""
        with self._lock:
            if len(self._dirty) < self.limits.hard:
                return
            self._throttled += 1
        self.writeback(self.oldest_dirty(self.limits.batch))

    def oldest_dirty(self, count: int) -> list[BufferHead]:
        """Up to ``count`` writable dirty buffers, those dirtied longest ago first."""
        with self._lock:
            return list(itertools.islice(self._dirty.values(), count))

    def dirty_age(self) -> float:
        """Seconds since the oldest writable dirty buffer was dirtied (0 if none)."""
        with self._lock:
            first = next(iter(self._dirty.values()), None)
        return 0.0 if first is None else (time.monotonic_ns() - first.dirtied_ns) / 1e9

    def writeback(self, buffers: Iterable[BufferHead] | None = None,
                  reclaim: bool = False) -> int:
        """Write dirty buffers home, adjacent blocks merged; returns blocks written.

        With ``reclaim`` (written to make room) the buffers, once clean, go to the cold
        end of the LRU, to be evicted first, as the kernel rotates pages whose
        write-back was started by reclaim.

        Buffers pinned by a running or committing transaction are skipped: their home
        location may only see committed contents. So is a buffer another thread is
        writing already: callers that need it on disk ``wait_io`` afterwards. Writing
        does not flush the device.
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
            self._in_flight += len(chosen)
        written = calls = 0
        try:
            for run in runs(chosen):
                self.device.write_blocks(run[0].blockno, [b.data for b in run])  # type: ignore[misc]
                calls += 1
                written += len(run)
        except OSError:
            with self._lock:
                for bh in chosen[written:]:
                    bh.dirty = True
                    self._settle(bh)
            raise
        finally:
            with self._lock:
                self._writes += calls
                self._bytes_written += written * self.block_size
                for bh in chosen:
                    bh.refcount -= 1
                    bh._io.release()
                    self._settle(bh)
                    if reclaim and bh.blockno in self._lru:
                        self._lru.move_to_end(bh.blockno, last=False)
                self._in_flight -= len(chosen)
                self._io_done.notify_all()
        return written

    def write_and_wait(self, buffers: list[BufferHead]) -> None:
        """Return once every unpinned buffer of ``buffers`` that was dirty is home
        with its current contents (an fsync's data): one another thread was writing
        is waited for, and written again if it changed under that write."""
        while buffers:
            self.writeback(buffers)
            for bh in buffers:
                bh.wait_io()
            buffers = [bh for bh in buffers if bh.dirty and bh.jtrans is None]

    def sync(self) -> None:
        """Write back every unpinned dirty buffer, then flush the device."""
        self.writeback()
        self.device.flush()

    def forget(self, bh: BufferHead) -> None:
        """Release ``bh`` and throw away its unwritten changes (its block was freed)."""
        with self._lock:
            bh.dirty = False
            bh.refcount -= 1
            self._settle(bh)

    def shrink(self, count: int | None = None) -> int:
        """Evict up to ``count`` (default: all) evictable buffers, least recently
        used first, as memory pressure would; returns how many went."""
        with self._lock:
            n = len(self._lru) if count is None else min(count, len(self._lru))
            for _ in range(n):
                _, bh = self._lru.popitem(last=False)
                self._evict(bh)
            return n

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

    # -- the journal's pins -------------------------------------------------------------

    def pin(self, bh: BufferHead, owner: Any) -> None:
        """Pin ``bh`` to a transaction: write-back and eviction leave it alone."""
        with self._lock:
            bh.jtrans = owner
            self._settle(bh)

    def unpin(self, buffers: Iterable[BufferHead], owner: Any) -> None:
        """Release the pins ``owner`` holds on ``buffers`` (its commit is durable)."""
        with self._lock:
            for bh in buffers:
                if bh.jtrans is owner:
                    bh.jtrans = None
                    self._settle(bh)

    # -- the background writer ----------------------------------------------------------

    def start_writeback(self, background: bool = True) -> None:
        """Hold dirty buffers to the limits: writers past the hard limit write back
        themselves, and (``background``) a thread writes ahead of need. Idempotent."""
        self._balancing = True
        if background and self._flusher is None:
            self._flusher = Flusher(self)
            self._flusher.start()

    def stop_writeback(self) -> None:
        """Stop the background writer and the throttle; dirty buffers stay for ``sync``."""
        self._balancing = False
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.stop()

    def _count_background(self, blocks: int) -> None:
        with self._lock:
            self._background += blocks

    # -- looking ------------------------------------------------------------------------

    def statistics(self) -> CacheStatistics:
        with self._lock:
            return CacheStatistics(
                self._hits, self._misses, self._reads, self._writes, self._bytes_read,
                self._bytes_written, self._readahead, self._evictions, len(self._map),
                len(self._dirty) + len(self._pinned_dirty), self.capacity,
                len(self._pinned_dirty), len(self._lru) + len(self._free)
                + self.capacity - self._fresh, self._background, self._throttled,
                self._stalls,
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
            self._lru.pop(blockno, None)
            return bh

    def cached(self, blockno: int) -> BufferHead | None:
        """The cached buffer for a block, without taking a reference (for inspection)."""
        return self._map.get(blockno)

    def check_invariants(self) -> None:
        """Raise AssertionError if a buffer sits in the wrong set (for tests)."""
        with self._lock:
            for n, bh in self._map.items():
                assert bh.blockno == n and bh.data is not None, bh
                evictable = (bh.refcount == 0 and not bh.dirty and bh.jtrans is None
                             and bh.uptodate)
                assert (n in self._lru) == evictable, f"{bh!r}: LRU membership wrong"
                assert (n in self._dirty) == (bh.dirty and bh.jtrans is None), bh
                assert (n in self._pinned_dirty) == (bh.dirty and bh.jtrans is not None), bh
            for group in (self._lru, self._dirty, self._pinned_dirty):
                assert all(self._map.get(n) is bh for n, bh in group.items())
            slots = {bh.slot for bh in self._map.values()}
            assert len(slots) == len(self._map) and not slots & set(self._free)
            assert len(self._map) + len(self._free) == self._fresh <= self.capacity

    # -- misses, reads and slots (internal) -----------------------------------------------

    def _settle(self, bh: BufferHead) -> None:
        """Put ``bh`` in the one set its state calls for. Caller holds ``_lock``."""
        n = bh.blockno
        if bh.dirty:
            self._lru.pop(n, None)
            if bh.jtrans is None:
                self._pinned_dirty.pop(n, None)
                self._dirty.setdefault(n, bh)
            else:
                self._dirty.pop(n, None)
                self._pinned_dirty.setdefault(n, bh)
            return
        self._dirty.pop(n, None)
        self._pinned_dirty.pop(n, None)
        if bh.refcount == 0 and bh.jtrans is None and bh.uptodate and bh.data is not None:
            self._lru.setdefault(n, bh)  # newly evictable: the most recent end
        else:
            self._lru.pop(n, None)

    def _bread_miss(self, blockno: int) -> BufferHead:
        self._check_range(blockno, 1)
        while True:
            with self._lock:
                bh = self._map.get(blockno)
                if bh is not None:  # another thread got here first
                    bh.refcount += 1
                    self._lru.pop(blockno, None)
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
        self._in_flight += len(run)
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
                self._in_flight -= len(run)
                self._io_done.notify_all()
            for bh in run:
                bh._io.release()
            raise
        with self._lock:
            self._reads += 1
            self._bytes_read += len(run) * self.block_size
            for bh in run:
                bh.uptodate = True
                self._settle(bh)  # read-ahead buffers nobody holds become evictable
            self._in_flight -= len(run)
            self._io_done.notify_all()
        for bh in run:
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
        return bh

    def _take_slot(self) -> int | None:
        """A free arena slot, evicting the least recently used evictable buffer if
        needed; None if nothing can go. O(1). Caller holds ``_lock``."""
        if self._free:
            return self._free.pop()
        if self._fresh < self.capacity:
            self._fresh += 1
            return self._fresh - 1
        if not self._lru:
            return None
        _, bh = self._lru.popitem(last=False)
        slot = bh.slot
        self._map_remove(bh)
        self._evictions += 1
        return slot

    def _evict(self, bh: BufferHead) -> None:
        slot = bh.slot
        self._map_remove(bh)
        self._free.append(slot)
        self._evictions += 1

    def _map_remove(self, bh: BufferHead) -> None:
        n = bh.blockno
        del self._map[n]
        self._lru.pop(n, None)
        self._dirty.pop(n, None)
        self._pinned_dirty.pop(n, None)
        bh.data = None
        bh.slot = -1

    def _make_room(self) -> None:
        """Nothing was evictable: write back the oldest dirty buffers, or report a
        full cache."""
        with self._lock:
            self._stalls += 1
        if self.writeback(self.oldest_dirty(self.limits.batch), reclaim=True):
            return
        with self._lock:
            if self._free or self._lru or self._fresh < self.capacity:
                return
            if self._in_flight:  # another thread's read or write frees buffers soon
                self._io_done.wait(0.1)
                return
            held = sum(1 for bh in self._map.values() if bh.refcount)
            pinned = sum(1 for bh in self._map.values() if bh.jtrans is not None)
        raise OSError(
            errno.ENOMEM,
            f"buffer cache full: {held} of {self.capacity} buffers held and {pinned} "
            f"pinned by the journal; give the cache more capacity",
        )

    def _check_range(self, blockno: int, count: int) -> None:
        if blockno < 0 or blockno + count > self.device.nblocks:
            raise BlockRangeError(self.device.name, blockno, count, self.device.nblocks)
