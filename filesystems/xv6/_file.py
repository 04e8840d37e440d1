"""The file layer: a file's contents read, written, shrunk, synced and freed (xv6's
readi, writei, itrunc, and iput's freeing half).

Callers hold the inode's lock (for reading to read, for writing otherwise) or own an
inode nothing else can reach; this layer starts the journal handles. A write moves
its data in handles of its own, sized for data (``WRITE_CREDITS``), except a small
one, which shares the caller's handle (``write_small``): newly allocated
blocks are *ordered data* (on disk before the commit that points at them), blocks
overwritten in place are *owed* to the next fsync (``Inode.owe``). Large runs of whole
blocks skip the buffer cache (``_data.py``). Shrinking and freeing put the inode on
the orphan list first, so a crash half-way is finished by the next mount.
"""

from __future__ import annotations

import itertools
import logging
import stat
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np

from bento_user.api import FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE
from bento_user.ks_emul import Handle, Journal, KernelServices

from . import _xattr as xattr
from ._alloc import Allocator
from ._bmap import BlockMap, NoSpace
from ._data import FileData, held_as_metadata
from ._format import BLOCK_SIZE, NDIRECT
from ._icache import InodeCache
from ._inode import Inode
from ._orphans import OrphanList

log = logging.getLogger(__name__)

OP_CREDITS = 48     # the most blocks one namespace operation touches
WRITE_CREDITS = 64  # one handle of a write: data blocks are not logged
# Writes of at least this many whole blocks go straight to the device (_data.py);
# smaller ones through the buffer cache, whose write-back merges them later instead
# of paying a synchronous device round trip each.
DIRECT_MIN_BLOCKS = 16
# Writes below the direct ones take one handle for data and inode (``write_small``):
# at most 16 blocks, their bitmap blocks, the few indirect blocks they share and the
# inode's: 23 credits at worst, inside OP_CREDITS.
SMALL_WRITE = (DIRECT_MIN_BLOCKS - 1) * BLOCK_SIZE
HOLE_SCAN_BLOCKS = 4096       # SEEK_HOLE reads the block map 16 MiB of file at a time
ZERO_CHUNK = 64 * 1024 * 1024  # fallocate zeroes in steps of this much memory

Transaction = Callable[[int], AbstractContextManager[Handle]]


class FileIO:
    """Contents of files (and the blocks of directories and symlinks when freed).

    Args:
        tx: starts the handles of an operation's metadata changes (``Xv6.transaction``).
        credits: the most blocks one handle may ask for.
    """

    def __init__(self, ks: KernelServices, journal: Journal, alloc: Allocator,
                 bmap: BlockMap, icache: InodeCache, orphans: OrphanList,
                 tx: Transaction, credits: int) -> None:
        self.ks, self.journal, self.alloc, self.bmap = ks, journal, alloc, bmap
        self.icache, self.orphans, self.tx, self.credits = icache, orphans, tx, credits
        self.data = FileData(ks)
        self.sync_lock = ks.mutex("xv6.sync")

    # -- reading ---------------------------------------------------------------------

    def read(self, ip: Inode, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``; short at the end of the file. Holes
        read as zeros."""
        end = min(ip.size, offset + size)
        if offset >= end:
            return b""
        first, last = offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE
        pblks = self.bmap.lookup_range(ip, first, last - first + 1)
        return self.data.read(pblks, offset - first * BLOCK_SIZE, end - offset)

    def read_all(self, ip: Inode) -> bytes:
        """The whole file, 4 MiB at a time (the hidden log can be large)."""
        step = 1024 * BLOCK_SIZE
        return b"".join(self.read(ip, pos, step) for pos in range(0, ip.size, step))

    # -- writing ---------------------------------------------------------------------

    def write(self, ip: Inode, offset: int, src: np.ndarray, zero_only: bool = False) -> int:
        """Copy ``src`` to the file at ``offset`` (or, with ``zero_only``, allocate
        zeroed blocks in holes), as many handles as it takes. Returns bytes done:
        short only when the disk is full. The size is the caller's to set."""
        pos, end = offset, offset + len(src)
        retried = False
        while pos < end:
            # 64 credits: asking for the transaction's whole capacity would commit
            # the running transaction on every write. Data handles carry nothing of
            # the operation's own (its visible effect is the caller's handle).
            with self.journal.start(min(WRITE_CREDITS, self.credits)) as h:
                try:
                    while pos < end and h.credits > 16:
                        lblk, off = divmod(pos, BLOCK_SIZE)
                        whole = (end - pos) // BLOCK_SIZE if off == 0 else 0
                        if whole >= DIRECT_MIN_BLOCKS and stat.S_ISREG(ip.mode):
                            n = self._write_run(h, ip, lblk, whole, src[pos - offset:],
                                                zero_only)
                        else:
                            n = min(BLOCK_SIZE - off, end - pos)
                            self._write_block(h, ip, lblk, off,
                                              src[pos - offset:pos - offset + n], zero_only)
                        pos += n
                        retried = False
                except NoSpace:
                    if retried or not self.alloc.pending_blocks:
                        self.icache.iupdate(h, ip)
                        return pos - offset
                    retried = True  # freed blocks wait for a commit: make one, try again
                self.icache.iupdate(h, ip)
            if retried:
                self.journal.force_commit()
        return pos - offset

    def write_small(self, h: Handle, ip: Inode, offset: int, src: np.ndarray) -> None:
        """A write of at most ``SMALL_WRITE`` bytes through the cache, inside the
        caller's handle: the data's blocks and the inode's new size and times then
        take one handle and one inode update, not two. NoSpace if the disk filled,
        with what was allocated stored (the general path waits for freed blocks)."""
        pos, end = offset, offset + len(src)
        try:
            while pos < end:
                lblk, off = divmod(pos, BLOCK_SIZE)
                n = min(BLOCK_SIZE - off, end - pos)
                self._write_block(h, ip, lblk, off, src[pos - offset:pos - offset + n], False)
                pos += n
        except NoSpace:
            self.icache.iupdate(h, ip)
            raise

    def _write_run(self, h: Handle, ip: Inode, lblk: int, count: int, src: np.ndarray,
                   zero_only: bool) -> int:
        """Whole blocks from ``lblk``, straight to the device (see _data.py); with
        ``zero_only``, zero just the blocks that were holes. Returns bytes done."""
        if zero_only:
            old = self.bmap.lookup_range(ip, lblk, min(count, 1024))
        pblks = self.bmap.map_alloc_leaf(h, ip, lblk, count)
        n = len(pblks)
        if zero_only:
            new = old[:n] == 0
            pblks, data = pblks[new], np.zeros(int(new.sum()) * BLOCK_SIZE, dtype=np.uint8)
        else:
            data = src[:n * BLOCK_SIZE]
        if len(pblks):
            self.data.write(pblks, data, ip.ino)  # before the handle's commit: ordered data
            ip.unflushed = self.ks.device.flush_ticket()
            self.icache.indebted.add(ip.ino)
        return n * BLOCK_SIZE

    def _write_block(self, h: Handle, ip: Inode, lblk: int, off: int, chunk: np.ndarray,
                     zero_only: bool) -> None:
        if zero_only:
            if self.bmap.lookup(ip, lblk):
                return
        pblk, new = self.bmap.map_alloc(h, ip, lblk, metadata=False)
        whole = off == 0 and len(chunk) == BLOCK_SIZE
        bh = self.ks.getblk(pblk) if (new or whole) else self.ks.bread(pblk)
        with bh:
            if bh.jtrans is not None:
                raise held_as_metadata(pblk, ip.ino)
            if new and (zero_only or not whole):  # a fresh block holds what it last held
                bh.data[:] = 0
            if not zero_only:
                bh.data[off:off + len(chunk)] = chunk
            bh.mark_dirty()
            if new:
                h.ordered_data(bh)  # on disk before the commit that points at it
            else:
                ip.owe(pblk)
                self.icache.indebted.add(ip.ino)

    # -- shrinking and freeing -------------------------------------------------------

    def truncate(self, ip: Inode, size: int) -> None:
        """Set the size; shrinking frees the blocks past the end. Caller holds ip.lock
        for writing (or the inode is private to the caller)."""
        keep = -(-size // BLOCK_SIZE)
        shrink = size < ip.size or any(True for _ in self.bmap.mapped(ip, keep))
        with self.tx(OP_CREDITS) as h:
            if shrink:
                self.orphans.add(h, ip)  # a crash mid-way: mount finishes the truncate
                self.zero_tail(h, ip, size)
            ip.size = size
            self.icache.iupdate(h, ip)
        if shrink:
            self.free_blocks(ip, keep)
            with self.tx(OP_CREDITS) as h:
                if ip.nlink:
                    self.orphans.remove(h, ip)

    def zero_tail(self, h: Handle, ip: Inode, size: int) -> None:
        """Zero the rest of the last kept block, so a later extension reads zeros."""
        off = size % BLOCK_SIZE
        if not off or not stat.S_ISREG(ip.mode):
            return
        p = self.bmap.lookup(ip, size // BLOCK_SIZE)
        if p:
            with self.ks.bread(p) as bh:
                bh.data[off:] = 0
                bh.mark_dirty()
                if bh.jtrans is None:
                    h.ordered_data(bh)

    def free_blocks(self, ip: Inode, first: int, stop: int | None = None) -> None:
        """Free every block from logical block ``first`` on (to ``stop``), last
        first, in as many handles as it takes (the inode is on the orphan list
        meanwhile, if needed)."""
        victims = list(itertools.takewhile(lambda m: stop is None or m[0] < stop,
                                           self.bmap.mapped(ip, first)))
        while victims:
            with self.tx(self.credits) as h:
                self._unmap(h, ip, victims)
                self.icache.iupdate(h, ip)

    def _unmap(self, h: Handle, ip: Inode, victims: list[tuple[int, int]]) -> None:
        """Free ``victims`` ((logical, physical) in order) last first, as many as
        ``h``'s credits allow; the caller stores the inode."""
        metadata = not stat.S_ISREG(ip.mode)
        while victims and h.credits > 16:
            lblk, pblk = victims.pop()
            self.bmap.unmap(h, ip, lblk, pblk, metadata)
            ip.forgive(pblk)

    def reclaim(self, ip: Inode) -> None:
        """Free an inode with no names, lookups or handles: its blocks, then itself.
        A file of direct blocks only (most small files) goes in one handle, not two:
        each of its blocks costs a bitmap block and a revoke at most."""
        with ip.lock.write():
            direct: list[tuple[int, int]] = []
            if any(ip.addrs[NDIRECT:]):
                self.free_blocks(ip, 0)
            else:
                direct = list(self.bmap.mapped(ip))
            credits = OP_CREDITS + 2 * len(direct) + xattr.credits_for(self.ks, self.bmap, ip, b"")
            with self.tx(credits) as h:
                self._unmap(h, ip, direct)  # all of them: the credits were counted
                xattr.save(self.ks, self.bmap, h, ip, {})
                self.orphans.remove(h, ip)
                generation = ip.generation
                for f in ("mode", "uid", "gid", "size", "blocks", "flags", "rdev"):
                    setattr(ip, f, 0)
                ip.generation = generation
                ip.addrs = [0] * len(ip.addrs)
                self.icache.iupdate(h, ip)
                self.alloc.free_inode(h, ip.ino)
            self.icache.drop(ip.ino)

    def recover_orphans(self) -> None:
        """Mount: finish what a crash interrupted — frees for unlinked inodes,
        truncates for the rest — following the on-disk list."""
        chain = self.orphans.load()
        for ip in chain:
            if ip.nlink == 0:
                self.reclaim(ip)
            else:
                self.truncate(ip, ip.size)
        if chain:
            log.info("xv6: reclaimed %d orphan inodes", len(chain))

    # -- holes and preallocation -----------------------------------------------------

    def seek_data(self, ip: Inode, offset: int) -> int | None:
        """The first offset at or after ``offset`` in a mapped block and below the
        size, or None. Preallocated blocks are data (xv6 has no unwritten extents)."""
        for lblk, _ in self.bmap.mapped(ip, offset // BLOCK_SIZE):
            pos = max(offset, lblk * BLOCK_SIZE)
            return pos if pos < ip.size else None
        return None

    def seek_hole(self, ip: Inode, offset: int) -> int:
        """The first offset at or after ``offset`` in an unmapped block, or the size:
        block maps read a chunk at a time, holes found by NumPy."""
        lblk, nblocks = offset // BLOCK_SIZE, -(-ip.size // BLOCK_SIZE)
        while lblk < nblocks:
            count = min(HOLE_SCAN_BLOCKS, nblocks - lblk)
            holes = np.flatnonzero(self.bmap.lookup_range(ip, lblk, count) == 0)
            if holes.size:
                return min(ip.size, max(offset, (lblk + int(holes[0])) * BLOCK_SIZE))
            lblk += count
        return ip.size

    def fallocate(self, ip: Inode, kind: int, offset: int, end: int, inside: int) -> int:
        """fallocate's work for ``kind`` (0, PUNCH_HOLE or ZERO_RANGE) over ``offset ..
        end``, of which ``inside`` bounds what is allocated (the size, with
        KEEP_SIZE). Returns the end of what was done: short when the disk fills."""
        if kind == FALLOC_FL_PUNCH_HOLE:
            self.punch(ip, offset, end)
            return inside
        if kind == FALLOC_FL_ZERO_RANGE:
            return self.zero_range(ip, offset, inside)
        return self.allocate(ip, offset, inside)

    def allocate(self, ip: Inode, offset: int, end: int) -> int:
        """Map zeroed blocks into the holes of ``offset .. end`` (whole blocks; data
        already there stays). Returns the end of what was done: short when the disk
        fills."""
        stop = -(-end // BLOCK_SIZE) * BLOCK_SIZE
        return min(end, self.zero_range(ip, offset // BLOCK_SIZE * BLOCK_SIZE, stop,
                                        zero_only=True))

    def zero_range(self, ip: Inode, offset: int, end: int, zero_only: bool = False) -> int:
        """Zeros written over ``offset .. end``, allocating holes on the way (with
        ``zero_only``, into the holes only). Returns the end of what was done: short
        when the disk fills."""
        for pos in range(offset, end, ZERO_CHUNK):
            n = min(ZERO_CHUNK, end - pos)
            done = self.write(ip, pos, np.zeros(n, dtype=np.uint8), zero_only)
            if done < n:
                return pos + done
        return end

    def punch(self, ip: Inode, offset: int, end: int) -> None:
        """Free the whole blocks of ``offset .. end`` and zero its partial ends where
        they are mapped. Past the size every byte is free to go: the last block's
        tail is already zero (``zero_tail``), so it may be freed whole."""
        if end >= ip.size:
            end = -(-ip.size // BLOCK_SIZE) * BLOCK_SIZE
        if offset >= end:
            return
        first, stop = -(-offset // BLOCK_SIZE), end // BLOCK_SIZE
        edges = [(offset, min(end, first * BLOCK_SIZE))]
        if stop >= first:
            edges.append((stop * BLOCK_SIZE, end))
        for lo, hi in edges:
            if lo < hi and self.bmap.lookup(ip, lo // BLOCK_SIZE):
                self.write(ip, lo, np.zeros(hi - lo, dtype=np.uint8))
        if stop > first:
            self.free_blocks(ip, first, stop)

    # -- durability ------------------------------------------------------------------

    def sync(self, ip: Inode) -> None:
        """Write back the file's overwritten blocks, commit, flush. A block may have
        left the cache already (written home by the background writer or to make
        room, without a flush): it still owes a flush, so ``owed`` counts every
        block overwritten since the last fsync, cached or not. What it owes is the
        inode's state: taken under its lock held for writing. One sync at a time
        (``sync_lock``, taken with nothing else held): a second fsync of a file must
        not return while the first still writes blocks it took."""
        with self.sync_lock:
            with ip.lock.write():
                blocks = ip.take_owed()
                unflushed = ip.unflushed
                dirty = [bh for b in blocks if (bh := self.ks.cache.cached(b)) is not None]
                ip.unflushed = 0
                self.icache.indebted.discard(ip.ino)
            self.ks.cache.write_and_wait(dirty)
            # every block it owes is on the device now: the first flush begun from
            # here on makes them durable, and the commit's, if it commits, is one
            ticket = self.ks.device.flush_ticket() if blocks else unflushed
            self.journal.force_commit()
            if ticket and not self.ks.device.durable(ticket):
                self.ks.device.flush()
