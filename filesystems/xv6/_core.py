"""What xv6's system calls stand on: the layers built at mount, the life cycle, the
live upgrade, and the extension seam a subclass is written against.

``Xv6Core.attach`` builds the layers bottom-up (cf. xv6's fs.c), each a public
attribute: ``alloc`` (bitmaps) → ``bmap`` (block mapping) → ``dirs`` (directory
blocks) → ``icache`` (in-memory inodes) and ``orphans`` (the orphan list) →
``names`` (the name layer) and ``file_io`` (the file layer). ``Xv6`` (_fs.py) adds
the system calls. Locks are taken in the order docs/locking.md writes down.
"""

from __future__ import annotations

import errno
import itertools
import logging
import stat
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Self

from bento_user.api import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    ErrorRecord,
    Filesystem,
    FsckReport,
    FsError,
    InodeNo,
    Progress,
    Request,
    UpgradeState,
    corrupt,
)
from bento_user.blockdev import BlockDevice
from bento_user.ks_emul import Handle, Journal, KernelServices

from . import _upgrade as upgrade_state
from ._alloc import Allocator
from ._bmap import BlockMap
from ._dir import Directories
from ._file import OP_CREDITS, FileIO
from ._format import (
    JOURNAL_START,
    MAGIC,
    ROOT_INODE,
    STATE_CLEAN,
    STATE_MOUNTED,
    SUPERBLOCK,
    Geometry,
    read_errors,
    read_geometry,
    superblock_view,
    update_superblock,
    write_errors,
)
from ._icache import InodeCache
from ._inode import Inode
from ._names import Names
from ._orphans import OrphanList

log = logging.getLogger(__name__)


@dataclass
class OpenFile:
    """An open file or directory: what ``open`` checked, kept for its handle."""

    ip: Inode
    flags: int
    req: Request  # the opener (a write through the handle acts as the opener)


class Xv6Core(Filesystem):
    """The mounted state of an xv6 file system, without its system calls.

    Args:
        read_only: refuse every change with EROFS (and never write the device).
        atime: "relatime" (Linux's default), "strictatime" or "noatime".
        diratime: directories' atime follows ``atime`` too (False: nodiratime).
    """

    ordered_metadata = True  # one journal: every fsync-family call commits it whole
    rename_flags = RENAME_NOREPLACE | RENAME_EXCHANGE

    def __init__(self, *, read_only: bool = False, atime: str = "relatime",
                 diratime: bool = True) -> None:
        if atime not in ("relatime", "strictatime", "noatime"):
            raise ValueError(f"unknown atime mode {atime!r}")
        self.read_only = read_only
        self.atime = atime
        self.diratime = diratime

    # ---------------------------------------------------------------- tools

    @classmethod
    def mkfs(cls, device: BlockDevice, progress: Progress | None = None, **options: int) -> str:
        """Options: ``inodes`` (default one per 16 KiB), ``journal_blocks``."""
        from .mkfs import mkfs
        unknown = set(options) - {"inodes", "journal_blocks"}
        if unknown:
            raise FsError(errno.EINVAL, f"xv6's mkfs has no option {sorted(unknown)[0]!r} "
                          "(it takes inodes and journal_blocks)")
        try:
            geo = mkfs(device, ninodes=options.get("inodes"),
                       journal_blocks=options.get("journal_blocks"),
                       progress=progress and (lambda f: progress("writing inode table", f)))
        except ValueError as e:
            raise FsError(errno.EINVAL, str(e)) from None
        asked = options.get("inodes")
        rounded = (f" (--inodes {asked}, rounded up to fill whole inode-table blocks)"
                   if asked is not None and asked != geo.ninodes - 1 else "")
        return (f"xv6 v2, {geo.nblocks} blocks of 4 KiB ({geo.nblocks * 4096 / 2**20:.0f} MiB), "
                f"{geo.ninodes - 1} inodes{rounded}, {geo.journal_blocks}-block journal, "
                f"{geo.nblocks - geo.data_start} data blocks")

    @classmethod
    def fsck(cls, device: BlockDevice, progress: Progress | None = None) -> FsckReport:
        from .fsck import fsck
        return fsck(device, progress)

    @classmethod
    def repair(cls, device: BlockDevice, progress: Progress | None = None,
               preen: bool = False) -> FsckReport:
        from .repair import repair
        return repair(device, progress, preen)

    @classmethod
    def identify(cls, device: BlockDevice) -> str | None:
        if device.nblocks <= SUPERBLOCK:
            return None
        return "xv6 v2" if device.read_block(SUPERBLOCK)[:len(MAGIC)] == MAGIC else None

    @classmethod
    def block_kinds(cls, device: BlockDevice, blocks: Sequence[int]) -> dict[int, str]:
        from .fsck import block_kinds
        return block_kinds(device, blocks)

    @classmethod
    def describe(cls, device: BlockDevice, view: str) -> str:
        from .describe import describe
        return describe(device, view)

    def block_map(self, ino: InodeNo) -> list[tuple[int, int]]:
        ip = self.icache.iget(ino)
        with ip.lock.read():
            return list(self.bmap.mapped(ip))

    # ---------------------------------------------------------------- life cycle

    def init(self, ks: KernelServices) -> None:
        mount_count = self.attach(ks)
        if not self.read_only:
            self.file_io.recover_orphans()
            with self.transaction() as h:
                update_superblock(ks, h, state=STATE_MOUNTED, mount_count=mount_count + 1,
                                  mount_time_ns=ks.now_ns())

    def remount(self, read_only: bool) -> None:
        """Read-only: the superblock says clean (as at unmount, ext4 does the same),
        then no atime and no reclaim: an unlinked inode waits on the orphan list for
        the next writable mount. Writable again: the superblock says mounted."""
        if read_only != self.read_only:
            with self.transaction() as h:
                update_superblock(self.ks, h, state=STATE_CLEAN if read_only else STATE_MOUNTED)
        self.read_only = read_only

    def record_error(self, when_ns: int, what: str) -> None:
        if self.read_only:
            return
        with self.transaction(1) as h, self.ks.bread(SUPERBLOCK) as bh:
            h.get_write_access(bh)
            old = read_errors(bh.data)
            write_errors(bh.data, old.added(when_ns, what) if old
                         else ErrorRecord(1, when_ns, what, when_ns, what))
            h.dirty_metadata(bh)

    def recorded_errors(self) -> ErrorRecord | None:
        with self.ks.bread(SUPERBLOCK) as bh:
            return read_errors(bh.data)

    def destroy(self) -> None:
        if self.read_only:
            return
        try:
            # Unmount drops every lookup and handle (the kernel need not send the
            # forgets first): unlinked inodes go now, so the orphan list ends empty.
            with self.icache.lock:
                gone = [ip for ip in self.icache.table.values() if ip.nlink == 0]
            for ip in gone:
                try:
                    self.file_io.reclaim(ip)
                except OSError:  # a corrupt inode: left on the orphan list for fsck
                    log.exception("xv6: freeing unlinked inode %d at unmount", ip.ino)
            with self.transaction() as h:
                update_superblock(self.ks, h, state=STATE_CLEAN)
            self.journal.force_commit()
        except OSError:
            log.exception("xv6: could not mark the file system clean")

    def report(self, name: str) -> bytes:
        """``hidden``: the hidden inode's bytes (provenance's records), read-only."""
        if name != "hidden":
            raise FsError(errno.ENOENT, f"xv6 has no report {name!r}")
        if not self.icache.hidden_ino:
            return b""
        ip = self.icache.iget(self.icache.hidden_ino, hidden_ok=True)
        with ip.lock.read():
            return self.file_io.read_all(ip)

    # ------------------------------------------------------------ live upgrade

    def prepare_upgrade(self) -> UpgradeState:
        """Lookup counts, open handles, fsync's debts, the orphan list and the
        allocator's arrays, as plain data (_upgrade.py). Only reads: if the upgrade
        fails, this instance serves on."""
        with self.icache.lock:
            lookups = self.icache.lookups  # handed over, not copied (_upgrade.py)
            table = self.icache.table
            device = self.ks.device
            debts = [(ino, sorted(ip.dirty_data), owes)
                     for ino in list(self.icache.indebted) if (ip := table.get(ino)) is not None
                     and ((owes := ip.owes_flush(device)) or ip.dirty_data)]
            files = [(fh, of.ip.ino, of.flags, of.req) for fh, of in self.open_files.items()]
            old = self.icache.inherited  # what a predecessor left that nothing has used yet
            debts += [(ino, dirty, unflushed) for ino, (dirty, unflushed) in old.debts.items()]
            files += [(fh, *rest) for fh, rest in old.files.items()]
            next_fh = next(self._fh)
            self._fh = itertools.count(next_fh)
        return upgrade_state.encode(upgrade_state.Snapshot(
            options={"read_only": self.read_only, "atime": self.atime,
                     "diratime": self.diratime}, lookups=lookups,
            debts=debts, files=files, next_fh=next_fh, orphans=list(self.orphans.inos),
            alloc=self.alloc.handover()))

    def prepare_recovery(self) -> UpgradeState:
        """The upgrade state less what blocks hold: after an undo the bitmaps and
        the orphan chain on disk are right, memory's copies may not be."""
        state = self.prepare_upgrade()
        state.data["alloc"] = state.data["orphans"] = None
        return state

    @classmethod
    def from_upgrade(cls, state: UpgradeState, ks: KernelServices) -> Self:
        """The successor: attach to the same services, take the state lazily."""
        snap, inherited = upgrade_state.decode(state, cls.__name__)
        fs = cls(read_only=bool(snap.options["read_only"]), atime=str(snap.options["atime"]),
                 diratime=bool(snap.options.get("diratime", True)))
        fs.attach(ks, snap.alloc)
        if snap.orphans is None:
            fs.orphans.load()
        else:
            fs.orphans.inos = snap.orphans
        fs.icache.inherited = inherited
        with fs.icache.lock:
            try:
                if snap.lookups.ndim == 1:
                    if len(snap.lookups) != len(fs.icache.lookups):
                        raise IndexError
                    fs.icache.lookups = snap.lookups
                else:
                    fs.icache.lookups[snap.lookups[:, 0]] += snap.lookups[:, 1]
            except IndexError:
                raise FsError(errno.EPROTO, f"{cls.__name__}: lookups of inodes this "
                              "file system does not have") from None
            for ip in fs.icache.table.values():  # the root, loaded by attach
                fs.icache.take_inherited(ip)
        fs._fh = itertools.count(snap.next_fh)
        return fs

    def _adopt(self, fh: int) -> OpenFile | None:
        """Turn a handle inherited from a predecessor into an ``OpenFile``."""
        with self.icache.lock:
            taken = self.icache.inherited.files.pop(fh, None)
        if taken is None:
            return None
        ino, flags, req = taken
        of = OpenFile(self.icache.iget(ino), flags, req)  # nopen came with the inode
        with self.icache.lock:
            self.open_files[fh] = of
        return of

    # ------------------------------------------------------------ the extension seam
    # What a subclass may call and override, with its contract. Besides these, the
    # layers are public attributes once ``attach`` ran: ``ks``, ``geo``, ``journal``,
    # ``alloc``, ``bmap``, ``dirs``, ``icache``, ``orphans``, ``names``, ``file_io``.

    def attach(self, ks: KernelServices, alloc: dict[str, Any] | None = None) -> int:
        """Everything ``init`` and ``from_upgrade`` share: read the superblock, open
        (or find) the journal, build the layers (``alloc``: a predecessor's
        allocator). Changes nothing on disk except by journal recovery. Returns the
        mount count. A subclass extends it to set up its own in-memory state: call
        ``super().attach`` first; the root is loaded, nothing else."""
        self.ks = ks
        self.read_only = self.read_only or ks.device.read_only
        what = ks.device.name
        with ks.bread(SUPERBLOCK) as bh:
            geo = read_geometry(bh.data, ks.device.nblocks, what)
            uuid = bytes(superblock_view(bh.data)["uuid"])
        self.uuid = uuid
        journal, _ = ks.open_journal(JOURNAL_START, geo.journal_blocks, uuid)
        self.journal: Journal = journal
        with ks.bread(SUPERBLOCK) as bh:  # replay may have rewritten it: read it now
            self.geo: Geometry = read_geometry(bh.data, ks.device.nblocks, what)
            sb = superblock_view(bh.data)
            mount_count, hidden_ino = int(sb["mount_count"]), int(sb["hidden_ino"])
        self.credits = min(journal.max_transaction, 256)
        if journal.max_transaction < OP_CREDITS:
            raise FsError(errno.EINVAL, f"{what}: the journal is too small for xv6 operations "
                          f"({journal.max_transaction} blocks per transaction, {OP_CREDITS} needed)")
        self.alloc = Allocator(ks, self.geo, alloc)
        self.bmap = BlockMap(ks, self.geo, self.alloc)
        self.dirs = Directories(ks, self.bmap, self.geo.ninodes)
        self.icache = InodeCache(ks, self.geo, self.alloc, lambda ino: ino in self.orphans)
        self.icache.hidden_ino = hidden_ino  # a file with no name, kept for its owner
        self.orphans = OrphanList(ks, self.icache)
        self.names = Names(ks, self.dirs, self.bmap, self.icache, self.orphans)
        self.file_io = FileIO(ks, journal, self.alloc, self.bmap, self.icache, self.orphans,
                              self.transaction, self.credits)
        self.ns = ks.rwsem("xv6.namespace")
        self.open_files: dict[int, OpenFile] = {}
        self._fh = itertools.count(1)
        root = self.icache.iget(ROOT_INODE)
        if not root.is_dir:
            raise corrupt(f"{what}: the root inode is not a directory")
        self.icache.lookups[ROOT_INODE] = 1 << 40  # the kernel never forgets the root
        return mount_count

    def _writable(self) -> None:
        if self.read_only:
            raise FsError(errno.EROFS)

    def transaction(self, credits: int = OP_CREDITS) -> AbstractContextManager[Handle]:
        """Every journal handle an operation starts for its metadata comes from here
        (the data-moving handles of a write do not: ``FileIO.write``). A subclass may
        wrap the handle to add its own changes to the same transaction: it must ask
        ``super()`` for ``credits`` plus the blocks it adds, and let exceptions
        through. At most ``self.credits`` are granted."""
        return self.journal.start(min(credits, self.credits))

    def created(self, h: Handle, dp: Inode, name: bytes, ip: Inode) -> None:
        """Called inside handle ``h`` right after ``ip`` was made and named ``name``
        in ``dp`` (create, mkdir, mknod, symlink), with ``dp`` locked for writing.
        Does nothing here; a subclass may note the birth (in ``h``) but not fail."""

    def hidden_inode(self, h: Handle | None) -> Inode | None:
        """The hidden inode — a file no directory names, kept for a subclass's own
        records (fsck knows it, plain xv6 keeps it). Made in ``h`` the first time
        when ``h`` is given; None if there is none and ``h`` is None."""
        if self.icache.hidden_ino:
            return self.icache.iget(self.icache.hidden_ino, hidden_ok=True)
        if h is None:
            return None
        ip = self.icache.ialloc(h, stat.S_IFREG | 0o600, 0, 0)
        self.icache.iupdate(h, ip)
        update_superblock(self.ks, h, hidden_ino=ip.ino)
        self.icache.hidden_ino = ip.ino
        self.icache.insert(ip)
        return ip

    def open_file(self, fh: int) -> OpenFile:
        """The open file behind a handle (EBADF if there is none)."""
        of = self.open_files.get(fh)
        if of is None:
            of = self._adopt(fh)
            if of is None:
                raise FsError(errno.EBADF)
        return of

    def directory(self, ino: int) -> Inode:
        """The directory inode ``ino`` (ENOTDIR if it is something else)."""
        dp = self.icache.iget(ino)
        if not dp.is_dir:
            raise FsError(errno.ENOTDIR)
        return dp
