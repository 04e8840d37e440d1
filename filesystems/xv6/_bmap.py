"""Logical-to-physical block mapping: direct, single-, double- and triple-indirect.

Like xv6's ``bmap`` grown by two levels. A logical block's path is the list of slots
from the inode down (``_path``); indirect blocks are arrays of little-endian u32
pointers read straight from the buffer cache. Every pointer is range-checked when it
is followed, so a corrupt image gives EUCLEAN, never a read outside the device.

Indirect blocks are metadata (journaled, revoked when freed); so are the data blocks
of directories and symlinks. Regular files' data blocks are ordered data.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bento_user.api import corrupt
from bento_user.ks_emul import Handle, KernelServices

from ._alloc import Allocator
from ._format import MAX_FILE_BLOCKS, NDIRECT, PTRS_PER_BLOCK, Geometry
from ._inode import Inode

# first logical block covered by addrs[12], [13], [14]
_LEVEL_BASE = (NDIRECT, NDIRECT + PTRS_PER_BLOCK, NDIRECT + PTRS_PER_BLOCK + PTRS_PER_BLOCK**2)


def _path(lblk: int) -> tuple[int, list[int]]:
    """(slot in addrs, indices inside the indirect levels) for logical block ``lblk``."""
    if lblk < NDIRECT:
        return lblk, []
    for level in (3, 2, 1):
        base = _LEVEL_BASE[level - 1]
        if lblk >= base:
            rel = lblk - base
            if rel >= PTRS_PER_BLOCK**level:
                break
            idx = [(rel // PTRS_PER_BLOCK**k) % PTRS_PER_BLOCK for k in range(level - 1, -1, -1)]
            return NDIRECT + level - 1, idx
    raise ValueError(f"logical block {lblk} beyond the largest file")


class BlockMap:
    def __init__(self, ks: KernelServices, geo: Geometry, alloc: Allocator) -> None:
        self.ks = ks
        self.geo = geo
        self.alloc = alloc

    def check(self, ip: Inode, p: int) -> int:
        if p and not self.geo.data_start <= p < self.geo.nblocks:
            where = "outside the device" if p >= self.geo.nblocks else "inside the metadata area"
            raise corrupt(f"inode {ip.ino}: block pointer {p} {where}")
        return p

    def _ptrs(self, bh: object) -> np.ndarray:
        return bh.data.view("<u4")  # type: ignore[attr-defined]

    # -- lookup ------------------------------------------------------------------

    def lookup(self, ip: Inode, lblk: int) -> int:
        """The physical block of ``lblk``, or 0 for a hole."""
        slot, idx = _path(lblk)
        p = self.check(ip, ip.addrs[slot])
        for i in idx:
            if not p:
                return 0
            with self.ks.bread(p) as bh:
                p = self.check(ip, int(self._ptrs(bh)[i]))
        return p

    def check_array(self, ip: Inode, ptrs: np.ndarray) -> np.ndarray:
        if len(ptrs) <= 16:  # a few: a loop is cheaper than NumPy's calls
            for p in ptrs.tolist():
                self.check(ip, p)
            return ptrs
        used = ptrs[ptrs != 0]
        if len(used) and (used.min() < self.geo.data_start or used.max() >= self.geo.nblocks):
            bad = int(used[(used < self.geo.data_start) | (used >= self.geo.nblocks)][0])
            self.check(ip, bad)
        return ptrs

    def lookup_range(self, ip: Inode, first: int, count: int) -> np.ndarray:
        """Physical blocks of ``first .. first+count-1`` (0 for holes) as an int64
        array, one bread per indirect block rather than one per logical block."""
        out = np.zeros(count, dtype=np.int64)
        lblk, end = first, first + count
        while lblk < end:
            if lblk < NDIRECT:
                n = min(end, NDIRECT) - lblk
                out[lblk - first:lblk - first + n] = ip.addrs[lblk:lblk + n]
                lblk += n
                continue
            slot, idx = _path(lblk)
            n = min(end - lblk, PTRS_PER_BLOCK - idx[-1])  # to the end of the last-level block
            p = self.check(ip, ip.addrs[slot])
            for i in idx[:-1]:
                if not p:
                    break
                with self.ks.bread(p) as bh:
                    p = self.check(ip, int(self._ptrs(bh)[i]))
            if p:
                with self.ks.bread(p) as bh:
                    out[lblk - first:lblk - first + n] = self._ptrs(bh)[idx[-1]:idx[-1] + n]
            lblk += n
        return self.check_array(ip, out)

    # -- allocation --------------------------------------------------------------

    def map_alloc(self, h: Handle, ip: Inode, lblk: int, metadata: bool) -> tuple[int, bool]:
        """(physical block, newly allocated) for ``lblk``, allocating what is missing.

        A new data block is returned unzeroed: the caller fills it (and, for
        metadata, takes create access). Raises ENOSPC via ``None`` from the allocator.
        Uses up to 4 bitmap credits, 3 indirect blocks and the inode's block.
        """
        if lblk >= MAX_FILE_BLOCKS:
            raise ValueError("file too large")
        slot, idx = _path(lblk)
        goal = self.goal(ip)
        p = self.check(ip, ip.addrs[slot])
        if not idx:
            if p:
                return p, False
            p = self.new_block(h, ip, goal)
            ip.addrs[slot] = p
            return p, True
        if not p:
            p = self._new_indirect(h, ip, goal)
            ip.addrs[slot] = p
        for depth, i in enumerate(idx):
            with self.ks.bread(p) as bh:
                q = self.check(ip, int(self._ptrs(bh)[i]))
                if q:
                    p = q
                    continue
                last = depth == len(idx) - 1
                q = self.new_block(h, ip, p) if last else self._new_indirect(h, ip, p)
                h.get_write_access(bh)
                self._ptrs(bh)[i] = q
                h.dirty_metadata(bh)
                if last:
                    return q, True
                p = q
        return p, False

    def map_alloc_leaf(self, h: Handle, ip: Inode, lblk: int, count: int) -> np.ndarray:
        """Physical blocks for ``lblk`` on, allocating holes as runs: at most
        ``count`` of them, stopping at the end of the direct slots or of one
        last-level indirect block. Fewer when the disk is nearly full (NoSpace if
        none). New blocks are returned unwritten: the caller writes them before the
        handle stops (ordered data). Uses up to 9 bitmap credits, 3 new indirect
        blocks, the leaf and the inode's block."""
        if lblk + count > MAX_FILE_BLOCKS:
            raise ValueError("file too large")
        if lblk < NDIRECT:
            n = min(count, NDIRECT - lblk)
            ptrs = np.array(ip.addrs[lblk:lblk + n], dtype=np.int64)
            ptrs = self._fill_holes(h, ip, ptrs, self.goal(ip))
            ip.addrs[lblk:lblk + len(ptrs)] = ptrs.tolist()
            return ptrs
        slot, idx = _path(lblk)
        n = min(count, PTRS_PER_BLOCK - idx[-1])
        p = self.check(ip, ip.addrs[slot])
        if not p:
            p = ip.addrs[slot] = self._new_indirect(h, ip, self.goal(ip))
        for i in idx[:-1]:
            with self.ks.bread(p) as bh:
                q = self.check(ip, int(self._ptrs(bh)[i]))
                if not q:
                    q = self._new_indirect(h, ip, p)
                    h.get_write_access(bh)
                    self._ptrs(bh)[i] = q
                    h.dirty_metadata(bh)
            p = q
        with self.ks.bread(p) as bh:
            leaf = self._ptrs(bh)[idx[-1]:idx[-1] + n]
            ptrs = self.check_array(ip, leaf.astype(np.int64))
            if not ptrs.all():
                h.get_write_access(bh)
                ptrs = self._fill_holes(h, ip, ptrs, p)
                leaf[:len(ptrs)] = ptrs
                h.dirty_metadata(bh)
        return ptrs

    def _fill_holes(self, h: Handle, ip: Inode, ptrs: np.ndarray, goal: int) -> np.ndarray:
        """``ptrs`` with its zeros replaced by new blocks, cut short before the
        first hole the allocator could not fill."""
        holes = np.flatnonzero(ptrs == 0)
        if not len(holes):
            return ptrs
        prev = ptrs[:holes[0]]
        runs = self.alloc.alloc_runs(h, int(prev[-1]) + 1 if len(prev) else goal,
                                     len(holes), max_runs=4)
        got = sum(n for _, n in runs)
        if not got:
            raise NoSpace
        ptrs[holes[:got]] = np.concatenate([np.arange(b, b + n) for b, n in runs])
        ip.blocks += got
        return ptrs if got == len(holes) else ptrs[:holes[got]]

    def goal(self, ip: Inode) -> int:
        return next((a for a in reversed(ip.addrs[:NDIRECT]) if a), 0)

    def new_block(self, h: Handle, ip: Inode, goal: int) -> int:
        b = self.alloc.alloc_block(h, goal)
        if b is None:
            raise NoSpace
        ip.blocks += 1
        return b

    def _new_indirect(self, h: Handle, ip: Inode, goal: int) -> int:
        b = self.new_block(h, ip, goal)
        with self.ks.getblk(b) as bh:
            h.get_create_access(bh)
            bh.data[:] = 0
            h.dirty_metadata(bh)
        return b

    # -- walking and freeing -----------------------------------------------------

    def mapped(self, ip: Inode, first: int = 0) -> Iterator[tuple[int, int]]:
        """(logical, physical) of every mapped data block at or after ``first``,
        in order, skipping holes a whole indirect block at a time."""
        for lblk in range(first, NDIRECT):
            p = self.check(ip, ip.addrs[lblk])
            if p:
                yield lblk, p
        for level in (1, 2, 3):
            root = self.check(ip, ip.addrs[NDIRECT + level - 1])
            base = _LEVEL_BASE[level - 1]
            span = PTRS_PER_BLOCK**level
            if root and first < base + span:
                yield from self._walk(ip, root, level, base, first)

    def _walk(self, ip: Inode, p: int, level: int, base: int, first: int) -> Iterator[tuple[int, int]]:
        with self.ks.bread(p) as bh:
            ptrs = self._ptrs(bh).copy()
        span = PTRS_PER_BLOCK ** (level - 1)
        for i in np.flatnonzero(ptrs).tolist():
            q = self.check(ip, int(ptrs[i]))
            lo = base + i * span
            if lo + span <= first:
                continue
            if level == 1:
                yield lo, q
            else:
                yield from self._walk(ip, q, level - 1, lo, first)

    def indirect_blocks(self, ip: Inode) -> Iterator[int]:
        """Every indirect block of the inode (for fsck and block counts)."""
        for level in (1, 2, 3):
            root = self.check(ip, ip.addrs[NDIRECT + level - 1])
            if root:
                yield from self._indirects(ip, root, level)

    def _indirects(self, ip: Inode, p: int, level: int) -> Iterator[int]:
        yield p
        if level > 1:
            with self.ks.bread(p) as bh:
                ptrs = self._ptrs(bh).copy()
            for q in ptrs[np.flatnonzero(ptrs)].tolist():
                yield from self._indirects(ip, self.check(ip, int(q)), level - 1)

    def unmap(self, h: Handle, ip: Inode, lblk: int, pblk: int, metadata: bool) -> None:
        """Free ``lblk``'s block and every indirect block this leaves empty.

        Up to 4 bitmap credits, 3 indirect blocks, 4 revokes; the caller stores the
        inode afterwards."""
        self.free(h, ip, pblk, metadata)
        slot, idx = _path(lblk)
        if not idx:
            ip.addrs[slot] = 0
            return
        chain = [self.check(ip, ip.addrs[slot])]
        for i in idx[:-1]:
            with self.ks.bread(chain[-1]) as bh:
                chain.append(self.check(ip, int(self._ptrs(bh)[i])))
        for depth in range(len(idx) - 1, -1, -1):
            with self.ks.bread(chain[depth]) as bh:
                h.get_write_access(bh)
                ptrs = self._ptrs(bh)
                ptrs[idx[depth]] = 0
                h.dirty_metadata(bh)
                empty = not ptrs.any()
            if not empty:
                return
            self.free(h, ip, chain[depth], metadata=True)
        ip.addrs[slot] = 0

    def free(self, h: Handle, ip: Inode, b: int, metadata: bool) -> None:
        if metadata:
            h.revoke(b)
        if ip.blocks == 0:
            raise corrupt(f"inode {ip.ino}: block count 0 while it maps block {b}")
        self.alloc.free_block(h, b)
        ip.blocks -= 1


class NoSpace(Exception):
    """The disk is full (the operation turns this into ENOSPC)."""
