"""The inode cache: one ``Inode`` object per inode number in use (xv6's iget, iupdate,
ialloc).

An inode is loaded from its table block the first time anything asks for it. Past
``TARGET`` inodes in memory, idle ones are dropped (``shrink``) — dropped, not freed:
freeing an inode on disk is the file layer's ``reclaim``. Idle means that nothing but
the table refers to the object and that it holds nothing the disk does not: no open
handle, no fsync debt, a name. The kernel's lookups do not keep an inode in memory:
the counts live in one array indexed by inode number (``lookups``), so memory is
bounded by ``TARGET`` inodes however many the kernel holds, and a live upgrade hands
the counts over in one array operation.

``lock`` (the ``xv6.icache`` mutex, a leaf: docs/locking.md) guards the table, the
lookup counts and every inode's ``nopen``; the other fields are the inode's own
lock's. A live upgrade's successor gives each inode, as it is loaded, what the
predecessor knew of it (``inherited``, see _upgrade.py).
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable

import numpy as np

from bento_user.api import ROOT_INODE, Attr, FsError
from bento_user.ks_emul import Handle, KernelServices

from . import _upgrade as upgrade_state
from ._alloc import Allocator
from ._format import BLOCK_SIZE, Geometry
from ._inode import Inode, inode_records

TARGET = 50_000  # idle inodes beyond this are dropped from memory
# references to an inode in the table that no one else holds: the table's, shrink's
# loop variable, and getrefcount's own argument
_ONLY_THE_TABLE = 3


class InodeCache:
    """The in-memory inodes of one mount.

    Args:
        is_orphan: whether an inode number is on the orphan list (a loaded inode
            carries the answer as ``Inode.orphan``).
    """

    def __init__(self, ks: KernelServices, geo: Geometry, alloc: Allocator,
                 is_orphan: Callable[[int], bool]) -> None:
        self.ks, self.geo, self.alloc, self.is_orphan = ks, geo, alloc, is_orphan
        self.lock = ks.mutex("xv6.icache")
        self.table: dict[int, Inode] = {}
        self.lookups = np.zeros(geo.ninodes, dtype=np.int64)  # the kernel's, per inode
        # inodes that may owe fsync something (``dirty_data``, ``unflushed``): a live
        # upgrade hands these over without walking every inode in memory
        self.indebted: set[int] = set()
        self.hidden_ino = 0  # a file with no name, kept for its owner (provenance's log)
        self.inherited = upgrade_state.Inherited()  # a predecessor's, not yet taken up
        self._limit = TARGET

    def iget(self, ino: int, hidden_ok: bool = False) -> Inode:
        """The in-memory inode (loaded on first use). ESTALE for a free inode, and
        for the hidden one unless its owner asks (``hidden_ok``)."""
        if ino == self.hidden_ino and ino and not hidden_ok:
            raise FsError(errno.ESTALE, f"inode {ino} is hidden")
        with self.lock:
            ip = self.table.get(ino)
            if ip is not None:
                return ip
        if not 0 < ino < self.geo.ninodes:
            raise FsError(errno.ESTALE, f"inode {ino} does not exist")
        ip = Inode(ino, self.ks.rwsem("xv6.inode"))
        block, slot = self.geo.inode_location(ino)
        with self.ks.bread(block) as bh:
            ip.load(bh.data, slot, self.geo.nblocks)
        if ip.mode == 0:
            raise FsError(errno.ESTALE, f"inode {ino} is free")
        with self.lock:
            cached = self.table.get(ino)
            if cached is not None:
                return cached
            if self.inherited:
                self.take_inherited(ip)
            ip.orphan = self.is_orphan(ino)
            self.table[ino] = ip
            return ip

    def iupdate(self, h: Handle, ip: Inode) -> None:
        """Write the inode's fields into its table block, inside handle ``h``."""
        block, slot = self.geo.inode_location(ip.ino)
        with self.ks.bread(block) as bh:
            h.get_write_access(bh)
            ip.store(bh.data, slot)
            h.dirty_metadata(bh)

    def ialloc(self, h: Handle, mode: int, uid: int, gid: int, rdev: int = 0) -> Inode:
        """A new inode, allocated in ``h``: one link, no lookups, times now, the
        slot's generation plus one (an NFS-style handle to the old one goes stale).
        Not yet in the cache (``insert`` it once it is named) nor on disk
        (``iupdate``). ENOSPC when the table is full."""
        ino = self.alloc.alloc_inode(h)
        if ino is None:
            raise FsError(errno.ENOSPC, "no free inodes")
        block, slot = self.geo.inode_location(ino)
        with self.ks.bread(block) as bh:
            generation = int(inode_records(bh.data)[slot]["generation"]) + 1
        ip = Inode(ino, self.ks.rwsem("xv6.inode"))
        ip.mode, ip.uid, ip.gid, ip.rdev, ip.nlink = mode, uid, gid, rdev, 1
        ip.atime_ns = ip.mtime_ns = ip.ctime_ns = ip.crtime_ns = self.ks.now_ns()
        ip.generation = generation & 0xFFFFFFFF
        return ip

    def insert(self, ip: Inode, lookups: int = 0) -> None:
        with self.lock:
            self.table[ip.ino] = ip
            self.lookups[ip.ino] = lookups

    def forget(self, ino: int, n: int) -> bool:
        """Take ``n`` of the kernel's lookups away; whether none is left."""
        with self.lock:
            left = max(0, int(self.lookups[ino]) - n)
            self.lookups[ino] = left
            return left == 0

    def drop(self, ino: int) -> None:
        with self.lock:
            self.table.pop(ino, None)
            self.indebted.discard(ino)

    def counted(self, ip: Inode) -> Attr:
        """Count one lookup and return the attributes (the entry reply)."""
        with self.lock:
            self.lookups[ip.ino] += 1
        return ip.attr(BLOCK_SIZE)

    def unused(self, ip: Inode) -> bool:
        """No names, no lookups, no handles: the inode may be freed."""
        with self.lock:
            return ip.nlink == 0 and self.lookups[ip.ino] == 0 and ip.nopen == 0

    def take_inherited(self, ip: Inode) -> None:
        """Give a newly loaded inode what a predecessor knew of it. Caller holds
        ``lock``."""
        old = self.inherited
        ip.nopen += old.nopen.pop(ip.ino, 0)
        dirty, unflushed = old.debts.pop(ip.ino, ((), False))
        for pblk in dirty:
            ip.owe(pblk)
        if unflushed and not ip.unflushed:
            ip.unflushed = self.ks.device.flush_ticket()  # its ticket was the old mount's
        if ip.dirty_data or ip.unflushed:
            self.indebted.add(ip.ino)

    def shrink(self) -> None:
        """Drop idle inodes past the target, oldest loaded first. Under ``lock``,
        which ``iget`` hands inodes out under, an object only the table refers to
        cannot be in any caller's hands (CPython's reference count says so exactly);
        a later ``iget`` loads the inode again from its table block, which every
        change has been stored in."""
        with self.lock:
            if len(self.table) < self._limit:
                return
            extra, device = len(self.table) - TARGET, self.ks.device
            idle: list[int] = []
            for ino in list(self.table):
                if len(idle) == extra:
                    break
                ip = self.table[ino]
                if (ip.nopen == 0 and ip.nlink and not ip.orphan and not ip.dirty_data
                        and not ip.owes_flush(device) and ino not in (self.hidden_ino, ROOT_INODE)
                        and sys.getrefcount(ip) <= _ONLY_THE_TABLE):
                    idle.append(ino)
            for ino in idle:
                del self.table[ino]
                self.indebted.discard(ino)  # idle: it owes nothing (any more)
            # the scan is linear: run it again only once the cache has grown by half
            self._limit = max(TARGET, len(self.table) * 3 // 2)
