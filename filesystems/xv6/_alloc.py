"""Block and inode allocation: next-fit over in-memory copies of the bitmaps.

The on-disk bitmaps are journaled metadata; the in-memory boolean arrays say what may
be handed out *now*. They differ in one way: a block freed by a transaction that has
not committed yet is free on disk (in that transaction) but not reusable — if the
machine crashed before the commit, its old owner would still have it (the jbd2 rule,
docs/locking.md). Such blocks wait in ``_pending`` until their transaction commits.

Locking: ``lock`` (a leaf mutex, taken inside journal handles) guards everything here.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from bento_user.api import corrupt
from bento_user.ks_emul import Handle, KernelServices, Transaction

from ._format import BITS_PER_BLOCK, Geometry, bit_array


class Allocator:
    """Args:
        inherited: a predecessor's ``handover()`` (live upgrade): its arrays are
            taken as they are instead of being unpacked from the bitmaps again.
    """

    def __init__(self, ks: KernelServices, geo: Geometry,
                 inherited: dict[str, Any] | None = None) -> None:
        self.ks = ks
        self.geo = geo
        self.lock = ks.mutex("xv6.alloc")
        if inherited is not None:
            self.block_used, self.inode_used = inherited["block_used"], inherited["inode_used"]
            self.free_blocks, self.free_inodes = inherited["free_blocks"], inherited["free_inodes"]
            self._block_cursor, self._inode_cursor = inherited["cursors"]
        else:
            self.block_used = self._load(geo.bbitmap_start, geo.bbitmap_blocks, geo.nblocks)
            self.block_used[: geo.data_start] = True  # metadata areas are never handed out
            self.inode_used = self._load(geo.ibitmap_start, geo.ibitmap_blocks, geo.ninodes)
            self.inode_used[0] = True
            self.free_blocks = int(np.count_nonzero(~self.block_used))
            self.free_inodes = int(np.count_nonzero(~self.inode_used))
            self._block_cursor, self._inode_cursor = geo.data_start, 1
        self._pending: deque[tuple[Transaction, list[int]]] = deque()
        self._pending_count = 0

    def handover(self) -> dict[str, Any] | None:
        """The in-memory bitmaps for a successor, once every freed block's
        transaction has committed (the runtime commits before an upgrade); None
        while some have not: the successor then reads the bitmaps on disk."""
        with self.lock:
            self._reap()
            if self._pending:
                return None
            return {"block_used": self.block_used, "inode_used": self.inode_used,
                    "free_blocks": self.free_blocks, "free_inodes": self.free_inodes,
                    "cursors": (self._block_cursor, self._inode_cursor)}

    def _load(self, start: int, nblocks: int, count: int) -> np.ndarray:
        blocks = []
        for b in range(start, start + nblocks):
            with self.ks.bread(b) as bh:
                blocks.append(bh.data.copy())
        return bit_array(blocks, count)

    # -- blocks ------------------------------------------------------------------

    def alloc_block(self, h: Handle, goal: int = 0) -> int | None:
        """A free block (near ``goal`` if given), marked used on disk; None if full."""
        with self.lock:
            self._reap()
            b = _next_fit(self.block_used, goal or self._block_cursor, self.geo.data_start)
            if b is None:
                return None
            self.block_used[b] = True
            self.free_blocks -= 1
            self._block_cursor = b + 1
        self._not_held(b, 1)
        self._set_bit(h, self.geo.bbitmap_start, b, True)
        return b

    def alloc_runs(self, h: Handle, goal: int, count: int, max_runs: int) -> list[tuple[int, int]]:
        """Up to ``count`` blocks as at most ``max_runs`` runs of adjacent blocks
        (start, length), found next-fit from ``goal``; fewer only when the disk is
        full. Each run touches at most two bitmap blocks."""
        runs: list[tuple[int, int]] = []
        with self.lock:
            self._reap()
            cursor = goal or self._block_cursor
            while count and len(runs) < max_runs:
                b = _next_fit(self.block_used, cursor, self.geo.data_start)
                if b is None:
                    break
                window = self.block_used[b:b + min(count, BITS_PER_BLOCK)]
                n = int(window.argmax()) if window.any() else len(window)
                self.block_used[b:b + n] = True
                self.free_blocks -= n
                self._block_cursor = cursor = b + n
                runs.append((b, n))
                count -= n
        for b, n in runs:
            self._not_held(b, n)
            self._set_bits(h, self.geo.bbitmap_start, b, n)
        return runs

    def _not_held(self, b: int, n: int) -> None:
        """Blocks the bitmap calls free are never held by the journal (a freed block
        waits in ``_pending`` until its transaction has committed and let it go): one
        that is, is metadata a corrupt bitmap forgot, and using it would overwrite it."""
        cached = self.ks.cache.cached
        for x in range(b, b + n):
            bh = cached(x)
            if bh is not None and bh.jtrans is not None:
                raise corrupt(f"block bitmap: block {x} is marked free, but the journal "
                              "holds it as metadata")

    def free_block(self, h: Handle, b: int) -> None:
        """Free ``b`` on disk now; reusable once ``h``'s transaction has committed."""
        self._set_bit(h, self.geo.bbitmap_start, b, False)
        with self.lock:
            if self._pending and self._pending[-1][0] is h.transaction:
                self._pending[-1][1].append(b)
            else:
                self._pending.append((h.transaction, [b]))
            self._pending_count += 1

    @property
    def pending_blocks(self) -> int:
        """Blocks freed by transactions that have not committed yet."""
        return self._pending_count

    def _reap(self) -> None:
        while self._pending and self._pending[0][0].committed:
            _, blocks = self._pending.popleft()
            self.block_used[blocks] = False
            self.free_blocks += len(blocks)
            self._pending_count -= len(blocks)

    # -- inodes ------------------------------------------------------------------

    def alloc_inode(self, h: Handle) -> int | None:
        with self.lock:
            i = _next_fit(self.inode_used, self._inode_cursor, 1)
            if i is None:
                return None
            self.inode_used[i] = True
            self.free_inodes -= 1
            self._inode_cursor = i + 1
        self._set_bit(h, self.geo.ibitmap_start, i, True)
        return i

    def free_inode(self, h: Handle, i: int) -> None:
        self._set_bit(h, self.geo.ibitmap_start, i, False)
        with self.lock:
            self.inode_used[i] = False
            self.free_inodes += 1

    # -- disk --------------------------------------------------------------------

    def _set_bits(self, h: Handle, area: int, n: int, count: int) -> None:
        """Mark ``count`` adjacent blocks from ``n`` used on disk, one bitmap block
        at a time."""
        while count:
            blockno, bit = area + n // BITS_PER_BLOCK, n % BITS_PER_BLOCK
            k = min(count, BITS_PER_BLOCK - bit)
            with self.ks.bread(blockno) as bh:
                h.get_write_access(bh)
                with self.lock:
                    ok = _set_bits_in(bh.data, bit, k)
                if not ok:
                    raise corrupt(f"block bitmap: a block in {n}..{n + k - 1} is already in use")
                h.dirty_metadata(bh)
            n += k
            count -= k

    def _set_bit(self, h: Handle, area: int, n: int, value: bool) -> None:
        blockno, bit = area + n // BITS_PER_BLOCK, n % BITS_PER_BLOCK
        with self.ks.bread(blockno) as bh:
            h.get_write_access(bh)
            with self.lock:  # two bits of one byte may change at once
                byte = bh.data[bit >> 3]
                mask = np.uint8(1 << (bit & 7))
                if bool(byte & mask) == value:
                    what = "inode" if area == self.geo.ibitmap_start else "block"
                    raise corrupt(f"{what} bitmap: {what} {n} is already "
                                  f"{'in use' if value else 'free'}")
                bh.data[bit >> 3] = (byte | mask) if value else (byte & ~mask)
            h.dirty_metadata(bh)


def _set_bits_in(data: np.ndarray, first: int, n: int) -> bool:
    """Set bits first..first+n-1 of a bitmap block; False if any was set already."""
    lo, hi = first >> 3, (first + n + 7) >> 3
    bits = np.unpackbits(data[lo:hi], bitorder="little")
    span = bits[first - lo * 8:first - lo * 8 + n]
    if span.any():
        return False
    span[:] = 1
    data[lo:hi] = np.packbits(bits, bitorder="little")
    return True


def _next_fit(used: np.ndarray, cursor: int, low: int) -> int | None:
    """The first False at or after ``cursor``, wrapping around to ``low``."""
    n = len(used)
    cursor = min(max(cursor, low), n)
    for start, stop in ((cursor, n), (low, cursor)):
        if start >= stop:
            continue
        window = used[start:stop]
        i = int(window.argmin())
        if not window[i]:
            return start + i
    return None
