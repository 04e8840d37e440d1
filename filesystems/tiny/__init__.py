"""tiny: a small but real file system on the public API, meant to be read in one sitting
(docs/tutorial.md builds it up one operation at a time).

The disk, in 4 KiB blocks::

    0          superblock: magic, sizes, where each area starts, the journal's uuid
    1 ..       the journal (the kernel services keep it)
    then       the inode table: 32 inodes of 128 bytes a block; inode 1 is the root
    then       the block bitmap: one bit a block, 1 = in use
    then       data: file contents, directory entries, indirect blocks

An inode maps its blocks with 12 direct pointers and two indirect blocks of 1,024
pointers each: files up to 8,240 KiB. A zero pointer is a hole. A free inode has
mode 0. A directory is a file of 264-byte entries (inode number, name length,
name; inode 0 marks a free slot); '.' and '..' are not stored: a directory's inode
keeps its parent. Regular files and directories only: no links, no symlinks.

tiny leaves to the kernel what Linux file systems leave to the VFS (``vfs_checks``):
who may do what, and that unlink names a file and rmdir a directory.

The runtime makes one call at a time (``serial``: no locks), and each operation
changes the disk in one journal transaction, file data included (ext4's
data=journal): after a crash each operation happened entirely or not at all (a
write: a prefix of its blocks, as on Linux), and fsync only has to commit. An
unlinked inode lives on while the kernel holds it (lookups, open files: the runtime
counts them and calls ``evict``); a crash leaves it with no name and no link, so
mount frees every inode with no links.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from bento_user.api import (RENAME_NOREPLACE, Attr, DirEntry, FileHandle, Filesystem,
                            FsckReport, FsError, InodeNo, Progress, Request, SetAttr, StatFs,
                            UpgradeState)
from bento_user.blockdev import BlockDevice
from bento_user.ks_emul import Handle, KernelServices

BS, ROOT, NDIRECT, PER = 4096, 1, 12, 1024
MAGIC = b"TINYFS02"
SUPER = np.dtype([("magic", "S8"), ("nblocks", "<u4"), ("ninodes", "<u4"), ("journal", "<u4"),
                  ("itable", "<u4"), ("bitmap", "<u4"), ("data", "<u4"), ("uuid", "V16")])
INODE = np.dtype({"names": ["mode", "uid", "gid", "nlink", "parent", "size", "atime", "mtime",
                            "ctime", "addrs"], "itemsize": 128,
                  "formats": ["<u4"] * 5 + ["<u8", "<i8", "<i8", "<i8", ("<u4", 14)]})
DIRENT = np.dtype([("ino", "<u4"), ("len", "<u2"), ("name", "V258")])
IPB, EPB = BS // INODE.itemsize, BS // DIRENT.itemsize
MAX_SIZE, MAX_DIR = (NDIRECT + 2 * PER) * BS, (NDIRECT + PER) * BS


def entries(block: np.ndarray) -> np.ndarray:
    """A directory block's entry slots (the last 136 bytes are unused)."""
    return block[:EPB * DIRENT.itemsize].view(DIRENT)


def layout(nblocks: int) -> dict[str, int]:
    """Where each area starts, for a device of ``nblocks``."""
    journal, ninodes = min(2048, max(256, nblocks // 16)), max(64, nblocks // 4) // IPB * IPB
    itable = 1 + journal
    bitmap = itable + ninodes // IPB
    return dict(nblocks=nblocks, ninodes=ninodes, journal=journal, itable=itable,
                bitmap=bitmap, data=bitmap + -(-nblocks // (BS * 8)))


def is_dir(r: np.void) -> bool:
    return stat.S_ISDIR(int(r["mode"]))


def check(ok: object, code: int, why: str | None = None) -> None:
    if not ok:
        raise FsError(code, why)


class Tiny(Filesystem):
    """The tutorial file system: files and directories, journaled (layout above)."""

    name = "tiny"
    ordered_metadata = True  # one journal, committed whole: any fsync persists everything
    rename_flags = RENAME_NOREPLACE
    vfs_checks = True
    serial = True  # the runtime makes one call at a time: no locks here

    @classmethod
    def mkfs(cls, device: BlockDevice, progress: Progress | None = None, **options: int) -> str:
        from .mkfs import mkfs
        return mkfs(device, **options)

    @classmethod
    def identify(cls, device: BlockDevice) -> str | None:
        return "tiny" if device.nblocks and device.read_block(0)[:8] == MAGIC else None

    @classmethod
    def fsck(cls, device: BlockDevice, progress: Progress | None = None) -> FsckReport:
        from .fsck import fsck
        return fsck(device)

    # -- life cycle ---------------------------------------------------------------------

    def init(self, ks: KernelServices) -> None:
        self._attach(ks)
        for ino in np.flatnonzero((self.table["mode"] != 0) & (self.table["nlink"] == 0)):
            self.evict(InodeNo(int(ino)))  # unlinked, then a crash: no one holds it now

    def _attach(self, ks: KernelServices) -> None:
        """Find the journal, then read the superblock, the inode table and the bitmap:
        all that memory needs."""
        self.ks, self.handles, self.next_fh = ks, {}, 1
        with ks.bread(0) as bh:
            sb = bh.data[:SUPER.itemsize].view(SUPER)[0].copy()
        self.g = {k: int(sb[k]) for k in SUPER.names[1:7]}
        check(bytes(sb["magic"]) == MAGIC and self.g == layout(ks.device.nblocks), errno.EINVAL,
              f"{ks.device.name}: not a tiny file system (of this size)")
        self.journal, _ = ks.open_journal(1, self.g["journal"], bytes(sb["uuid"]))
        bitmap = np.concatenate([self._read(b) for b in range(self.g["bitmap"], self.g["data"])])
        self.used = np.unpackbits(bitmap, bitorder="little")[:self.g["nblocks"]].astype(bool)
        # every inode, in memory: a change is made here, then _put into its journaled block
        self.table = np.concatenate([self._read(b) for b in range(self.g["itable"],
                                                                  self.g["bitmap"])]).view(INODE)

    def destroy(self) -> None:
        self.journal.force_commit()

    def prepare_upgrade(self) -> UpgradeState:
        """What only memory knows: the open files (the runtime counts the kernel's
        references, see ``evict``)."""
        return UpgradeState("tiny/2", {"handles": dict(self.handles), "next_fh": self.next_fh})

    @classmethod
    def from_upgrade(cls, state: UpgradeState, ks: KernelServices) -> Tiny:
        check(state.schema == "tiny/2", errno.EPROTO)
        fs = cls()
        fs._attach(ks)  # the disk is as the predecessor left it, the journal still open
        fs.handles, fs.next_fh = dict(state.data["handles"]), state.data["next_fh"]
        return fs

    # -- blocks and inodes --------------------------------------------------------------

    def _tx(self, blocks: int = 8) -> Handle:
        """A handle on the running transaction for changing up to ``blocks`` blocks
        (ask no more than needed: a handle that does not fit commits the transaction)."""
        return self.journal.start(min(blocks, self.journal.max_transaction))

    def _read(self, b: int) -> np.ndarray:
        with self.ks.bread(b) as bh:
            return bh.data.copy()

    @contextmanager
    def _change(self, h: Handle, b: int) -> Iterator[np.ndarray]:
        """Block ``b``'s bytes, to change inside transaction handle ``h``."""
        with self.ks.bread(b) as bh:
            h.get_write_access(bh)
            yield bh.data
            h.dirty_metadata(bh)

    def _inode(self, ino: int) -> np.void:
        """The inode's fields (a view of the table in memory; ``_put`` writes them)."""
        check(0 < ino < self.g["ninodes"], errno.ESTALE)
        r = self.table[ino]
        check(r["size"] <= (MAX_DIR if is_dir(r) else MAX_SIZE), errno.EUCLEAN)
        return r

    def _put(self, h: Handle, *inos: int) -> None:
        for ino in inos:
            with self._change(h, self.g["itable"] + ino // IPB) as d:
                d.view(INODE)[ino % IPB] = self.table[ino]

    def _set_used(self, h: Handle, b: int, used: bool) -> None:
        self.used[b] = used
        with self._change(h, self.g["bitmap"] + b // (BS * 8)) as d:
            d[b % (BS * 8) // 8] = np.packbits(self.used[b // 8 * 8:b // 8 * 8 + 8], bitorder="little")[0]

    def _bmap(self, h: Handle | None, ino: int, lblk: int) -> int:
        """The block holding logical block ``lblk``: 0 for a hole, unless ``h`` is
        given: then the missing blocks (data and indirect) are allocated, zeroed."""
        r = self._inode(ino)
        slot, path = (lblk, []) if lblk < NDIRECT else (NDIRECT + (lblk - NDIRECT) // PER,
                                                         [(lblk - NDIRECT) % PER])
        ptrs, i, parent = r["addrs"], slot, 0
        for nxt in [*path, None]:
            if not ptrs[i] and h:
                free = np.flatnonzero(~self.used[self.g["data"]:])
                check(len(free), errno.ENOSPC)
                ptrs[i] = b = self.g["data"] + int(free[0])
                self._set_used(h, b, True)
                with self._change(h, b) as d:
                    d[:] = 0
                self._repoint(h, parent, i, b) if parent else self._put(h, ino)
            if nxt is None or not ptrs[i]:
                return self._valid(ptrs[i])
            parent, ptrs, i = int(ptrs[i]), self._read(self._valid(ptrs[i])).view("<u4"), nxt
        return 0

    def _valid(self, b: int) -> int:
        """A block pointer read from disk: 0 or inside the data area (corruption)."""
        check(not b or self.g["data"] <= b < self.g["nblocks"], errno.EUCLEAN)
        return int(b)

    def _repoint(self, h: Handle, block: int, i: int, b: int) -> None:
        with self._change(h, block) as d:
            d.view("<u4")[i] = b

    def _truncate(self, h: Handle, ino: int, size: int, free: bool = False) -> None:
        """Free every block past ``size``; with ``free``, the inode too."""
        r, keep = self._inode(ino), -(-size // BS)
        if size % BS and (b := self._bmap(None, ino, size // BS)):
            with self._change(h, b) as d:
                d[size % BS:] = 0  # a later extension must read zeros here
        for i in range(NDIRECT + 2):  # slot i maps logical blocks from ``first`` on
            first = i if i < NDIRECT else NDIRECT + (i - NDIRECT) * PER
            if i >= NDIRECT and self._valid(r["addrs"][i]) and keep < first + PER:
                with self._change(h, int(r["addrs"][i])) as d:
                    kids, start = d.view("<u4"), max(keep - first, 0)
                    for j in np.flatnonzero(kids[start:]) + start:
                        self._free(h, kids, int(j))
            if keep <= first:
                self._free(h, r["addrs"], i)
        r["size"], r["mode"] = size, 0 if free else r["mode"]
        self._put(h, ino)

    def _free(self, h: Handle, ptrs: np.ndarray, i: int) -> None:
        """Free the block ``ptrs[i]`` points to, if any, and clear the pointer."""
        if b := self._valid(ptrs[i]):
            check(self.used[b], errno.EUCLEAN)  # freed already: claimed twice, a corrupt map
            self._set_used(h, b, False)
            ptrs[i] = 0

    # -- directories --------------------------------------------------------------------

    def _entries(self, dino: int) -> Iterator[tuple[int, int, bytes]]:
        """(slot, inode, name) of each entry of directory ``dino``."""
        for lblk in range(int(self._inode(dino)["size"]) // BS):
            b = self._bmap(None, dino, lblk)
            for i, e in enumerate(entries(self._read(b)) if b else []):
                if e["ino"]:
                    yield lblk * EPB + i, int(e["ino"]), bytes(e["name"])[:e["len"]]

    def _find(self, dino: int, name: bytes) -> tuple[int, int]:
        """(slot, inode) of ``name`` in ``dino``; (-1, 0) if there is none."""
        check(len(name) <= 255, errno.ENAMETOOLONG)
        return next(((s, i) for s, i, n in self._entries(dino) if n == name), (-1, 0))

    def _empty(self, ino: int) -> bool:
        """Not a directory, or one without entries."""
        return not is_dir(self._inode(ino)) or next(self._entries(ino), None) is None

    def _set_entry(self, h: Handle, dino: int, slot: int, ino: int, name: bytes = b"") -> None:
        """Write entry ``slot`` (-1: the first free one, growing the directory)."""
        if slot < 0:
            taken = {s for s, _, _ in self._entries(dino)}
            slot = next(s for s in itertools.count() if s not in taken)
            check(slot < MAX_DIR // BS * EPB, errno.ENOSPC)
            d = self._inode(dino)
            d["size"] = max(int(d["size"]), (slot // EPB + 1) * BS)
        with self._change(h, self._bmap(h, dino, slot // EPB)) as blk:
            entries(blk)[slot % EPB] = (ino, len(name), name.ljust(258, b"\0"))

    # -- names --------------------------------------------------------------------------

    def _attr(self, ino: int) -> Attr:
        r = self._inode(ino)
        return Attr(InodeNo(ino), int(r["mode"]), int(r["nlink"]), int(r["uid"]), int(r["gid"]),
                    int(r["size"]), 0, int(r["atime"]), int(r["mtime"]), int(r["ctime"]))

    def lookup(self, req: Request, parent: InodeNo, name: bytes) -> Attr:
        ino = self._find(parent, name)[1]
        check(ino, errno.ENOENT)
        return self._attr(ino)

    def evict(self, ino: InodeNo) -> None:
        """The kernel holds it no more (no lookups, no open files): free it if it
        has no name left."""
        if (r := self._inode(ino))["nlink"] == 0 and r["mode"]:
            with self._tx() as h:
                self._truncate(h, ino, 0, free=True)

    def _new(self, req: Request, parent: int, name: bytes, mode: int) -> int:
        check(not self._find(parent, name)[1], errno.EEXIST)
        free = np.flatnonzero(self.table["mode"][2:] == 0)
        check(len(free), errno.ENOSPC)
        ino, now, d = int(free[0]) + 2, self.ks.now_ns(), self._inode(parent)
        with self._tx(8) as h:
            self._set_entry(h, parent, -1, ino, name)  # ENOSPC here leaves the inode free
            self.table[ino] = (mode & ~req.umask, req.uid, req.gid, 1 + stat.S_ISDIR(mode),
                               parent, 0, now, now, now, [0] * 14)
            d["nlink"] += stat.S_ISDIR(mode)
            d["mtime"] = d["ctime"] = now
            self._put(h, ino, parent)
        return ino

    def mkdir(self, req: Request, parent: InodeNo, name: bytes, mode: int) -> Attr:
        return self._attr(self._new(req, parent, name, stat.S_IFDIR | mode & 0o7777))

    def rmdir(self, req: Request, parent: InodeNo, name: bytes) -> None:
        """rmdir and unlink: the kernel has checked which of the two ``name`` is."""
        slot, ino = self._find(parent, name)
        check(ino, errno.ENOENT)
        check(self._empty(ino), errno.ENOTEMPTY)
        with self._tx(8) as h:
            self._unname(h, parent, slot, ino)

    def _unname(self, h: Handle, parent: int, slot: int, ino: int) -> None:
        """Entry ``slot`` of ``parent`` (naming ``ino``) is gone: count the links."""
        r, d = self._inode(ino), self._inode(parent)
        self._set_entry(h, parent, slot, 0)
        d["nlink"] -= is_dir(r)
        r["nlink"] = 0
        r["ctime"] = d["mtime"] = d["ctime"] = self.ks.now_ns()
        self._put(h, ino, parent)

    def rename(self, req: Request, parent: InodeNo, name: bytes, new_parent: InodeNo,
               new_name: bytes, flags: int = 0) -> None:
        """The kernel has checked the names, their kinds, and that a directory does
        not move under itself; a rename onto itself never comes here."""
        check(flags in (0, RENAME_NOREPLACE), errno.EINVAL)  # RENAME_EXCHANGE: not here
        (sslot, ino), (dslot, over) = self._find(parent, name), self._find(new_parent, new_name)
        check(ino, errno.ENOENT)
        check(not over or self._empty(over), errno.ENOTEMPTY)
        r = self._inode(ino)
        with self._tx(12) as h:
            if over:
                self._unname(h, new_parent, dslot, over)
            self._set_entry(h, new_parent, dslot, ino, new_name)
            self._set_entry(h, parent, sslot, 0)
            if is_dir(r) and parent != new_parent:
                r["parent"] = new_parent
                self._inode(parent)["nlink"] -= 1
                self._inode(new_parent)["nlink"] += 1
            for x in (parent, new_parent):
                self._inode(x)["mtime"] = self._inode(x)["ctime"] = self.ks.now_ns()
            self._put(h, ino, parent, new_parent)

    # -- attributes ---------------------------------------------------------------------

    def getattr(self, req: Request, ino: InodeNo) -> Attr:
        return self._attr(ino)

    def setattr(self, req: Request, ino: InodeNo, changes: SetAttr,
                fh: FileHandle | None = None) -> Attr:
        r, c, now = self._inode(ino), changes, self.ks.now_ns()
        check(c.size is None or c.size <= MAX_SIZE, errno.EFBIG)
        with self._tx() as h:
            if c.size is not None:
                self._truncate(h, ino, min(c.size, int(r["size"])))
                r["size"], r["mtime"] = c.size, now
            if c.uid is not None or c.gid is not None or c.size is not None and req.uid:
                r["mode"] = req.killed_suid(int(r["mode"]), int(r["gid"]))  # chown: root's too
            new = {"mode": None if c.mode is None else stat.S_IFMT(int(r["mode"])) | c.mode & 0o7777,
                   "uid": c.uid, "gid": c.gid, "atime": c.atime_ns, "mtime": c.mtime_ns,
                   "ctime": now if c.ctime_ns is None else c.ctime_ns}
            for field, value in new.items():
                r[field] = r[field] if value is None else now if value == SetAttr.NOW else value
            self._put(h, ino)
        return self._attr(ino)

    def statfs(self, req: Request) -> StatFs:
        free = int(np.count_nonzero(~self.used[self.g["data"]:]))
        files_free = int(np.count_nonzero(self.table["mode"][2:] == 0))
        return StatFs(BS, self.g["nblocks"] - self.g["data"], free, free, self.g["ninodes"] - 2, files_free)

    # -- files --------------------------------------------------------------------------

    def _handle(self, ino: int, req: Request) -> FileHandle:
        fh, self.next_fh = self.next_fh, self.next_fh + 1
        self.handles[fh] = (ino, req)
        return FileHandle(fh)

    def open(self, req: Request, ino: InodeNo, flags: int) -> FileHandle:
        if flags & os.O_TRUNC and stat.S_ISREG(int(self._inode(ino)["mode"])):  # read-only too
            self.setattr(req, ino, SetAttr(size=0))
        return self._handle(ino, req)

    def create(self, req: Request, parent: InodeNo, name: bytes, mode: int,
               flags: int) -> tuple[Attr, FileHandle]:
        ino = self._new(req, parent, name, stat.S_IFREG | mode & 0o7777)
        return self._attr(ino), self._handle(ino, req)

    def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        ino = self.handles[fh][0]
        end, out = min(int(self._inode(ino)["size"]), offset + size), bytearray()
        for lblk in range(offset // BS, -(-end // BS)):
            b = self._bmap(None, ino, lblk)
            out += (self._read(b).tobytes() if b else bytes(BS))[max(offset - lblk * BS, 0):end - lblk * BS]
        return bytes(out)

    def write(self, fh: FileHandle, offset: int, data: bytes | memoryview) -> int:
        ino, req = self.handles[fh]
        check(offset + len(data) <= MAX_SIZE, errno.EFBIG)
        r, src, end = self._inode(ino), np.frombuffer(data, np.uint8), offset + len(data)
        for lblk in range(offset // BS, -(-end // BS) if len(src) else 0):  # a handle a block
            lo, hi = max(offset, lblk * BS), min(end, (lblk + 1) * BS)
            with self._tx(6) as h, self._change(h, self._bmap(h, ino, lblk)) as d:
                d[lo - lblk * BS:hi - lblk * BS] = src[lo - offset:hi - offset]
                r["size"], r["mtime"] = max(int(r["size"]), hi), self.ks.now_ns()
                r["ctime"] = r["mtime"]
                r["mode"] = req.killed_suid(int(r["mode"]), int(r["gid"])) if req.uid else r["mode"]
                self._put(h, ino)
        return len(src)

    def release(self, fh: FileHandle) -> None:
        del self.handles[fh]

    def fsync(self, fh: FileHandle, datasync: bool) -> None:
        self.journal.force_commit()  # data=journal: the commit holds the data too

    def opendir(self, req: Request, ino: InodeNo) -> FileHandle:
        return self._handle(ino, req)

    def readdir(self, fh: FileHandle, offset: int) -> Iterable[DirEntry]:
        return [DirEntry(name, InodeNo(ino), stat.S_IFMT(int(self._inode(ino)["mode"])), slot + 1)
                for slot, ino, name in self._entries(self.handles[fh][0]) if slot >= offset]

    unlink, releasedir, fsyncdir = rmdir, release, fsync
