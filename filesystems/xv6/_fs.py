"""The xv6 file system's operations: the ``Filesystem`` API over the xv6 v2 format.

Layers inside (cf. xv6's fs.c): ``_format`` (disk layout) → ``_alloc`` (bitmaps) →
``_bmap`` (block mapping) → ``_dir`` (directories) → this file (inodes, names,
files, permissions via ``_perm``, the orphan list, the operations).

Locks, in the order they are taken (docs/locking.md has the services' part):

0. ``sync_lock`` — one fsync at a time, taken with nothing else held: a second
   fsync of a file must not return while the first still writes blocks it took.
1. ``ns`` — the namespace rw-semaphore. Operations that change names (create,
   mkdir, mknod, symlink, link, unlink, rmdir, rename) hold it for writing, so at
   most one runs at a time; lookup, readdir and opendir hold it for reading.
2. inode locks (``Inode.lock``), several only under ``ns`` held for writing and
   then in increasing inode order. Reads of a file share its lock, writes,
   truncates and attribute changes hold it exclusively.
3. a journal handle (``journal.start``) — never started before the locks above.
4. leaf mutexes, taken inside handles and never around one: ``alloc.lock``,
   ``orphan_lock``, ``icache_lock``.

Inode lifetime: an inode lives on disk while it has names (nlink); in memory
while the kernel holds lookups (nlookup) or handles are open (nopen). When all
three are zero it is reclaimed. Between its last unlink and its reclaim it sits on
the on-disk orphan list, so a crash cannot leak it: mount reclaims the list.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bento_user.api import (
    FALLOC_FL_KEEP_SIZE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    XATTR_CREATE,
    XATTR_REPLACE,
    Attr,
    DirEntry,
    FileHandle,
    Filesystem,
    FsError,
    InodeNo,
    Request,
    SetAttr,
    StatFs,
    UpgradeState,
    corrupt,
)
from bento_user.blockdev import BlockDevice
from bento_user.ks_emul import Handle, Journal, KernelServices

from . import _perm as perm
from . import _upgrade as upgrade_state
from . import _xattr as xattr
from ._alloc import Allocator
from ._bmap import BlockMap, NoSpace
from ._data import FileData
from ._dir import Directories
from ._format import (
    BLOCK_SIZE,
    JOURNAL_START,
    MAX_FILE_SIZE,
    NAME_MAX,
    ROOT_INODE,
    STATE_CLEAN,
    STATE_MOUNTED,
    SUPERBLOCK,
    SYMLINK_MAX,
    Geometry,
    kind_code,
    read_geometry,
    seal_superblock,
    superblock_view,
)
from ._inode import Inode, inode_records

log = logging.getLogger(__name__)

LINK_MAX = 65000
OP_CREDITS = 48          # the most blocks one namespace operation touches
WRITE_CREDITS = 64       # one handle of a write: data blocks are not logged
# Writes of at least this many whole blocks go straight to the device (_data.py);
# smaller ones through the buffer cache, whose write-back merges them later instead
# of paying a synchronous device round trip each.
DIRECT_MIN_BLOCKS = 16
ICACHE_TARGET = 50_000   # unreferenced inodes beyond this are dropped from memory
_ACCMODE = os.O_RDONLY | os.O_WRONLY | os.O_RDWR


@dataclass
class OpenFile:
    ip: Inode
    flags: int
    req: Request


class Xv6(Filesystem):
    """xv6 grown up: see FORMAT.md for the disk, the module doc for the locks.

    Args:
        read_only: refuse every change with EROFS (and never write the device).
        atime: "relatime" (Linux's default), "strictatime" or "noatime".
    """

    name = "xv6"
    ordered_metadata = True  # one journal: every fsync-family call commits it whole

    def __init__(self, *, read_only: bool = False, atime: str = "relatime") -> None:
        if atime not in ("relatime", "strictatime", "noatime"):
            raise ValueError(f"unknown atime mode {atime!r}")
        self.read_only = read_only
        self.atime = atime

    # ---------------------------------------------------------------- tools

    @classmethod
    def mkfs(cls, device: BlockDevice) -> None:
        from .mkfs import mkfs
        mkfs(device)

    @classmethod
    def fsck(cls, device: BlockDevice) -> list[str]:
        from .fsck import fsck
        return fsck(device).problems

    @classmethod
    def block_kinds(cls, device: BlockDevice, blocks: Sequence[int]) -> dict[int, str]:
        from .fsck import block_kinds
        return block_kinds(device, blocks)

    # ---------------------------------------------------------------- life cycle

    def init(self, ks: KernelServices) -> None:
        mount_count = self._attach(ks)
        if not self.read_only:
            self._reclaim_orphans()
            with self._tx() as h:
                self._update_sb(h, state=STATE_MOUNTED, mount_count=mount_count + 1,
                                mount_time_ns=ks.now_ns())

    def _attach(self, ks: KernelServices, alloc: dict[str, Any] | None = None) -> int:
        """Everything ``init`` and ``from_upgrade`` share: read the superblock, open
        (or find) the journal, build the in-memory structures (``alloc``: a
        predecessor's allocator). Changes nothing on disk except by journal
        recovery. Returns the mount count."""
        self.ks = ks
        self.read_only = self.read_only or ks.device.read_only
        what = ks.device.name
        with ks.bread(SUPERBLOCK) as bh:
            geo = read_geometry(bh.data, ks.device.nblocks, what)
            uuid = bytes(superblock_view(bh.data)["uuid"])
        self.uuid = uuid
        journal, report = ks.open_journal(JOURNAL_START, geo.journal_blocks, uuid)
        self.journal: Journal = journal
        with ks.bread(SUPERBLOCK) as bh:  # replay may have rewritten it: read it now
            self.geo: Geometry = read_geometry(bh.data, ks.device.nblocks, what)
            sb = superblock_view(bh.data)
            mount_count = int(sb["mount_count"])
            # a file with no name, kept for its owner (provenance's log); unreachable
            self.hidden_ino = int(sb["hidden_ino"])
        self.credits = min(journal.max_transaction, 256)
        if journal.max_transaction < OP_CREDITS:
            raise FsError(errno.EINVAL, f"{what}: the journal is too small for xv6 operations "
                          f"({journal.max_transaction} blocks per transaction, {OP_CREDITS} needed)")
        self.alloc = Allocator(ks, self.geo, alloc)
        self.bmap = BlockMap(ks, self.geo, self.alloc)
        self.data = FileData(ks)
        self.dirs = Directories(ks, self.bmap, self.geo.ninodes)
        self.sync_lock = ks.mutex("xv6.sync")
        self.ns = ks.rwsem("xv6.namespace")
        self.orphan_lock = ks.mutex("xv6.orphans")
        self.icache_lock = ks.mutex("xv6.icache")
        self.icache: dict[int, Inode] = {}
        self._icache_limit = ICACHE_TARGET
        self.orphans: list[int] = []  # the on-disk list, head first
        self.files: dict[int, OpenFile] = {}
        self._fh = itertools.count(1)
        # A predecessor's state (live upgrade), taken up as inodes and handles are used.
        self._inherited = upgrade_state.Inherited()
        root = self._iget(ROOT_INODE)
        if not root.is_dir:
            raise corrupt(f"{what}: the root inode is not a directory")
        root.nlookup = 1 << 40  # the kernel never forgets the root
        return mount_count

    def destroy(self) -> None:
        if self.read_only:
            return
        try:
            # Unmount drops every lookup and handle (the kernel need not send the
            # forgets first): unlinked inodes go now, so the orphan list ends empty.
            with self.icache_lock:
                gone = [ip for ip in self.icache.values() if ip.nlink == 0]
            for ip in gone:
                try:
                    self._reclaim(ip)
                except OSError:  # a corrupt inode: left on the orphan list for fsck
                    log.exception("xv6: freeing unlinked inode %d at unmount", ip.ino)
            with self._tx() as h:
                self._update_sb(h, state=STATE_CLEAN)
            self.journal.force_commit()
        except OSError:
            log.exception("xv6: could not mark the file system clean")

    def report(self, name: str) -> bytes:
        """``hidden``: the hidden inode's bytes (provenance's records), read-only."""
        if name != "hidden":
            raise FsError(errno.ENOENT, f"xv6 has no report {name!r}")
        if not self.hidden_ino:
            return b""
        ip = self._iget(self.hidden_ino, hidden_ok=True)
        with ip.lock.read():
            end = ip.size
            out = []
            for first in range(0, -(-end // BLOCK_SIZE), 1024):
                n = min(1024, -(-end // BLOCK_SIZE) - first)
                size = min(n * BLOCK_SIZE, end - first * BLOCK_SIZE)
                out.append(self.data.read(self.bmap.lookup_range(ip, first, n), 0, size))
            return b"".join(out)

    # ------------------------------------------------------------ live upgrade

    def prepare_upgrade(self) -> UpgradeState:
        """Lookup counts, open handles, fsync's debts, the orphan list and the
        allocator's arrays, as plain data (_upgrade.py). Only reads: if the upgrade
        fails, this instance serves on."""
        with self.icache_lock:
            lookups = [(ino, ip.nlookup) for ino, ip in self.icache.items()
                       if ip.nlookup and ino != ROOT_INODE]
            debts = [(ino, sorted(ip.dirty_data), ip.unflushed)
                     for ino, ip in self.icache.items() if ip.dirty_data or ip.unflushed]
            files = [(fh, of.ip.ino, of.flags, of.req) for fh, of in self.files.items()]
            old = self._inherited  # what a predecessor left that nothing has used yet
            lookups += old.lookups.items()
            debts += [(ino, dirty, unflushed) for ino, (dirty, unflushed) in old.debts.items()]
            files += [(fh, *rest) for fh, rest in old.files.items()]
            next_fh = next(self._fh)
            self._fh = itertools.count(next_fh)
        return upgrade_state.encode(upgrade_state.Snapshot(
            options={"read_only": self.read_only, "atime": self.atime}, lookups=lookups,
            debts=debts, files=files, next_fh=next_fh, orphans=list(self.orphans),
            alloc=self.alloc.handover()))

    @classmethod
    def from_upgrade(cls, state: UpgradeState, ks: KernelServices) -> Xv6:
        """The successor: attach to the same services, take the state lazily."""
        snap, inherited = upgrade_state.decode(state, cls.__name__)
        fs = cls(read_only=bool(snap.options["read_only"]), atime=str(snap.options["atime"]))
        fs._attach(ks, snap.alloc)
        fs.orphans = snap.orphans
        fs._inherited = inherited
        for ip in fs.icache.values():  # the root, loaded by _attach
            fs._take_inherited(ip)
        fs._fh = itertools.count(snap.next_fh)
        return fs

    def _take_inherited(self, ip: Inode) -> None:
        """Give a newly loaded inode what a predecessor knew of it. Caller holds
        ``icache_lock``."""
        old = self._inherited
        ip.nlookup += old.lookups.pop(ip.ino, 0)
        ip.nopen += old.nopen.pop(ip.ino, 0)
        dirty, unflushed = old.debts.pop(ip.ino, ((), False))
        for pblk in dirty:
            ip.owe(pblk)
        ip.unflushed = ip.unflushed or unflushed

    def _adopt(self, fh: int) -> OpenFile | None:
        """Turn a handle inherited from a predecessor into an ``OpenFile``."""
        with self.icache_lock:
            taken = self._inherited.files.pop(fh, None)
        if taken is None:
            return None
        ino, flags, req = taken
        of = OpenFile(self._iget(ino), flags, req)  # nopen came with the inode
        with self.icache_lock:
            self.files[fh] = of
        return of

    # ------------------------------------------------------------ helpers: inodes

    def _tx(self, credits: int = OP_CREDITS) -> Handle:
        return self.journal.start(min(credits, self.credits))

    def _writable(self) -> None:
        if self.read_only:
            raise FsError(errno.EROFS)

    def _iget(self, ino: int, hidden_ok: bool = False) -> Inode:
        """The in-memory inode (loaded on first use). ESTALE for a free inode, and
        for the hidden one unless its owner asks (``hidden_ok``)."""
        if ino == self.hidden_ino and ino and not hidden_ok:
            raise FsError(errno.ESTALE, f"inode {ino} is hidden")
        with self.icache_lock:
            ip = self.icache.get(ino)
            if ip is not None:
                return ip
        if not 0 < ino < self.geo.ninodes:
            raise FsError(errno.ESTALE, f"inode {ino} does not exist")
        ip = Inode(ino, self.ks.rwsem("xv6.inode"))
        block, slot = self.geo.inode_location(ino)
        with self.ks.bread(block) as bh:
            ip.load(inode_records(bh.data)[slot], self.geo.nblocks)
        if ip.mode == 0 or ino >= self.geo.ninodes:
            raise FsError(errno.ESTALE, f"inode {ino} is free")
        with self.icache_lock:
            cached = self.icache.get(ino)
            if cached is not None:
                return cached
            if self._inherited:
                self._take_inherited(ip)
            ip.orphan = ino in self.orphans
            self.icache[ino] = ip
            return ip

    def _store(self, h: Handle, ip: Inode) -> None:
        """Write the inode's fields into its block, inside handle ``h``."""
        block, slot = self.geo.inode_location(ip.ino)
        with self.ks.bread(block) as bh:
            h.get_write_access(bh)
            ip.store(inode_records(bh.data)[slot])
            h.dirty_metadata(bh)

    def _dir(self, ino: int) -> Inode:
        dp = self._iget(ino)
        if not dp.is_dir:
            raise FsError(errno.ENOTDIR)
        return dp

    def _touch(self, *ips: Inode, mtime: bool = True) -> None:
        now = self.ks.now_ns()
        for ip in ips:
            ip.ctime_ns = now
            if mtime:
                ip.mtime_ns = now

    def _counted(self, ip: Inode) -> Attr:
        """Count one lookup and return the attributes (the entry reply)."""
        with self.icache_lock:
            ip.nlookup += 1
        return ip.attr(BLOCK_SIZE)

    def _update_sb(self, h: Handle, **fields: int) -> None:
        with self.ks.bread(SUPERBLOCK) as bh:
            h.get_write_access(bh)
            sb = superblock_view(bh.data)
            for name, value in fields.items():
                sb[name] = value
            seal_superblock(bh.data)
            h.dirty_metadata(bh)

    # ------------------------------------------------------------ helpers: orphans

    def _orphan_add(self, h: Handle, ip: Inode) -> None:
        """Put ``ip`` on the orphan list (it must be reclaimed even after a crash)."""
        with self.orphan_lock:
            if ip.orphan:
                return
            ip.next_orphan = self.orphans[0] if self.orphans else 0
            self.orphans.insert(0, ip.ino)
            ip.orphan = True
            self._update_sb(h, orphan_head=ip.ino)
        self._store(h, ip)

    def _orphan_remove(self, h: Handle, ip: Inode) -> None:
        with self.orphan_lock:
            if not ip.orphan:
                return
            i = self.orphans.index(ip.ino)
            nxt = self.orphans[i + 1] if i + 1 < len(self.orphans) else 0
            del self.orphans[i]
            ip.orphan = False
            ip.next_orphan = 0
            if i == 0:
                self._update_sb(h, orphan_head=nxt)
            else:
                prev = self._iget(self.orphans[i - 1])
                prev.next_orphan = nxt
                self._store(h, prev)
        self._store(h, ip)

    def _reclaim_orphans(self) -> None:
        """Mount: finish what a crash interrupted — frees for unlinked inodes,
        truncates for the rest — following the on-disk list."""
        with self.ks.bread(SUPERBLOCK) as bh:
            ino = int(superblock_view(bh.data)["orphan_head"])
        chain = []
        while ino:
            if len(chain) >= self.geo.ninodes or ino in chain:
                raise corrupt(f"{self.ks.device.name}: the orphan list loops at inode {ino}")
            ip = self._iget(ino)
            ip.orphan = True
            chain.append(ino)
            ino = ip.next_orphan
        self.orphans = chain
        for ino in chain:
            ip = self._iget(ino)
            if ip.nlink == 0:
                self._reclaim(ip)
            else:
                self._truncate(ip, ip.size)
        if chain:
            log.info("xv6: reclaimed %d orphan inodes", len(chain))

    # ------------------------------------------------------------ helpers: freeing

    def _reclaim_if_unused(self, ip: Inode) -> None:
        with self.icache_lock:
            gone = ip.nlink == 0 and ip.nlookup == 0 and ip.nopen == 0
        if gone and not self.read_only:
            self._reclaim(ip)

    def _reclaim(self, ip: Inode) -> None:
        """Free an inode with no names, lookups or handles: its blocks, then itself."""
        with ip.lock.write():
            self._free_blocks(ip, 0)
            with self._tx() as h:
                if ip.xattr_block:
                    self.bmap.free(h, ip, ip.xattr_block, metadata=True)
                    ip.xattr_block = 0
                self._orphan_remove(h, ip)
                generation = ip.generation
                for f in ("mode", "uid", "gid", "size", "blocks", "flags", "rdev"):
                    setattr(ip, f, 0)
                ip.generation = generation
                ip.addrs = [0] * len(ip.addrs)
                self._store(h, ip)
                self.alloc.free_inode(h, ip.ino)
            with self.icache_lock:
                self.icache.pop(ip.ino, None)

    def _free_blocks(self, ip: Inode, first: int) -> None:
        """Free every block from logical block ``first`` on, last first, in as many
        handles as it takes (the inode is on the orphan list meanwhile, if needed)."""
        metadata = not stat.S_ISREG(ip.mode)
        victims = list(self.bmap.mapped(ip, first))
        while victims:
            with self._tx(self.credits) as h:
                while victims and h.credits > 16:
                    lblk, pblk = victims.pop()
                    self.bmap.unmap(h, ip, lblk, pblk, metadata)
                    ip.forgive(pblk)
                self._store(h, ip)

    def _truncate(self, ip: Inode, size: int) -> None:
        """Set the size; shrinking frees the blocks past the end. Caller holds ip.lock
        for writing (or the inode is private to the caller)."""
        keep = -(-size // BLOCK_SIZE)
        shrink = size < ip.size or any(True for _ in self.bmap.mapped(ip, keep))
        with self._tx() as h:
            if shrink:
                self._orphan_add(h, ip)  # a crash mid-way: mount finishes the truncate
                self._zero_tail(h, ip, size)
            ip.size = size
            self._store(h, ip)
        if shrink:
            self._free_blocks(ip, keep)
            with self._tx() as h:
                if ip.nlink:
                    self._orphan_remove(h, ip)

    def _zero_tail(self, h: Handle, ip: Inode, size: int) -> None:
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

    # ------------------------------------------------------------ helpers: names

    @staticmethod
    def _check_name(name: bytes) -> None:
        if len(name) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG)
        if not name or b"/" in name or b"\0" in name:
            raise FsError(errno.EINVAL, f"invalid file name {name!r}")

    def _child(self, dp: Inode, name: bytes) -> Inode | None:
        hit = self.dirs.lookup(dp, name)
        return None if hit is None else self._iget(hit[0])

    def _is_ancestor(self, a: Inode, d: Inode) -> bool:
        """Is directory ``a`` ``d`` or above it? Follows '..' with a bound."""
        ino = d.ino
        for _ in range(self.geo.ninodes):
            if ino == a.ino:
                return True
            if ino == ROOT_INODE:
                return False
            hit = self.dirs.lookup(self._iget(ino), b"..")
            if hit is None:
                raise corrupt(f"directory {ino} has no '..' entry")
            ino = hit[0]
        raise corrupt(f"directory {d.ino}: '..' entries form a loop")

    def _shrink_icache(self) -> None:
        """Drop unreferenced inodes past the target (caller holds ``ns`` for writing,
        so nothing else can be reaching them)."""
        with self.icache_lock:
            if len(self.icache) < self._icache_limit:
                return
            extra = len(self.icache) - ICACHE_TARGET
            idle = [ino for ino, ip in self.icache.items()
                    if ip.nlookup == 0 and ip.nopen == 0 and ip.nlink and not ip.orphan
                    and ino != self.hidden_ino and not ip.lock.statistics().owners][:extra]
            for ino in idle:
                del self.icache[ino]
            # the scan is linear: run it again only once the cache has grown by half
            self._icache_limit = max(ICACHE_TARGET, len(self.icache) * 3 // 2)

    # ---------------------------------------------------------------- names

    def lookup(self, req: Request, parent: InodeNo, name: bytes) -> Attr:
        with self.ns.read():
            dp = self._dir(parent)
            perm.require(req, dp, os.X_OK)  # Linux: search permission before the name
            if len(name) > NAME_MAX:
                raise FsError(errno.ENAMETOOLONG)
            ip = self._child(dp, name)
            if ip is None:
                raise FsError(errno.ENOENT)
            return self._counted(ip)

    def forget(self, items: Sequence[tuple[InodeNo, int]]) -> None:
        for ino, n in items:
            try:
                with self.icache_lock:
                    ip = self.icache.get(ino)
                    if ip is None and ino not in self._inherited.lookups:
                        continue
                if ip is None:
                    ip = self._iget(ino)  # counts inherited from an upgrade
                with self.icache_lock:
                    ip.nlookup = max(0, ip.nlookup - n)
                self._reclaim_if_unused(ip)
            except Exception:  # forget must not fail; the inode stays on the orphan list
                log.exception("xv6: forget of inode %d", ino)

    def _create(self, req: Request, parent: int, name: bytes, mode: int, rdev: int = 0,
                target: bytes | None = None) -> Inode:
        """Make a new inode named ``name`` in ``parent`` (any kind), counted once."""
        self._writable()
        kind = stat.S_IFMT(mode)
        with self.ns.write():
            dp = self._dir(parent)
            with dp.lock.write():
                perm.require(req, dp, os.X_OK)  # Linux: search permission, then the name
                self._check_name(name)
                perm.require(req, dp, os.W_OK | os.X_OK)
                if dp.nlink == 0:
                    raise FsError(errno.ENOENT, "the directory was removed")
                if self.dirs.lookup(dp, name) is not None:
                    raise FsError(errno.EEXIST)
                if kind in (stat.S_IFCHR, stat.S_IFBLK):
                    perm.require_root(req)  # CAP_MKNOD
                if kind == stat.S_IFDIR and dp.nlink >= LINK_MAX:
                    raise FsError(errno.EMLINK)
                perms = mode & 0o7777 & ~req.umask if kind != stat.S_IFLNK else 0o777
                uid, gid, mode = perm.new_owner(req, dp, kind | perms)
                with self._tx() as h:
                    ip = self._new_inode(h, dp, name, mode, uid, gid, rdev, target)
                self._shrink_icache()
            return ip

    def _new_inode(self, h: Handle, dp: Inode, name: bytes, mode: int, uid: int, gid: int,
                   rdev: int, target: bytes | None) -> Inode:
        ino = self.alloc.alloc_inode(h)
        if ino is None:
            raise FsError(errno.ENOSPC, "no free inodes")
        block, slot = self.geo.inode_location(ino)
        with self.ks.bread(block) as bh:
            generation = int(inode_records(bh.data)[slot]["generation"]) + 1
        ip = Inode(ino, self.ks.rwsem("xv6.inode"))
        now = self.ks.now_ns()
        ip.mode, ip.uid, ip.gid, ip.rdev = mode, uid, gid, rdev
        ip.nlink = 1
        ip.atime_ns = ip.mtime_ns = ip.ctime_ns = ip.crtime_ns = now
        ip.generation = generation & 0xFFFFFFFF
        try:
            if stat.S_ISDIR(mode):
                self._fill_block(h, ip, self.dirs.init_block(ino, dp.ino, kind_code(mode)))
                ip.size, ip.nlink = BLOCK_SIZE, 2
            elif target is not None:
                self._fill_block(h, ip, target.ljust(BLOCK_SIZE, b"\0"))
                ip.size = len(target)
            self.dirs.add(h, dp, name, ino, kind_code(mode))
        except NoSpace:
            for lblk, pblk in list(self.bmap.mapped(ip)):
                self.bmap.unmap(h, ip, lblk, pblk, metadata=True)
            self.alloc.free_inode(h, ino)
            self._store(h, dp)
            raise FsError(errno.ENOSPC) from None
        if stat.S_ISDIR(mode):
            dp.nlink += 1
        self._touch(dp)
        self._store(h, ip)
        self._store(h, dp)
        ip.nlookup = 1
        with self.icache_lock:
            self.icache[ino] = ip
        return ip

    def _fill_block(self, h: Handle, ip: Inode, content: bytes) -> None:
        """Logical block 0 of a new directory or symlink, journaled."""
        pblk, _ = self.bmap.map_alloc(h, ip, 0, metadata=True)
        with self.ks.getblk(pblk) as bh:
            h.get_create_access(bh)
            bh.data[:] = np.frombuffer(content, np.uint8)
            h.dirty_metadata(bh)

    def mknod(self, req: Request, parent: InodeNo, name: bytes, mode: int, rdev: int) -> Attr:
        kind = stat.S_IFMT(mode)
        if kind == 0:
            mode |= stat.S_IFREG
        elif kind not in (stat.S_IFREG, stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK):
            raise FsError(errno.EINVAL)
        rdev = rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0
        return self._create(req, parent, name, mode, rdev).attr(BLOCK_SIZE)

    def mkdir(self, req: Request, parent: InodeNo, name: bytes, mode: int) -> Attr:
        return self._create(req, parent, name, stat.S_IFDIR | (mode & 0o7777)).attr(BLOCK_SIZE)

    def symlink(self, req: Request, parent: InodeNo, name: bytes, target: bytes) -> Attr:
        if len(target) > SYMLINK_MAX:
            raise FsError(errno.ENAMETOOLONG)
        if not target or b"\0" in target:
            raise FsError(errno.ENOENT if not target else errno.EINVAL)
        return self._create(req, parent, name, stat.S_IFLNK | 0o777, target=target).attr(BLOCK_SIZE)

    def readlink(self, req: Request, ino: InodeNo) -> bytes:
        ip = self._iget(ino)
        if not stat.S_ISLNK(ip.mode):
            raise FsError(errno.EINVAL)
        with ip.lock.read():
            p = self.bmap.lookup(ip, 0)
            if not p or ip.size > SYMLINK_MAX:
                raise corrupt(f"symlink {ino} has no target block")
            with self.ks.bread(p) as bh:
                return bh.data[: ip.size].tobytes()

    def link(self, req: Request, ino: InodeNo, new_parent: InodeNo, new_name: bytes) -> Attr:
        self._writable()
        self._check_name(new_name)
        with self.ns.write():
            ip = self._iget(ino)
            dp = self._dir(new_parent)
            if ip.is_dir:
                raise FsError(errno.EPERM, "hard links to directories are not allowed")
            first, second = sorted((dp, ip), key=lambda i: i.ino)
            with first.lock.write(), second.lock.write(1):
                perm.require(req, dp, os.W_OK | os.X_OK)
                if dp.nlink == 0 or ip.nlink == 0:
                    raise FsError(errno.ENOENT)
                if self.dirs.lookup(dp, new_name) is not None:
                    raise FsError(errno.EEXIST)
                if ip.nlink >= LINK_MAX:
                    raise FsError(errno.EMLINK)
                with self._tx() as h:
                    try:
                        self.dirs.add(h, dp, new_name, ip.ino, kind_code(ip.mode))
                    except NoSpace:
                        self._store(h, dp)
                        raise FsError(errno.ENOSPC) from None
                    ip.nlink += 1
                    self._touch(ip, mtime=False)
                    self._touch(dp)
                    self._store(h, ip)
                    self._store(h, dp)
            return self._counted(ip)

    def unlink(self, req: Request, parent: InodeNo, name: bytes) -> None:
        self._remove(req, parent, name, directory=False)

    def rmdir(self, req: Request, parent: InodeNo, name: bytes) -> None:
        self._remove(req, parent, name, directory=True)

    def _remove(self, req: Request, parent: int, name: bytes, directory: bool) -> None:
        self._writable()
        if len(name) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG)
        if directory and name == b".":
            raise FsError(errno.EINVAL)
        if directory and name == b"..":
            raise FsError(errno.ENOTEMPTY)
        with self.ns.write():
            dp = self._dir(parent)
            ip = self._child(dp, name)
            if ip is None:
                raise FsError(errno.ENOENT)
            with dp.lock.write(), ip.lock.write(1):
                perm.require(req, dp, os.W_OK | os.X_OK)
                perm.check_sticky(req, dp, ip)
                if directory and not ip.is_dir:
                    raise FsError(errno.ENOTDIR)
                if not directory and ip.is_dir:
                    raise FsError(errno.EISDIR)
                if directory and not self.dirs.is_empty(ip):
                    raise FsError(errno.ENOTEMPTY)
                with self._tx() as h:
                    self.dirs.remove(h, dp, name)
                    self._drop_link(h, dp, ip)
                    self._touch(dp)
                    self._store(h, dp)
            self._shrink_icache()
        self._reclaim_if_unused(ip)

    def _drop_link(self, h: Handle, dp: Inode, ip: Inode) -> None:
        """``ip`` lost its name in ``dp``: count it, orphan it when no names remain."""
        if ip.is_dir:
            ip.nlink = 0
            dp.nlink -= 1  # its '..'
        else:
            ip.nlink -= 1
        self._touch(ip, mtime=False)
        if ip.nlink == 0:
            self._orphan_add(h, ip)
        self._store(h, ip)

    def rename(self, req: Request, parent: InodeNo, name: bytes, new_parent: InodeNo,
               new_name: bytes, flags: int = 0) -> None:
        self._writable()
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
            raise FsError(errno.EINVAL)
        self._check_name(new_name)
        if len(name) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG)
        if {name, new_name} & {b".", b".."}:
            raise FsError(errno.EBUSY if flags != RENAME_EXCHANGE else errno.EINVAL)
        victim = None
        with self.ns.write():
            sdp, ddp = self._dir(parent), self._dir(new_parent)
            sip = self._child(sdp, name)
            if sip is None:
                raise FsError(errno.ENOENT)
            dip = self._child(ddp, new_name)
            involved = sorted({i.ino: i for i in (sdp, ddp, sip, dip) if i}.values(),
                              key=lambda i: i.ino)
            for depth, i in enumerate(involved):
                i.lock.acquire_write(depth)
            try:
                victim = self._rename_locked(req, sdp, name, ddp, new_name, sip, dip, flags)
            finally:
                for i in reversed(involved):
                    i.lock.release_write()
            self._shrink_icache()
        if victim is not None:
            self._reclaim_if_unused(victim)

    def _rename_locked(self, req: Request, sdp: Inode, name: bytes, ddp: Inode, new_name: bytes,
                       sip: Inode, dip: Inode | None, flags: int) -> Inode | None:
        # In vfs_rename's order: the names, the same inode (nothing to do, nothing
        # checked), then permissions, then the kinds; emptiness is the file system's.
        if flags & RENAME_EXCHANGE and dip is None:
            raise FsError(errno.ENOENT)
        if flags & RENAME_NOREPLACE and dip is not None:
            raise FsError(errno.EEXIST)
        moves = [(sip, ddp)] + ([(dip, sdp)] if flags & RENAME_EXCHANGE else [])
        moved = [child for child, _ in moves if child.is_dir and sdp is not ddp]
        for child, target in moves:
            if child in moved and self._is_ancestor(child, target):
                raise FsError(errno.EINVAL, "cannot move a directory inside itself")
        if dip is sip:
            return None  # two names of one inode: POSIX says do nothing
        perm.require(req, sdp, os.W_OK | os.X_OK)
        perm.require(req, ddp, os.W_OK | os.X_OK)
        perm.check_sticky(req, sdp, sip)
        if dip is not None:
            perm.check_sticky(req, ddp, dip)
        if dip is not None and not flags & RENAME_EXCHANGE:
            if sip.is_dir and not dip.is_dir:
                raise FsError(errno.ENOTDIR)
            if not sip.is_dir and dip.is_dir:
                raise FsError(errno.EISDIR)
        for child in moved:
            perm.require(req, child, os.W_OK)  # its '..' changes
        if dip is not None and not flags & RENAME_EXCHANGE:
            if dip.is_dir and not self.dirs.is_empty(dip):
                raise FsError(errno.ENOTEMPTY)
        with self._tx() as h:
            if flags & RENAME_EXCHANGE:
                assert dip is not None
                self.dirs.retarget(h, sdp, name, dip.ino, kind_code(dip.mode))
                self.dirs.retarget(h, ddp, new_name, sip.ino, kind_code(sip.mode))
                for child, old, new in ((sip, sdp, ddp), (dip, ddp, sdp)):
                    self._reparent(h, child, old, new)
                self._touch(sip, dip, mtime=False)
                self._store(h, dip)
                victim = None
            else:
                if dip is None:
                    try:
                        self.dirs.add(h, ddp, new_name, sip.ino, kind_code(sip.mode))
                    except NoSpace:
                        self._store(h, ddp)
                        raise FsError(errno.ENOSPC) from None
                else:
                    self.dirs.retarget(h, ddp, new_name, sip.ino, kind_code(sip.mode))
                    self._drop_link(h, ddp, dip)
                self.dirs.remove(h, sdp, name)
                self._reparent(h, sip, sdp, ddp)
                self._touch(sip, mtime=False)
                victim = dip
            self._touch(sdp, ddp)
            self._store(h, sip)
            self._store(h, sdp)
            if ddp is not sdp:
                self._store(h, ddp)
        return victim

    def _reparent(self, h: Handle, child: Inode, old: Inode, new: Inode) -> None:
        if child.is_dir and old is not new:
            self.dirs.retarget(h, child, b"..", new.ino, kind_code(new.mode))
            old.nlink -= 1
            new.nlink += 1

    # ---------------------------------------------------------------- attributes

    def getattr(self, req: Request, ino: InodeNo) -> Attr:
        ip = self._iget(ino)
        with ip.lock.read():
            return ip.attr(BLOCK_SIZE)

    def setattr(self, req: Request, ino: InodeNo, changes: SetAttr,
                fh: FileHandle | None = None) -> Attr:
        self._writable()
        ip = self._iget(ino)
        with ip.lock.write():
            self._check_setattr(req, ip, changes, fh)
            now = self.ks.now_ns()
            if changes.size is not None and changes.size != ip.size:
                self._truncate(ip, changes.size)
            with self._tx() as h:
                c = changes
                if c.mode is not None:
                    ip.mode = stat.S_IFMT(ip.mode) | perm.chmod_mode(req, ip, c.mode)
                if c.uid is not None or c.gid is not None:
                    ip.mode = perm.killed_suid(ip.mode)  # Linux: even root, even unchanged
                    ip.uid = ip.uid if c.uid is None else c.uid
                    ip.gid = ip.gid if c.gid is None else c.gid
                if c.size is not None:
                    if req.uid:
                        ip.mode = perm.killed_suid(ip.mode)
                    if c.mtime_ns is None:
                        ip.mtime_ns = now
                if c.atime_ns is not None:
                    ip.atime_ns = now if c.atime_ns == SetAttr.NOW else c.atime_ns
                if c.mtime_ns is not None:
                    ip.mtime_ns = now if c.mtime_ns == SetAttr.NOW else c.mtime_ns
                ip.ctime_ns = now if c.ctime_ns is None else c.ctime_ns
                self._store(h, ip)
            return ip.attr(BLOCK_SIZE)

    def _check_setattr(self, req: Request, ip: Inode, c: SetAttr, fh: FileHandle | None) -> None:
        if c.mode is not None:
            perm.require_owner(req, ip)
        if c.uid is not None or c.gid is not None:
            perm.check_chown(req, ip, c.uid, c.gid)
        if c.size is not None:
            if ip.is_dir:
                raise FsError(errno.EISDIR)
            if not stat.S_ISREG(ip.mode):
                raise FsError(errno.EINVAL)
            if c.size < 0:
                raise FsError(errno.EINVAL)
            if c.size > MAX_FILE_SIZE:
                raise FsError(errno.EFBIG)
            of = (self.files.get(fh) or self._adopt(fh)) if fh is not None else None
            if of is None:
                perm.require(req, ip, os.W_OK)
            elif of.flags & _ACCMODE == os.O_RDONLY:
                raise FsError(errno.EINVAL)
        times = [t for t in (c.atime_ns, c.mtime_ns) if t is not None]
        if times:
            perm.check_utimes(req, ip, only_now=all(t == SetAttr.NOW for t in times))

    def access(self, req: Request, ino: InodeNo, mask: int) -> None:
        ip = self._iget(ino)
        if mask and not perm.permitted(req, ip, mask):
            raise FsError(errno.EACCES)
        if mask & os.W_OK and self.read_only:
            raise FsError(errno.EROFS)

    def statfs(self, req: Request) -> StatFs:
        a = self.alloc
        free = a.free_blocks + a.pending_blocks
        return StatFs(block_size=BLOCK_SIZE, blocks=self.geo.nblocks - self.geo.data_start,
                      blocks_free=free, blocks_available=free, files=self.geo.ninodes - 1,
                      files_free=a.free_inodes, name_max=NAME_MAX)

    # ---------------------------------------------------------------- files

    def open(self, req: Request, ino: InodeNo, flags: int) -> FileHandle:
        ip = self._iget(ino)
        acc = flags & _ACCMODE
        want = {os.O_RDONLY: os.R_OK, os.O_WRONLY: os.W_OK, os.O_RDWR: os.R_OK | os.W_OK}.get(acc)
        if want is None:
            raise FsError(errno.EINVAL)
        if ip.is_dir and (acc != os.O_RDONLY or flags & os.O_TRUNC):
            raise FsError(errno.EISDIR)
        if (acc != os.O_RDONLY or flags & os.O_TRUNC) and self.read_only:
            raise FsError(errno.EROFS)
        perm.require(req, ip, want | (os.W_OK if flags & os.O_TRUNC else 0))
        if flags & os.O_TRUNC and stat.S_ISREG(ip.mode):  # Linux: read-only opens too
            with ip.lock.write():
                if ip.size:
                    self._truncate(ip, 0)
                with self._tx() as h:
                    self._touch(ip)
                    if req.uid:
                        ip.mode = perm.killed_suid(ip.mode)
                    self._store(h, ip)
        return self._new_handle(ip, flags, req)

    def _new_handle(self, ip: Inode, flags: int, req: Request) -> FileHandle:
        with self.icache_lock:
            ip.nopen += 1
            fh = next(self._fh)
            self.files[fh] = OpenFile(ip, flags, req)
        return FileHandle(fh)

    def _file(self, fh: int) -> OpenFile:
        of = self.files.get(fh)
        if of is None:
            of = self._adopt(fh)
            if of is None:
                raise FsError(errno.EBADF)
        return of

    def create(self, req: Request, parent: InodeNo, name: bytes, mode: int,
               flags: int) -> tuple[Attr, FileHandle]:
        ip = self._create(req, parent, name, stat.S_IFREG | (mode & 0o7777))
        return ip.attr(BLOCK_SIZE), self._new_handle(ip, flags, req)

    def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        of = self._file(fh)
        ip = of.ip
        if ip.is_dir:
            raise FsError(errno.EISDIR)
        if of.flags & _ACCMODE == os.O_WRONLY:
            raise FsError(errno.EBADF)
        if offset < 0 or size < 0:
            raise FsError(errno.EINVAL)
        with ip.lock.read():
            end = min(ip.size, offset + size)
            if offset >= end:
                return b""
            first, last = offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE
            pblks = self.bmap.lookup_range(ip, first, last - first + 1)
            out = self.data.read(pblks, offset - first * BLOCK_SIZE, end - offset)
            update_atime = self._atime_due(ip)
        if update_atime:
            with ip.lock.write(), self._tx() as h:
                ip.atime_ns = self.ks.now_ns()
                self._store(h, ip)
        return out

    def _atime_due(self, ip: Inode) -> bool:
        if self.atime == "noatime" or self.read_only:
            return False
        if self.atime == "strictatime":
            return True
        day = 24 * 3600 * 10**9
        return (ip.atime_ns <= ip.mtime_ns or ip.atime_ns <= ip.ctime_ns
                or self.ks.now_ns() - ip.atime_ns >= day)

    def write(self, fh: FileHandle, offset: int, data: bytes | memoryview) -> int:
        self._writable()
        of = self._file(fh)
        if of.flags & _ACCMODE == os.O_RDONLY:
            raise FsError(errno.EBADF)
        ip = of.ip
        src = np.frombuffer(data, dtype=np.uint8)
        if offset < 0:
            raise FsError(errno.EINVAL)
        if offset + len(src) > MAX_FILE_SIZE:
            raise FsError(errno.EFBIG)
        if not len(src):
            return 0
        with ip.lock.write():
            done = self._write_blocks(ip, offset, src)
            if done == 0:
                raise FsError(errno.ENOSPC)
            with self._tx() as h:
                ip.size = max(ip.size, offset + done)
                self._touch(ip)
                if of.req.uid:
                    ip.mode = perm.killed_suid(ip.mode)
                self._store(h, ip)
        return done

    def _write_blocks(self, ip: Inode, offset: int, src: np.ndarray, zero_only: bool = False) -> int:
        """Copy ``src`` to the file at ``offset`` (or, with ``zero_only``, allocate
        zeroed blocks in holes), as many handles as it takes. Returns bytes done:
        short only when the disk is full."""
        pos, end = offset, offset + len(src)
        retried = False
        while pos < end:
            # 64 credits: asking for the transaction's whole capacity would commit
            # the running transaction on every write
            with self._tx(WRITE_CREDITS) as h:
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
                        self._store(h, ip)
                        return pos - offset
                    retried = True  # freed blocks wait for a commit: make one, try again
                self._store(h, ip)
            if retried:
                self.journal.force_commit()
        return pos - offset

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
            self.data.write(pblks, data)  # before the handle's commit: ordered data
            ip.unflushed = True
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
            if new and not whole:
                bh.data[:] = 0
            if not zero_only:
                bh.data[off:off + len(chunk)] = chunk
            bh.mark_dirty()
            if new:
                h.ordered_data(bh)  # on disk before the commit that points at it
            else:
                ip.owe(pblk)

    def fallocate(self, fh: FileHandle, mode: int, offset: int, length: int) -> None:
        self._writable()
        if mode & ~FALLOC_FL_KEEP_SIZE:
            raise FsError(errno.EOPNOTSUPP)
        if offset < 0 or length <= 0:
            raise FsError(errno.EINVAL)
        if offset + length > MAX_FILE_SIZE:
            raise FsError(errno.EFBIG)
        of = self._file(fh)
        if of.flags & _ACCMODE == os.O_RDONLY:
            raise FsError(errno.EBADF)
        ip = of.ip
        if not stat.S_ISREG(ip.mode):
            raise FsError(errno.ENODEV)
        with ip.lock.write():
            first = offset // BLOCK_SIZE * BLOCK_SIZE
            stop = -(-(offset + length) // BLOCK_SIZE) * BLOCK_SIZE
            if mode & FALLOC_FL_KEEP_SIZE:
                stop = min(stop, -(-ip.size // BLOCK_SIZE) * BLOCK_SIZE)
            zeros = np.zeros(max(0, stop - first), dtype=np.uint8)
            done = self._write_blocks(ip, first, zeros, zero_only=True)
            with self._tx() as h:
                if not mode & FALLOC_FL_KEEP_SIZE:
                    ip.size = max(ip.size, min(offset + length, first + done))
                self._touch(ip, mtime=False)
                self._store(h, ip)
            if done < len(zeros):
                raise FsError(errno.ENOSPC)

    def flush(self, fh: FileHandle) -> None:
        self._file(fh)

    def release(self, fh: FileHandle) -> None:
        if fh not in self.files:
            self._adopt(fh)
        with self.icache_lock:
            of = self.files.pop(fh, None)
            if of is None:
                return
            of.ip.nopen -= 1
        try:
            self._reclaim_if_unused(of.ip)
        except Exception:
            log.exception("xv6: reclaiming inode %d", of.ip.ino)

    def fsync(self, fh: FileHandle, datasync: bool) -> None:
        ip = self._file(fh).ip
        self._sync_inode(ip)

    def _sync_inode(self, ip: Inode) -> None:
        """Write back the file's overwritten blocks, commit, flush. A block may have
        left the cache already (written home by the background writer or to make
        room, without a flush): it still owes a flush, so ``owed`` counts every
        block overwritten since the last fsync, cached or not. What it owes is the
        inode's state: taken under its lock held for writing."""
        with self.sync_lock:
            with ip.lock.write():
                blocks = ip.take_owed()
                owed = bool(blocks) or ip.unflushed
                dirty = [bh for b in blocks if (bh := self.ks.cache.cached(b)) is not None]
                ip.unflushed = False
            self.ks.cache.write_and_wait(dirty)
            self.journal.force_commit()
            if owed:
                self.ks.device.flush()

    # ---------------------------------------------------------------- directories

    def opendir(self, req: Request, ino: InodeNo) -> FileHandle:
        ip = self._dir(ino)
        perm.require(req, ip, os.R_OK)
        return self._new_handle(ip, os.O_RDONLY | os.O_DIRECTORY, req)

    def readdir(self, fh: FileHandle, offset: int) -> Iterable[DirEntry]:
        ip = self._file(fh).ip
        if not ip.is_dir:
            raise FsError(errno.ENOTDIR)
        with self.ns.read(), ip.lock.read():
            if ip.nlink == 0:
                return []
            return [DirEntry(r.name, InodeNo(r.ino), r.kind << 12, nxt)
                    for r, nxt in self.dirs.scan(ip, offset, 128)]

    def releasedir(self, fh: FileHandle) -> None:
        self.release(fh)

    def fsyncdir(self, fh: FileHandle, datasync: bool) -> None:
        self._file(fh)
        self.journal.force_commit()

    # ---------------------------------------------------------------- xattrs

    def _xattrs(self, ip: Inode) -> dict[bytes, bytes]:
        if ip.xattrs is None:
            if not ip.xattr_block:
                ip.xattrs = {}
            else:
                with self.ks.bread(self.bmap.check(ip, ip.xattr_block)) as bh:
                    ip.xattrs = xattr.decode(bh.data.tobytes(), ip.ino)
        return ip.xattrs

    def _xattr_access(self, req: Request, ip: Inode, name: bytes, write: bool) -> None:
        xattr.check_name(name)
        if name.startswith(b"trusted.") or (name.startswith(b"security.") and write):
            perm.require_root(req)
        if name.startswith(b"user."):
            if not (stat.S_ISREG(ip.mode) or ip.is_dir):
                raise FsError(errno.EPERM if write else errno.ENODATA)
            if write and ip.is_dir and ip.mode & stat.S_ISVTX:
                perm.require_owner(req, ip)
            perm.require(req, ip, os.W_OK if write else os.R_OK)

    def getxattr(self, req: Request, ino: InodeNo, name: bytes) -> bytes:
        ip = self._iget(ino)
        with ip.lock.read():
            self._xattr_access(req, ip, name, write=False)
            value = self._xattrs(ip).get(name)
        if value is None:
            raise FsError(errno.ENODATA)
        return value

    def listxattr(self, req: Request, ino: InodeNo) -> list[bytes]:
        ip = self._iget(ino)
        with ip.lock.read():
            names = list(self._xattrs(ip))
        return [n for n in names if req.uid == 0 or not n.startswith(b"trusted.")]

    def setxattr(self, req: Request, ino: InodeNo, name: bytes, value: bytes, flags: int = 0) -> None:
        self._writable()
        if flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise FsError(errno.EINVAL)
        if len(value) > 65536:
            raise FsError(errno.E2BIG)
        ip = self._iget(ino)
        with ip.lock.write():
            self._xattr_access(req, ip, name, write=True)
            attrs = dict(self._xattrs(ip))
            if flags & XATTR_CREATE and name in attrs:
                raise FsError(errno.EEXIST)
            if flags & XATTR_REPLACE and name not in attrs:
                raise FsError(errno.ENODATA)
            attrs[name] = bytes(value)
            self._save_xattrs(ip, attrs)

    def removexattr(self, req: Request, ino: InodeNo, name: bytes) -> None:
        self._writable()
        ip = self._iget(ino)
        with ip.lock.write():
            self._xattr_access(req, ip, name, write=True)
            attrs = dict(self._xattrs(ip))
            if attrs.pop(name, None) is None:
                raise FsError(errno.ENODATA)
            self._save_xattrs(ip, attrs)

    def _save_xattrs(self, ip: Inode, attrs: dict[bytes, bytes]) -> None:
        raw = xattr.encode(attrs) if attrs else b""
        with self._tx() as h:
            if not attrs:
                if ip.xattr_block:
                    self.bmap.free(h, ip, ip.xattr_block, metadata=True)
                    ip.xattr_block = 0
            else:
                if not ip.xattr_block:
                    try:
                        ip.xattr_block = self.bmap.new_block(h, ip, self.bmap.goal(ip))
                    except NoSpace:
                        raise FsError(errno.ENOSPC) from None
                    bh = self.ks.getblk(ip.xattr_block)
                else:
                    bh = self.ks.bread(ip.xattr_block)
                with bh:
                    h.get_write_access(bh)
                    bh.data[:] = np.frombuffer(raw, np.uint8)
                    h.dirty_metadata(bh)
            ip.xattrs = attrs
            self._touch(ip, mtime=False)
            self._store(h, ip)
