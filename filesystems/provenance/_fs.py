"""``Provenance``: xv6 that records who did what to which file, in the same
transaction as the deed.

Each recorded operation (FORMAT.md lists them) becomes a JSON line appended to the
file system's hidden inode (named by the superblock, by no directory) *inside the
journal handle that makes the operation's change*: the record commits if and only
if the change does, so after a crash provenance and data agree. Operations that
change nothing on disk (an open for reading, a first read, a close) get a handle of
their own. How: an operation wrapper leaves its record *pending* for the thread;
the first journal handle the operation starts (``_tx``) appends it when its body
finishes without an exception; an operation that started no handle appends it
afterwards.

The log inode is created in the first handle that needs it. Plain xv6 keeps it
(unreachable, fsck checks it), so a downgrade leaves a valid image with the records
still on disk, and an upgrade back appends to them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from bento_user.api import Attr, FileHandle, FsError, InodeNo, Request, SetAttr, UpgradeState
from bento_user.ks_emul import Handle, KernelServices
from filesystems.xv6 import Xv6
from filesystems.xv6._format import BLOCK_SIZE, ROOT_INO
from filesystems.xv6._fs import OP_CREDITS
from filesystems.xv6._inode import Inode, inode_records

LOG_CREDITS = 10     # the log's tail block, a new block with its bitmap and indirect
                     # blocks, the log inode, a new log inode and the superblock
NAMES_MAX = 200_000  # remembered (parent, name) of looked-up inodes, for paths


class _Pending(threading.local):
    record: dict[str, Any] | None = None


class Provenance(Xv6):
    """xv6 plus provenance capture (FORMAT.md in this folder: the records)."""

    name = "provenance"

    def _attach(self, ks: KernelServices, alloc: dict[str, Any] | None = None) -> int:
        mount_count = super()._attach(ks, alloc)
        self._pending = _Pending()
        self._log_lock = ks.mutex("provenance.log")
        self._names: dict[int, tuple[int, bytes]] = {}   # ino -> (parent, name) last seen
        self._seen: set[str] = set()                     # processes already described
        self._first: dict[int, set[str]] = {}            # fh -> {"read", "write"} recorded
        return mount_count

    # -- recording ------------------------------------------------------------------

    def _record(self, op: str, req: Request | None, **fields: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {"t": self.ks.now_ns(), "op": op}
        if req is not None:
            info = self.ks.process(req.pid)
            rec["proc"] = info.key
            if info.key not in self._seen:
                rec["process"] = {"pid": info.pid, "start": info.start, "exe": info.exe,
                                  "argv": list(info.argv), "uid": req.uid, "gid": req.gid,
                                  "ppid": info.ppid}
        rec.update(fields)
        return rec

    def _recorded(self, rec: dict[str, Any], fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` with ``rec`` pending: the first handle it starts carries
        the record; if it starts none, a handle of its own does, afterwards."""
        self._pending.record = rec
        try:
            result = fn(*args)
        except BaseException:
            self._pending.record = None
            raise
        if self._pending.record is rec:
            self._pending.record = None
            if not self.read_only:
                with Xv6._tx(self, LOG_CREDITS) as h:
                    self._append(h, rec)
        return result

    def _tx(self, credits: int = OP_CREDITS) -> Any:
        rec = self._pending.record
        if rec is None:
            return super()._tx(credits)
        return self._tx_carrying(credits + LOG_CREDITS, rec)

    @contextlib.contextmanager
    def _tx_carrying(self, credits: int, rec: dict[str, Any]) -> Iterator[Handle]:
        with super()._tx(credits) as h:
            yield h
            if self._pending.record is rec:  # not carried by an earlier handle
                self._pending.record = None
                self._append(h, rec)

    def _append(self, h: Handle, rec: dict[str, Any]) -> None:
        """Append ``rec`` (and its process's description, the first time) to the
        log, inside ``h``."""
        process = rec.pop("process", None)
        lines = []
        if process is not None:
            lines.append(json.dumps({"t": rec["t"], "op": "process", "proc": rec["proc"],
                                     **process}, separators=(",", ":")))
        lines.append(json.dumps(rec, separators=(",", ":")))
        data = ("\n".join(lines) + "\n").encode()
        with self._log_lock:
            ip = self._log_inode(h)
            pos = ip.size
            view = np.frombuffer(data, np.uint8)
            while len(view):
                lblk, off = divmod(pos, BLOCK_SIZE)
                pblk, new = self.bmap.map_alloc(h, ip, lblk, metadata=True)
                n = min(BLOCK_SIZE - off, len(view))
                with (self.ks.getblk(pblk) if new else self.ks.bread(pblk)) as bh:
                    h.get_write_access(bh)
                    if new:
                        bh.data[:] = 0
                    bh.data[off:off + n] = view[:n]
                    h.dirty_metadata(bh)
                pos += n
                view = view[n:]
            ip.size = pos
            ip.mtime_ns = ip.ctime_ns = rec["t"]
            self._store(h, ip)
            if process is not None:
                self._seen.add(rec["proc"])

    def _log_inode(self, h: Handle) -> Inode:
        """The hidden log inode, made (in ``h``) the first time. Caller holds the
        log lock."""
        if self.hidden_ino:
            return self._iget(self.hidden_ino, hidden_ok=True)
        ino = self.alloc.alloc_inode(h)
        if ino is None:
            raise FsError(errno.ENOSPC, "no free inode for the provenance log")
        ip = Inode(ino, self.ks.rwsem("xv6.inode"))
        block, slot = self.geo.inode_location(ino)
        with self.ks.bread(block) as bh:
            ip.generation = (int(inode_records(bh.data)[slot]["generation"]) + 1) & 0xFFFFFFFF
        ip.mode, ip.nlink = stat.S_IFREG | 0o600, 1
        ip.atime_ns = ip.mtime_ns = ip.ctime_ns = ip.crtime_ns = self.ks.now_ns()
        self._store(h, ip)
        self._update_sb(h, hidden_ino=ino)
        self.hidden_ino = ino
        with self.icache_lock:
            self.icache[ino] = ip
        return ip

    # -- names, for the paths records carry -------------------------------------------

    def _named(self, ino: int, parent: int, name: bytes) -> None:
        if len(self._names) >= NAMES_MAX:
            self._names.clear()
        self._names[ino] = (parent, name)

    def _path(self, ino: int) -> str | None:
        """The path the kernel last used for ``ino``, if every step is known."""
        parts = []
        for _ in range(64):
            if ino == ROOT_INO:
                return "/" + b"/".join(reversed(parts)).decode(errors="surrogateescape")
            step = self._names.get(ino)
            if step is None:
                return None
            ino, name = step
            parts.append(name)
        return None

    def _where(self, parent: int, name: bytes) -> dict[str, Any]:
        base = self._path(parent)
        text = name.decode(errors="surrogateescape")
        fields: dict[str, Any] = {"parent": parent, "name": text}
        if base is not None:
            fields["path"] = base.rstrip("/") + "/" + text
        return fields

    def _child_ino(self, parent: int, name: bytes) -> int | None:
        try:
            hit = self.dirs.lookup(self._dir(parent), name)
        except FsError:
            return None
        return None if hit is None else hit[0]

    # -- the recorded operations --------------------------------------------------------

    def lookup(self, req: Request, parent: InodeNo, name: bytes) -> Attr:
        attr = super().lookup(req, parent, name)
        if name not in (b".", b".."):
            self._named(attr.ino, parent, name)
        return attr

    def _new_inode(self, h: Handle, dp: Inode, name: bytes, mode: int, uid: int, gid: int,
                   rdev: int, target: bytes | None) -> Inode:
        ip = super()._new_inode(h, dp, name, mode, uid, gid, rdev, target)
        rec = self._pending.record
        if rec is not None and "ino" not in rec:
            rec["ino"] = ip.ino  # the record is appended when this handle ends
        self._named(ip.ino, dp.ino, name)
        return ip

    def create(self, req: Request, parent: InodeNo, name: bytes, mode: int,
               flags: int) -> tuple[Attr, FileHandle]:
        rec = self._record("create", req, **self._where(parent, name), mode=mode, flags=flags)
        attr, fh = self._recorded(rec, super().create, req, parent, name, mode, flags)
        return attr, fh

    def mkdir(self, req: Request, parent: InodeNo, name: bytes, mode: int) -> Attr:
        rec = self._record("mkdir", req, **self._where(parent, name), mode=mode)
        return self._recorded(rec, super().mkdir, req, parent, name, mode)

    def mknod(self, req: Request, parent: InodeNo, name: bytes, mode: int, rdev: int) -> Attr:
        rec = self._record("mknod", req, **self._where(parent, name), mode=mode, rdev=rdev)
        return self._recorded(rec, super().mknod, req, parent, name, mode, rdev)

    def symlink(self, req: Request, parent: InodeNo, name: bytes, target: bytes) -> Attr:
        rec = self._record("symlink", req, **self._where(parent, name),
                           target=target.decode(errors="surrogateescape"))
        return self._recorded(rec, super().symlink, req, parent, name, target)

    def link(self, req: Request, ino: InodeNo, new_parent: InodeNo, new_name: bytes) -> Attr:
        rec = self._record("link", req, ino=ino, **self._where(new_parent, new_name))
        attr = self._recorded(rec, super().link, req, ino, new_parent, new_name)
        self._named(ino, new_parent, new_name)
        return attr

    def unlink(self, req: Request, parent: InodeNo, name: bytes) -> None:
        rec = self._record("unlink", req, ino=self._child_ino(parent, name),
                           **self._where(parent, name))
        self._recorded(rec, super().unlink, req, parent, name)

    def rmdir(self, req: Request, parent: InodeNo, name: bytes) -> None:
        rec = self._record("rmdir", req, ino=self._child_ino(parent, name),
                           **self._where(parent, name))
        self._recorded(rec, super().rmdir, req, parent, name)

    def rename(self, req: Request, parent: InodeNo, name: bytes, new_parent: InodeNo,
               new_name: bytes, flags: int = 0) -> None:
        ino, replaced = self._child_ino(parent, name), self._child_ino(new_parent, new_name)
        to = self._where(new_parent, new_name)
        rec = self._record("rename", req, ino=ino, **self._where(parent, name),
                           new_parent=new_parent, new_name=to["name"], flags=flags)
        if "path" in to:
            rec["new_path"] = to["path"]
        if replaced is not None:
            rec["replaced"] = replaced
        self._recorded(rec, super().rename, req, parent, name, new_parent, new_name, flags)
        if ino is not None:
            self._named(ino, new_parent, new_name)

    def open(self, req: Request, ino: InodeNo, flags: int) -> FileHandle:
        acc = flags & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
        mode = {os.O_RDONLY: "read", os.O_WRONLY: "write"}.get(acc, "readwrite")
        rec = self._record("open", req, ino=ino, mode=mode, flags=flags)
        path = self._path(ino)
        if path is not None:
            rec["path"] = path
        fh = self._recorded(rec, super().open, req, ino, flags)
        self._first[fh] = set()
        return fh

    def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        data = super().read(fh, offset, size)
        self._first_use(fh, "read")
        return data

    def write(self, fh: FileHandle, offset: int, data: bytes | memoryview) -> int:
        seen = self._first.setdefault(fh, set())
        if "write" in seen:
            return super().write(fh, offset, data)
        of = self._file(fh)
        rec = self._record("write", of.req, ino=of.ip.ino, offset=offset)
        done = self._recorded(rec, super().write, fh, offset, data)
        seen.add("write")
        return done

    def _write_blocks(self, ip: Inode, offset: int, src: np.ndarray,
                      zero_only: bool = False) -> int:
        """The data moves in handles of its own; a write's record goes with the
        handle that sets the new size and mtime, the write's visible effect."""
        rec, self._pending.record = self._pending.record, None
        try:
            return super()._write_blocks(ip, offset, src, zero_only)
        finally:
            self._pending.record = rec

    def _first_use(self, fh: int, what: str) -> None:
        seen = self._first.setdefault(fh, set())
        if what in seen:
            return
        of = self._file(fh)
        seen.add(what)
        self._recorded(self._record(what, of.req, ino=of.ip.ino), lambda: None)

    def release(self, fh: FileHandle) -> None:
        self._first.pop(fh, None)
        try:
            of = self._file(fh)
        except FsError:
            return super().release(fh)
        if of.flags & os.O_DIRECTORY:  # releasedir: not a file's close
            return super().release(fh)
        self._recorded(self._record("close", of.req, ino=of.ip.ino), super().release, fh)

    def releasedir(self, fh: FileHandle) -> None:
        self._first.pop(fh, None)
        Xv6.release(self, fh)

    def setattr(self, req: Request, ino: InodeNo, changes: SetAttr,
                fh: FileHandle | None = None) -> Attr:
        fields: dict[str, Any] = {}
        if changes.size is not None:
            fields["size"] = changes.size
        if changes.mode is not None:
            fields["mode"] = changes.mode
        if changes.uid is not None:
            fields["uid"] = changes.uid
        if changes.gid is not None:
            fields["gid"] = changes.gid
        if not fields:  # times only: not recorded
            return super().setattr(req, ino, changes, fh)
        op = ("truncate" if "size" in fields else "chmod" if "mode" in fields else "chown")
        rec = self._record(op, req, ino=ino, **fields)
        return self._recorded(rec, super().setattr, req, ino, changes, fh)

    # -- live upgrade -------------------------------------------------------------------

    def prepare_upgrade(self) -> UpgradeState:
        state = super().prepare_upgrade()
        state.data["provenance"] = {"first": [(fh, sorted(s)) for fh, s in self._first.items()]}
        return state

    @classmethod
    def from_upgrade(cls, state: UpgradeState, ks: KernelServices) -> Xv6:
        fs = super().from_upgrade(state, ks)
        assert isinstance(fs, Provenance)
        mine = state.data.get("provenance")  # absent when coming from plain xv6
        if isinstance(mine, dict):
            fs._first = {fh: set(s) for fh, s in mine["first"]}
        return fs


def read_log(fs: Xv6) -> bytes:
    """The records on ``fs`` (plain xv6 keeps them after a downgrade)."""
    return fs.report("hidden")
