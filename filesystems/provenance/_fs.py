"""``Provenance``: xv6 that records who did what to which file, in the same
transaction as the deed.

Each recorded operation (FORMAT.md lists them) becomes a JSON line appended to the
file system's hidden inode (named by the superblock, by no directory) *inside the
journal handle that makes the operation's change*: the record commits if and only
if the change does, so after a crash provenance and data agree. How: an operation
wrapper leaves its record *pending* for the thread; the first journal handle the
operation starts (``transaction``) appends it when its body finishes without an exception.
Operations that start no handle changed nothing on disk (an open for reading, a
first read, a close): their records are queued and written, before its own, by the
next handle of any operation — so the reads that preceded a write are in the log
whenever the write is.

The log inode is created in the first handle that needs it. Plain xv6 keeps it
(unreachable, fsck checks it), so a downgrade leaves a valid image with the records
still on disk, and an upgrade back appends to them.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
from typing import Any

from bento_user.api import (
    ROOT_INODE,
    Attr,
    FileHandle,
    FsError,
    InodeNo,
    Request,
    SetAttr,
    UpgradeState,
)
from bento_user.ks_emul import Handle, KernelServices
from filesystems.xv6 import BLOCK_SIZE, INODE_DTYPE, INODE_SIZE, OP_CREDITS, Inode, Xv6

LOG_CREDITS = 16     # bitmap and indirect blocks for up to 4 new log blocks (DEFER_BYTES
                     # + one record), the log inode, a new log inode and the superblock
DEFER_BYTES = 8192   # queued records of operations that changed nothing, at most
RECORD_MAX = 3072    # a longer record loses its paths (argv is cut at 2 KiB already)
NAMES_MAX = 200_000  # remembered (parent, name) of looked-up inodes, and processes
                     # already described: past this, forgotten (described again)

_SIZE = struct.Struct("<Q")                      # the inode's size field ...
_SIZE_AT = INODE_DTYPE.fields["size"][1]          # ... and where it sits in the record

log = logging.getLogger(__name__)


def _json(rec: dict[str, Any]) -> str:
    """``json.dumps(rec, separators=(",", ":"))`` for a flat record of ints and
    strings, in a third of the time (this runs once per recorded operation)."""
    parts = []
    for k, v in rec.items():
        if type(v) is int:
            parts.append(f'"{k}":{v}')
        elif type(v) is str:
            parts.append(f'"{k}":{_quote(v)}')
        else:
            parts.append(f'"{k}":{json.dumps(v, separators=(",", ":"))}')
    return "{" + ",".join(parts) + "}"


_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


class _Pending(threading.local):
    record: dict[str, Any] | None = None


class _Carrying:
    """A journal handle that appends the queued records, and the operation's own
    if no earlier handle took it, when its body ends without an exception."""

    def __init__(self, fs: Provenance, tx: Any, rec: dict[str, Any] | None) -> None:
        self.fs, self.tx, self.rec = fs, tx, rec  # tx: what Xv6.transaction returns

    def __enter__(self) -> Handle:
        self.handle: Handle = self.tx.__enter__()
        return self.handle

    def __exit__(self, kind: type[BaseException] | None, *rest: Any) -> None:
        try:
            if kind is None:
                rec = self.rec
                if rec is not None and self.fs._pending.record is rec:
                    self.fs._pending.record = None  # carried here, not by a later handle
                else:
                    rec = None
                self.fs._append(self.handle, rec)
        finally:
            self.tx.__exit__(kind, *rest)


class Provenance(Xv6):
    """xv6 plus provenance capture (FORMAT.md in this folder: the records)."""

    name = "provenance"

    def attach(self, ks: KernelServices, alloc: dict[str, Any] | None = None) -> int:
        mount_count = super().attach(ks, alloc)
        self._pending = _Pending()
        self._log_lock = ks.mutex("provenance.log")
        self._names: dict[int, tuple[int, bytes]] = {}   # ino -> (parent, name) last seen
        self._seen: set[str] = set()                     # processes already described
        self._first: dict[int, set[str]] = {}            # fh -> {"read", "write"} recorded
        self._deferred: list[bytes] = []                 # encoded records waiting for a handle
        self._tail: tuple[int, int] | None = None        # the log's last block (logical, physical)
        self._log_ip: Inode | None = None                # the log's inode, once loaded
        return mount_count

    # -- recording ------------------------------------------------------------------

    def _record(self, op: str, req: Request | None, **fields: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {"t": self.ks.now_ns(), "op": op}
        if req is not None:
            info = self.ks.process(req.pid)
            rec["proc"] = info.key
            if info.key not in self._seen:  # _append writes it once
                rec["process"] = {"pid": info.pid, "start": info.start, "exe": info.exe,
                                  "argv": list(info.argv), "uid": req.uid, "gid": req.gid,
                                  "ppid": info.ppid}
        rec.update(fields)
        return rec

    def _recorded(self, rec: dict[str, Any], fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` with ``rec`` pending: the first handle it starts carries
        the record. If it starts none, it changed nothing on disk (an open, a read,
        a close): the record waits for the next handle of any operation."""
        self._pending.record = rec
        try:
            result = fn(*args)
        except BaseException:
            self._pending.record = None
            raise
        if self._pending.record is rec:
            self._pending.record = None
            self._defer(rec)
        return result

    def _defer(self, rec: dict[str, Any]) -> None:
        """Queue a record of an operation that changed nothing. The next handle
        carries it, before its own record, so a write's record is never on disk
        without the reads before it; a crash may lose queued records, whose
        operations left no trace either."""
        if self.read_only:  # nowhere to keep it
            return
        with self._log_lock:
            self._deferred.append(self._encode(rec))
            full = sum(map(len, self._deferred)) >= DEFER_BYTES
        if full:
            self.flush_records()

    def flush_records(self) -> None:
        """Write the queued records now (in a handle of their own)."""
        if self._deferred and not self.read_only:
            with Xv6.transaction(self, LOG_CREDITS) as h:
                self._append(h, None)

    def transaction(self, credits: int = OP_CREDITS) -> Any:
        rec = self._pending.record
        if rec is None and not self._deferred:
            return super().transaction(credits)
        return _Carrying(self, super().transaction(credits + LOG_CREDITS), rec)

    def _encode(self, rec: dict[str, Any]) -> bytes:
        """``rec`` as its line, after its process's description the first time.
        Caller holds the log lock. Queued lines are always written before any later
        one, so a description is never missing from a log that names its process."""
        process = rec.pop("process", None)
        out = b""
        if process is not None and rec["proc"] not in self._seen:
            line = {"t": rec["t"], "op": "process", "proc": rec["proc"], **process}
            text = json.dumps(line, separators=(",", ":"))
            while len(text) > RECORD_MAX and line["argv"]:  # escapes can outgrow 2 KiB
                line["argv"] = line["argv"][:len(line["argv"]) // 2]
                text = json.dumps(line, separators=(",", ":"))
            out = text.encode() + b"\n"
            if len(self._seen) >= NAMES_MAX:  # a long mount: describe them again
                self._seen.clear()
            self._seen.add(rec["proc"])
        line = _json(rec)
        if len(line) > RECORD_MAX:  # very long paths: the inode numbers and names stay
            line = _json({k: v for k, v in rec.items() if k not in ("path", "new_path")})
        return out + line.encode() + b"\n"

    def _append(self, h: Handle, rec: dict[str, Any] | None) -> None:
        """Append the queued records and ``rec`` to the log, inside ``h``."""
        with self._log_lock:
            batch, self._deferred = self._deferred, []
            if rec is not None:
                batch.append(self._encode(rec))
            if batch:
                self._write_log(h, b"".join(batch))

    def _write_log(self, h: Handle, data: bytes) -> None:
        """Append ``data`` to the log inode. Caller holds the log lock.

        The log's blocks are *ordered data*, like a file's: written home before the
        commit of the transaction whose inode size covers them, and never copied
        into the journal (journaling them doubled the writes). The size, journaled
        with the operation, is what makes a record visible; bytes past it are not
        part of the log. This runs once per recorded operation: plain memory
        copies, not NumPy views, and the size field patched in place."""
        ip = self._log_inode(h)
        pos, grew, done = ip.size, False, 0
        while done < len(data):
            lblk, off = divmod(pos, BLOCK_SIZE)
            if self._tail is not None and self._tail[0] == lblk:
                pblk, new = self._tail[1], False
            else:
                pblk, new = self.bmap.map_alloc(h, ip, lblk, metadata=False)
                self._tail, grew = (lblk, pblk), grew or new
            n = min(BLOCK_SIZE - off, len(data) - done)
            with (self.ks.getblk(pblk) if new else self.ks.bread(pblk)) as bh:
                if new:
                    bh.data[:] = 0
                memoryview(bh.data)[off:off + n] = data[done:done + n]
                bh.mark_dirty()
                h.ordered_data(bh)
            pos += n
            done += n
        ip.size = pos
        if grew:  # new blocks: pointers and counts change too
            self.icache.iupdate(h, ip)
        else:
            block, slot = self.geo.inode_location(ip.ino)
            with self.ks.bread(block) as bh:
                h.get_write_access(bh)
                _SIZE.pack_into(memoryview(bh.data), slot * INODE_SIZE + _SIZE_AT, pos)
                h.dirty_metadata(bh)

    def _log_inode(self, h: Handle) -> Inode:
        """The hidden log inode, made (in ``h``) the first time. Caller holds the
        log lock."""
        if self._log_ip is not None:
            return self._log_ip  # the icache's object: xv6 never drops the hidden inode
        self._log_ip = self.hidden_inode(h)
        assert self._log_ip is not None  # made in h if it did not exist
        return self._log_ip

    # -- names, for the paths records carry -------------------------------------------

    def _named(self, ino: int, parent: int, name: bytes) -> None:
        if len(self._names) >= NAMES_MAX:
            self._names.clear()
        self._names[ino] = (parent, name)

    def _path(self, ino: int) -> str | None:
        """The path the kernel last used for ``ino``, if every step is known."""
        parts = []
        for _ in range(64):
            if ino == ROOT_INODE:
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
            hit = self.dirs.lookup(self.directory(parent), name)
        except FsError:
            return None
        return None if hit is None else hit[0]

    # -- the recorded operations --------------------------------------------------------

    def lookup(self, req: Request, parent: InodeNo, name: bytes) -> Attr:
        attr = super().lookup(req, parent, name)
        if name not in (b".", b".."):
            self._named(attr.ino, parent, name)
        return attr

    def created(self, h: Handle, dp: Inode, name: bytes, ip: Inode) -> None:
        rec = self._pending.record
        if rec is not None and "ino" not in rec:
            rec["ino"] = ip.ino  # the record is appended when this handle ends
        self._named(ip.ino, dp.ino, name)

    def create(self, req: Request, parent: InodeNo, name: bytes, mode: int,
               flags: int) -> tuple[Attr, FileHandle]:
        rec = self._record("create", req, **self._where(parent, name), mode=mode, flags=flags)
        return self._recorded(rec, super().create, req, parent, name, mode, flags)

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
        of = self.open_file(fh)
        rec = self._record("write", of.req, ino=of.ip.ino, offset=offset)
        done = self._recorded(rec, super().write, fh, offset, data)
        seen.add("write")
        return done

    def _first_use(self, fh: int, what: str) -> None:
        seen = self._first.setdefault(fh, set())
        if what in seen:
            return
        of = self.open_file(fh)
        seen.add(what)
        self._defer(self._record(what, of.req, ino=of.ip.ino))  # a read changes nothing

    def release(self, fh: FileHandle) -> None:
        self._first.pop(fh, None)
        try:
            of = self.open_file(fh)
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

    # -- where queued records must reach the log ------------------------------------------

    def fsync(self, fh: FileHandle, datasync: bool) -> None:
        self.flush_records()
        super().fsync(fh, datasync)

    def fsyncdir(self, fh: FileHandle, datasync: bool) -> None:
        self.flush_records()
        super().fsyncdir(fh, datasync)

    def report(self, name: str) -> bytes:
        self.flush_records()
        return super().report(name)

    def destroy(self) -> None:
        try:
            self.flush_records()
        except OSError:
            log.exception("provenance: could not write the last records")
        super().destroy()

    # -- live upgrade -------------------------------------------------------------------

    def prepare_upgrade(self) -> UpgradeState:
        """xv6's state plus the handles' first uses and the queued records (which
        only read: a successor writes them; plain xv6 drops them — they describe
        operations that changed nothing)."""
        state = super().prepare_upgrade()
        with self._log_lock:
            state.data["provenance"] = {
                "first": [(fh, sorted(s)) for fh, s in self._first.items()],
                "deferred": list(self._deferred)}  # ≤ 8 KiB; processes get described again
        return state

    @classmethod
    def from_upgrade(cls, state: UpgradeState, ks: KernelServices) -> Xv6:
        fs = super().from_upgrade(state, ks)
        assert isinstance(fs, Provenance)
        mine = state.data.get("provenance")  # absent when coming from plain xv6
        if isinstance(mine, dict):
            fs._first = {fh: set(s) for fh, s in mine["first"]}
            fs._deferred = [bytes(b) for b in mine["deferred"]]
        return fs


def read_log(fs: Xv6) -> bytes:
    """The records on ``fs`` (plain xv6 keeps them after a downgrade)."""
    return fs.report("hidden")
