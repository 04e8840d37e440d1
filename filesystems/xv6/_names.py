"""The name layer: inodes given names, names taken away, names moved (xv6's namei,
dirlink and the link-count half of sys_link/sys_unlink).

Below it, ``_dir.py`` reads and writes directory blocks; here, a name's inode and
its link count change together, in the caller's journal handle: a new inode is
allocated and named in one handle, a last name taken puts the inode on the orphan
list in the same handle, and a rename's entries, link counts and ``..`` move in one.
Callers hold the namespace lock for writing and the inodes' locks (docs/locking.md)
and have checked permissions; this layer checks only what needs the directories'
contents (a directory moved under itself).
"""

from __future__ import annotations

import errno
import stat

import numpy as np

from bento_user.api import FsError, corrupt
from bento_user.ks_emul import Handle, KernelServices

from ._bmap import BlockMap, NoSpace
from ._dir import Directories
from ._format import BLOCK_SIZE, NAME_MAX, ROOT_INODE, kind_code
from ._icache import InodeCache
from ._inode import Inode, touch
from ._orphans import OrphanList


def check_name(name: bytes) -> None:
    """A name a new entry may have: ENAMETOOLONG, EINVAL otherwise."""
    if len(name) > NAME_MAX:
        raise FsError(errno.ENAMETOOLONG)
    if not name or b"/" in name or b"\0" in name:
        raise FsError(errno.EINVAL, f"invalid file name {name!r}")


class Names:
    def __init__(self, ks: KernelServices, dirs: Directories, bmap: BlockMap,
                 icache: InodeCache, orphans: OrphanList) -> None:
        self.ks, self.dirs, self.bmap = ks, dirs, bmap
        self.icache, self.orphans = icache, orphans

    def child(self, dp: Inode, name: bytes) -> Inode | None:
        """The inode ``name`` names in ``dp``, if any."""
        hit = self.dirs.lookup(dp, name)
        return None if hit is None else self.icache.iget(hit[0])

    def is_ancestor(self, a: Inode, d: Inode) -> bool:
        """Is directory ``a`` ``d`` or above it? Follows '..' with a bound."""
        ino = d.ino
        for _ in range(self.icache.geo.ninodes):
            if ino == a.ino:
                return True
            if ino == ROOT_INODE:
                return False
            hit = self.dirs.lookup(self.icache.iget(ino), b"..")
            if hit is None:
                raise corrupt(f"directory {ino} has no '..' entry")
            ino = hit[0]
        raise corrupt(f"directory {d.ino}: '..' entries form a loop")

    # -- new names -------------------------------------------------------------------

    def new_inode(self, h: Handle, dp: Inode, name: bytes, mode: int, uid: int, gid: int,
                  rdev: int, target: bytes | None) -> Inode:
        """A new inode of any kind named ``name`` in ``dp``, counted once (the
        entry reply's lookup). A directory gets its '.' and '..', a symlink its
        ``target``. ENOSPC leaves nothing allocated."""
        ip = self.icache.ialloc(h, mode, uid, gid, rdev)
        try:
            if stat.S_ISDIR(mode):
                self._fill_block(h, ip, self.dirs.init_block(ip.ino, dp.ino, kind_code(mode)))
                ip.size, ip.nlink = BLOCK_SIZE, 2
            elif target is not None:
                self._fill_block(h, ip, target.ljust(BLOCK_SIZE, b"\0"))
                ip.size = len(target)
            self.dirs.add(h, dp, name, ip.ino, kind_code(mode))
        except NoSpace:
            for lblk, pblk in list(self.bmap.mapped(ip)):
                self.bmap.unmap(h, ip, lblk, pblk, metadata=True)
            self.icache.alloc.free_inode(h, ip.ino)
            self.icache.iupdate(h, dp)
            raise FsError(errno.ENOSPC) from None
        if stat.S_ISDIR(mode):
            dp.nlink += 1
        touch(self.ks.now_ns(), dp)
        self.icache.iupdate(h, ip)
        self.icache.iupdate(h, dp)
        self.icache.insert(ip, lookups=1)
        return ip

    def _fill_block(self, h: Handle, ip: Inode, content: bytes) -> None:
        """Logical block 0 of a new directory or symlink, journaled."""
        pblk, _ = self.bmap.map_alloc(h, ip, 0, metadata=True)
        with self.ks.getblk(pblk) as bh:
            h.get_create_access(bh)
            bh.data[:] = np.frombuffer(content, np.uint8)
            h.dirty_metadata(bh)

    def link(self, h: Handle, dp: Inode, name: bytes, ip: Inode) -> None:
        """One more name for ``ip``."""
        try:
            self.dirs.add(h, dp, name, ip.ino, kind_code(ip.mode))
        except NoSpace:
            self.icache.iupdate(h, dp)
            raise FsError(errno.ENOSPC) from None
        ip.nlink += 1
        now = self.ks.now_ns()
        touch(now, ip, mtime=False)
        touch(now, dp)
        self.icache.iupdate(h, ip)
        self.icache.iupdate(h, dp)

    # -- names taken away and moved --------------------------------------------------

    def remove(self, h: Handle, dp: Inode, name: bytes, ip: Inode) -> None:
        """Remove the entry ``name`` (naming ``ip``) from ``dp``."""
        self.dirs.remove(h, dp, name)
        self._drop_link(h, dp, ip)
        touch(self.ks.now_ns(), dp)
        self.icache.iupdate(h, dp)

    def _drop_link(self, h: Handle, dp: Inode, ip: Inode) -> None:
        """``ip`` lost its name in ``dp``: count it, orphan it when no names remain.
        A count read from disk that is already too low is corruption, not a number
        to take below zero."""
        if ip.is_dir:
            _check_subdir_count(dp)
            ip.nlink = 0
            dp.nlink -= 1  # its '..'
        else:
            if ip.nlink == 0:
                raise corrupt(f"inode {ip.ino}: link count 0 while {dp.ino} names it")
            ip.nlink -= 1
        touch(self.ks.now_ns(), ip, mtime=False)
        if ip.nlink == 0:
            self.orphans.add(h, ip)
        self.icache.iupdate(h, ip)

    def rename(self, h: Handle, sdp: Inode, name: bytes, ddp: Inode, new_name: bytes,
               sip: Inode, dip: Inode | None, exchange: bool) -> Inode | None:
        """Move ``name`` (``sip``) to ``new_name`` (``dip`` if it exists), or swap
        the two. Returns the inode that lost its name (to be reclaimed when unused)."""
        now = self.ks.now_ns()
        if exchange:
            assert dip is not None
            self.dirs.retarget(h, sdp, name, dip.ino, kind_code(dip.mode))
            self.dirs.retarget(h, ddp, new_name, sip.ino, kind_code(sip.mode))
            for child, old, new in ((sip, sdp, ddp), (dip, ddp, sdp)):
                self._reparent(h, child, old, new)
            touch(now, sip, dip, mtime=False)
            self.icache.iupdate(h, dip)
            victim = None
        else:
            if dip is None:
                try:
                    self.dirs.add(h, ddp, new_name, sip.ino, kind_code(sip.mode))
                except NoSpace:
                    self.icache.iupdate(h, ddp)
                    raise FsError(errno.ENOSPC) from None
            else:
                self.dirs.retarget(h, ddp, new_name, sip.ino, kind_code(sip.mode))
                self._drop_link(h, ddp, dip)
            self.dirs.remove(h, sdp, name)
            self._reparent(h, sip, sdp, ddp)
            touch(now, sip, mtime=False)
            victim = dip
        touch(now, sdp, ddp)
        self.icache.iupdate(h, sip)
        self.icache.iupdate(h, sdp)
        if ddp is not sdp:
            self.icache.iupdate(h, ddp)
        return victim

    def _reparent(self, h: Handle, child: Inode, old: Inode, new: Inode) -> None:
        """A directory moved from ``old`` to ``new``: its '..' and both link counts."""
        if child.is_dir and old is not new:
            _check_subdir_count(old)
            self.dirs.retarget(h, child, b"..", new.ino, kind_code(new.mode))
            old.nlink -= 1
            new.nlink += 1


def _check_subdir_count(dp: Inode) -> None:
    """``dp`` is losing a subdirectory, so it counts at least 3 links ('.', its name,
    the subdirectory's '..')."""
    if dp.nlink < 3:
        raise corrupt(f"directory {dp.ino}: link count {dp.nlink} with a subdirectory")
