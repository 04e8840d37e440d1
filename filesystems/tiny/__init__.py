"""tiny: a small but real file system on the public API, meant to be read in one sitting
(docs/tutorial.md builds it up one operation at a time).

The disk, in 4 KiB blocks::

    0          superblock: magic, sizes, where each area starts, the journal's uuid
    1 ..       the journal (the kernel services keep it)
    then       the inode table: 32 inodes of 128 bytes a block; inode 1 is the root
    then       the block bitmap: one bit a block, 1 = in use
    then       data: file contents, directory entries, indirect blocks

An inode maps its blocks with 12 direct pointers, one indirect block (1,024 more) and
one double-indirect block (a million more); a zero pointer is a hole. A free inode
has mode 0. A directory is a file of 264-byte entries (inode number, name length,
name; inode 0 marks a free slot); '.' and '..' are not stored: a directory's inode
keeps its parent. Regular files and directories only: no links, no symlinks.

Every operation runs under one lock (the big kernel lock: simple, and FUSE sends
one request at a time anyway) and changes the disk in one journal transaction, file
data included (ext4's data=journal): after a crash each operation happened entirely
or not at all, and fsync only has to commit. An unlinked inode lives on while the
kernel holds it (lookups, open files); a crash leaves it with no name and no link,
so mount frees every inode with no links.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from bento_user.api import (RENAME_EXCHANGE, RENAME_NOREPLACE, Attr, DirEntry, FileHandle,
                            Filesystem, FsckReport, FsError, InodeNo, Progress, Request,
                            SetAttr, StatFs, UpgradeState)
from bento_user.blockdev import BlockDevice
from bento_user.ks_emul import BufferCache, Handle, Journal, KernelServices

BS, ROOT, NDIRECT, PER = 4096, 1, 12, 1024
MAGIC = b"TINYFS01"
SUPER = np.dtype([("magic", "S8"), ("nblocks", "<u4"), ("ninodes", "<u4"), ("journal", "<u4"),
                  ("itable", "<u4"), ("bitmap", "<u4"), ("data", "<u4"), ("uuid", "V16")])
INODE = np.dtype({"names": ["mode", "uid", "gid", "nlink", "parent", "size", "atime", "mtime",
                            "ctime", "addrs"], "itemsize": 128,
                  "formats": ["<u4"] * 5 + ["<u8", "<i8", "<i8", "<i8", ("<u4", 14)]})
DIRENT = np.dtype([("ino", "<u4"), ("len", "<u2"), ("name", "V258")])
IPB, EPB = BS // INODE.itemsize, BS // DIRENT.itemsize
MAX_SIZE, MAX_DIR = (NDIRECT + PER + PER * PER) * BS, (NDIRECT + PER) * BS


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

    @classmethod
    def mkfs(cls, device: BlockDevice, progress: Progress | None = None, **options: int) -> str:
        check(not options and device.nblocks >= 1024, errno.EINVAL,
              "tiny takes no mkfs options and needs at least 4 MiB")
        g = layout(device.nblocks)
        cache = BufferCache(device, capacity=256)
        for b in range(g["itable"], g["data"] + 1):  # the tables and the root's block
            with cache.getblk(b) as bh:
                bh.data[:] = 0
                bh.mark_dirty()
        with cache.bread(g["bitmap"]) as bh:
            bh.data[:] = np.packbits(np.arange(BS * 8) <= g["data"], bitorder="little")
            bh.mark_dirty()
        with cache.bread(g["itable"]) as bh:
            bh.data.view(INODE)[ROOT] = (stat.S_IFDIR | 0o755, 0, 0, 2, ROOT, BS, 0, 0, 0,
                                         [g["data"]] + [0] * 13)
            bh.mark_dirty()
        tag = uuid.uuid4().bytes
        Journal.format(cache, 1, g["journal"], tag)
        cache.sync()  # everything else first: the superblock makes it a file system
        with cache.bread(0) as bh:
            bh.data[:SUPER.itemsize].view(SUPER)[0] = (MAGIC, *(g[k] for k in SUPER.names[1:7]), tag)
            bh.mark_dirty()
        cache.sync()
        return f"tiny, {g['nblocks']} blocks, {g['ninodes'] - 2} inodes, {g['journal']}-block journal"

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
            with self._tx() as h:
                self._truncate(h, int(ino), 0, free=True)  # unlinked, then a crash

    def _attach(self, ks: KernelServices) -> None:
        """Find the journal, then read the superblock, the inode table and the bitmap:
        all that memory needs."""
        self.ks, self.handles, self.next_fh = ks, {}, 1
        self.lock, self.refs = ks.mutex("tiny"), Counter[int]()
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
        """What only memory knows: the kernel's lookups and the open files."""
        return UpgradeState("tiny/1", {"refs": dict(self.refs), "handles": dict(self.handles),
                                       "next_fh": self.next_fh})

    @classmethod
    def from_upgrade(cls, state: UpgradeState, ks: KernelServices) -> Tiny:
        check(state.schema == "tiny/1", errno.EPROTO)
        fs = cls()
        fs._attach(ks)  # the disk is as the predecessor left it, the journal still open
        fs.refs.update(state.data["refs"])
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
        if lblk < NDIRECT:
            slot, path = lblk, []
        elif lblk < NDIRECT + PER:
            slot, path = NDIRECT, [lblk - NDIRECT]
        else:
            slot, path = NDIRECT + 1, list(divmod(lblk - NDIRECT - PER, PER))
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
        for slot, first, depth in [(s, s, 0) for s in range(NDIRECT)] + [
                (NDIRECT, NDIRECT, 1), (NDIRECT + 1, NDIRECT + PER, 2)]:
            self._drop(h, r["addrs"], slot, first, depth, keep)
        r["size"], r["mode"] = size, 0 if free else r["mode"]
        self._put(h, ino)

    def _drop(self, h: Handle, ptrs: np.ndarray, i: int, first: int, depth: int, keep: int) -> None:
        """Free what ``ptrs[i]`` maps from logical block ``keep`` on (it maps
        ``PER ** depth`` blocks from ``first``), and the block itself if none is kept."""
        b = self._valid(ptrs[i])
        if not b or keep >= first + PER ** depth:
            return
        check(self.used[b], errno.EUCLEAN)  # freed already: claimed twice, a corrupt map
        if depth and keep > first:  # partly kept: shrink its children in place
            with self._change(h, b) as d:
                self._drop_children(h, d.view("<u4"), first, depth, keep)
            return
        if depth:                   # none kept: the children go first
            self._drop_children(h, self._read(b).view("<u4"), first, depth, keep)
        self._set_used(h, b, False)
        ptrs[i] = 0

    def _drop_children(self, h: Handle, kids: np.ndarray, first: int, depth: int, keep: int) -> None:
        for j in np.flatnonzero(kids):
            self._drop(h, kids, int(j), first + int(j) * PER ** (depth - 1), depth - 1, keep)

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
        return next(((s, i) for s, i, n in self._entries(dino) if n == name), (-1, 0))

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

    def _may(self, req: Request, ino: int, mask: int) -> np.void:
        r = self._inode(ino)
        check(req.may(int(r["mode"]), int(r["uid"]), int(r["gid"]), mask), errno.EACCES)
        return r

    def _dir(self, req: Request, ino: int, mask: int = os.X_OK) -> np.void:
        check(is_dir(self._inode(ino)), errno.ENOTDIR)
        return self._may(req, ino, mask)

    def _attr(self, ino: int, count: int = 0) -> Attr:
        r = self._inode(ino)
        self.refs[ino] += count  # the kernel's lookups of it
        return Attr(InodeNo(ino), int(r["mode"]), int(r["nlink"]), int(r["uid"]), int(r["gid"]),
                    int(r["size"]), 0, int(r["atime"]), int(r["mtime"]), int(r["ctime"]))

    def lookup(self, req: Request, parent: InodeNo, name: bytes) -> Attr:
        with self.lock:
            self._dir(req, parent)
            check(len(name) <= 255, errno.ENAMETOOLONG)
            ino = self._find(parent, name)[1]
            check(ino, errno.ENOENT)
            return self._attr(ino, count=1)

    def forget(self, items: Sequence[tuple[InodeNo, int]]) -> None:
        with self.lock:
            for ino, n in items:
                self.refs[ino] -= n
                self._free_if_unused(ino)

    def _free_if_unused(self, ino: int) -> None:
        r = self._inode(ino)
        if self.refs[ino] <= 0 and r["nlink"] == 0 and r["mode"]:
            with self._tx() as h:
                self._truncate(h, ino, 0, free=True)

    def _new(self, req: Request, parent: int, name: bytes, mode: int) -> int:
        d = self._dir(req, parent)
        check(len(name) <= 255, errno.ENAMETOOLONG)
        check(not self._find(parent, name)[1], errno.EEXIST)
        self._dir(req, parent, os.W_OK | os.X_OK)
        free = np.flatnonzero(self.table["mode"][2:] == 0)
        check(len(free), errno.ENOSPC)
        ino, now = int(free[0]) + 2, self.ks.now_ns()
        with self._tx(8) as h:
            self._set_entry(h, parent, -1, ino, name)  # ENOSPC here leaves the inode free
            self.table[ino] = (mode, req.uid, req.gid, 1 + stat.S_ISDIR(mode), parent,
                               0, now, now, now, [0] * 14)
            d["nlink"] += stat.S_ISDIR(mode)
            d["mtime"] = d["ctime"] = now
            self._put(h, ino, parent)
        return ino

    def mkdir(self, req: Request, parent: InodeNo, name: bytes, mode: int) -> Attr:
        with self.lock:
            return self._attr(self._new(req, parent, name, stat.S_IFDIR | mode & 0o7777 & ~req.umask), 1)

    def unlink(self, req: Request, parent: InodeNo, name: bytes) -> None:
        self._remove(req, parent, name, directory=False)

    def rmdir(self, req: Request, parent: InodeNo, name: bytes) -> None:
        self._remove(req, parent, name, directory=True)

    def _remove(self, req: Request, parent: int, name: bytes, directory: bool) -> None:
        with self.lock:
            self._dir(req, parent)
            slot, ino = self._find(parent, name)
            check(ino, errno.ENOENT)
            self._dir(req, parent, os.W_OK | os.X_OK)
            found_dir = is_dir(self._inode(ino))
            check(found_dir == directory, errno.EISDIR if found_dir else errno.ENOTDIR)
            check(not found_dir or next(self._entries(ino), None) is None, errno.ENOTEMPTY)
            with self._tx(8) as h:
                self._unname(h, parent, slot, ino)
            self._free_if_unused(ino)

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
        with self.lock:
            check(flags in (0, RENAME_NOREPLACE, RENAME_EXCHANGE), errno.EINVAL)
            (sslot, ino), (dslot, over) = self._find(parent, name), self._find(new_parent, new_name)
            check(ino and (over or flags != RENAME_EXCHANGE), errno.ENOENT)
            check(not over or flags != RENAME_NOREPLACE, errno.EEXIST)
            if over == ino:  # the VFS's order: a rename onto itself does nothing
                return
            check(flags != RENAME_EXCHANGE, errno.EINVAL)  # not implemented (rename_flags)
            up = new_parent
            while up != ROOT:  # a directory cannot move under itself
                check(up != ino, errno.EINVAL)
                up = int(self._inode(up)["parent"])
            r = self._inode(ino)
            moving_dir = is_dir(r)
            self._dir(req, parent, os.W_OK | os.X_OK), self._dir(req, new_parent, os.W_OK | os.X_OK)
            if moving_dir and parent != new_parent:
                self._may(req, ino, os.W_OK)  # its '..' changes
            if over:
                check(is_dir(self._inode(over)) == moving_dir, errno.ENOTDIR if moving_dir else errno.EISDIR)
                check(not moving_dir or next(self._entries(over), None) is None, errno.ENOTEMPTY)
            with self._tx(12) as h:
                if over:
                    self._unname(h, new_parent, dslot, over)
                self._set_entry(h, new_parent, dslot, ino, new_name)
                self._set_entry(h, parent, sslot, 0)
                if moving_dir and parent != new_parent:
                    r["parent"] = new_parent
                    self._inode(parent)["nlink"] -= 1
                    self._inode(new_parent)["nlink"] += 1
                for x in (parent, new_parent):
                    self._inode(x)["mtime"] = self._inode(x)["ctime"] = self.ks.now_ns()
                self._put(h, ino, parent, new_parent)
            if over:
                self._free_if_unused(over)

    # -- attributes ---------------------------------------------------------------------

    def getattr(self, req: Request, ino: InodeNo) -> Attr:
        with self.lock:
            return self._attr(ino)

    def setattr(self, req: Request, ino: InodeNo, changes: SetAttr,
                fh: FileHandle | None = None) -> Attr:
        with self.lock:
            r, c, now = self._inode(ino), changes, self.ks.now_ns()
            owner = req.checked or req.uid in (0, int(r["uid"]))
            check(owner or c.mode is None and c.uid is None and c.gid is None, errno.EPERM)
            check(c.uid in (None, int(r["uid"])) or req.uid == 0 or req.checked, errno.EPERM)
            check(c.gid in (None, int(r["gid"])) or req.uid == 0 or req.checked
                  or req.in_group(c.gid), errno.EPERM)  # the owner: to a group of theirs
            check(c.size is None or not is_dir(r), errno.EISDIR)
            if c.size is not None and fh is None:
                self._may(req, ino, os.W_OK)
            times = {t for t in (c.atime_ns, c.mtime_ns) if t is not None}
            check(owner or times <= {SetAttr.NOW}, errno.EPERM)
            if times and not owner:
                self._may(req, ino, os.W_OK)
            with self._tx() as h:
                if c.size is not None:
                    self._truncate(h, ino, min(c.size, int(r["size"])))
                    r["size"], r["mtime"] = c.size, now
                    self._kill_suid(req, r)
                if c.mode is not None:  # an owner outside the file's group cannot set setgid
                    sgid = stat.S_ISGID if req.uid and not req.checked and not req.in_group(int(r["gid"])) else 0
                    r["mode"] = stat.S_IFMT(int(r["mode"])) | c.mode & 0o7777 & ~sgid
                if c.uid is not None or c.gid is not None:
                    self._kill_suid(req, r, chown=True)
                    r["uid"], r["gid"] = (r["uid"] if c.uid is None else c.uid), (r["gid"] if c.gid is None else c.gid)
                for field, t in (("atime", c.atime_ns), ("mtime", c.mtime_ns)):
                    r[field] = r[field] if t is None else now if t == SetAttr.NOW else t
                r["ctime"] = now if c.ctime_ns is None else c.ctime_ns
                self._put(h, ino)
            return self._attr(ino)

    def statfs(self, req: Request) -> StatFs:
        with self.lock:
            free = int(np.count_nonzero(~self.used[self.g["data"]:]))
            files_free = int(np.count_nonzero(self.table["mode"][2:] == 0))
            return StatFs(BS, self.g["nblocks"] - self.g["data"], free, free, self.g["ninodes"] - 2, files_free)

    # -- files --------------------------------------------------------------------------

    def _kill_suid(self, req: Request, r: np.void, chown: bool = False) -> None:
        """A write by anyone but root, or any chown of a file: setuid goes; setgid too
        when group-executable or the caller is neither root nor in the file's group."""
        if (req.uid or chown) and not is_dir(r):
            outside = req.uid and not req.in_group(int(r["gid"]))
            sgid = stat.S_ISGID if r["mode"] & 0o010 or outside else 0
            r["mode"] = int(r["mode"]) & ~(stat.S_ISUID | sgid)

    def _handle(self, ino: int, flags: int, req: Request) -> FileHandle:
        self.refs[ino] += 1
        fh, self.next_fh = self.next_fh, self.next_fh + 1
        self.handles[fh] = (ino, flags, req)
        return FileHandle(fh)

    def open(self, req: Request, ino: InodeNo, flags: int) -> FileHandle:
        with self.lock:
            r = self._inode(ino)
            want = (os.R_OK, os.W_OK, os.R_OK | os.W_OK)[flags & os.O_ACCMODE]
            check(not is_dir(r) or want == os.R_OK, errno.EISDIR)
            self._may(req, ino, want | (os.W_OK if flags & os.O_TRUNC else 0))
            if flags & os.O_TRUNC and stat.S_ISREG(int(r["mode"])):  # read-only opens too
                with self._tx() as h:
                    self._truncate(h, ino, 0)
                    r["mtime"] = r["ctime"] = self.ks.now_ns()
                    self._kill_suid(req, r)
                    self._put(h, ino)
            return self._handle(ino, flags, req)

    def create(self, req: Request, parent: InodeNo, name: bytes, mode: int,
               flags: int) -> tuple[Attr, FileHandle]:
        with self.lock:
            ino = self._new(req, parent, name, stat.S_IFREG | mode & 0o7777 & ~req.umask)
            return self._attr(ino, count=1), self._handle(ino, flags, req)

    def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        with self.lock:
            ino, flags, _ = self.handles[fh]
            check(flags & os.O_ACCMODE != os.O_WRONLY, errno.EBADF)
            end, out = min(int(self._inode(ino)["size"]), offset + size), bytearray()
            for lblk in range(offset // BS, -(-end // BS)):
                b = self._bmap(None, ino, lblk)
                out += (self._read(b).tobytes() if b else bytes(BS))[max(offset - lblk * BS, 0):end - lblk * BS]
            return bytes(out)

    def write(self, fh: FileHandle, offset: int, data: bytes | memoryview) -> int:
        with self.lock:
            ino, flags, req = self.handles[fh]
            check(flags & os.O_ACCMODE != os.O_RDONLY, errno.EBADF)
            check(offset + len(data) <= MAX_SIZE, errno.EFBIG)
            r, src = self._inode(ino), np.frombuffer(data, np.uint8)
            step = max(1, self.journal.max_transaction - 8) * BS  # what one transaction holds
            for pos in range(offset, offset + len(src), step):
                stop = min(pos + step, offset + len(src))
                with self._tx(stop // BS - pos // BS + 5) as h:
                    for lblk in range(pos // BS, -(-stop // BS)):
                        lo, hi = max(pos, lblk * BS), min(stop, (lblk + 1) * BS)
                        with self._change(h, self._bmap(h, ino, lblk)) as d:
                            d[lo - lblk * BS:hi - lblk * BS] = src[lo - offset:hi - offset]
                    r["size"] = max(int(r["size"]), stop)
                    r["mtime"] = r["ctime"] = self.ks.now_ns()
                    self._kill_suid(req, r)
                    self._put(h, ino)
            return len(src)

    def release(self, fh: FileHandle) -> None:
        with self.lock:
            ino = self.handles.pop(fh)[0]
            self.refs[ino] -= 1
            self._free_if_unused(ino)

    def fsync(self, fh: FileHandle, datasync: bool) -> None:
        self.journal.force_commit()  # data=journal: the commit holds the data too

    def opendir(self, req: Request, ino: InodeNo) -> FileHandle:
        with self.lock:
            self._dir(req, ino, os.R_OK)
            return self._handle(ino, os.O_RDONLY, req)

    def readdir(self, fh: FileHandle, offset: int) -> Iterable[DirEntry]:
        with self.lock:
            return [DirEntry(name, InodeNo(ino), stat.S_IFMT(int(self._inode(ino)["mode"])), slot + 1)
                    for slot, ino, name in self._entries(self.handles[fh][0]) if slot >= offset]

    releasedir, fsyncdir = release, fsync
