"""The direct runtime: a file system in-process, with no FUSE and no kernel.

``DirectRuntime`` opens a file system on a device and passes low-level calls through
the same ``Dispatcher`` a mount uses. ``PathClient`` adds what the kernel would
otherwise do — path walks, symlinks, file descriptors and offsets, and for a file
system with ``vfs_checks`` the VFS's checks (vfs.py) — so tests, fuzzers and trace
replay can say ``client.rename("a/x", "b/y")`` and get the ``OSError`` the ``os``
module would raise on a real mount.
"""

from __future__ import annotations

import errno
import os
from stat import S_IFREG, S_ISDIR, S_ISLNK
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from ..api import (
    ROOT_INODE,
    ROOT_REQUEST,
    SEEK_DATA,
    SEEK_HOLE,
    Attr,
    FileHandle,
    Filesystem,
    FsError,
    InodeNo,
    Request,
    SetAttr,
    StatFs,
)
from ..blockdev import BlockDevice
from ..ks_emul import KernelServices
from . import upgrade, vfs
from ._dispatch import Dispatcher
from .guard import Guard

Path = str | bytes
MAXSYMLINKS = 40


class DirectRuntime:
    """A file system running on ``ks``; ``close()`` unmounts it cleanly."""

    def __init__(self, fs: Filesystem, ks: KernelServices) -> None:
        self.ks = ks
        self.dispatch = Dispatcher(fs)
        self.guard = Guard(self.dispatch, ks)  # undoes a failed call (guard.py)
        fs.init(ks)
        self.closed = False

    @classmethod
    def open(cls, fs: Filesystem, device: BlockDevice, **ks_options: Any) -> DirectRuntime:
        ks = KernelServices(device, **ks_options)
        try:
            return cls(fs, ks)
        except BaseException:
            ks.device.close()
            raise

    @property
    def fs(self) -> Filesystem:
        return self.dispatch.fs

    def call(self, op: str, *args: Any) -> Any:
        return self.guard.call(op, *args)

    def upgrade(self, new_cls: type[Filesystem], *,
                timeout: float = upgrade.DEFAULT_TIMEOUT) -> upgrade.UpgradeReport:
        """Live-upgrade to ``new_cls`` (see upgrade.py); UpgradeError leaves the
        current instance in place."""
        return upgrade.swap(self.dispatch, self.ks, new_cls, timeout=timeout)

    def client(self, req: Request = ROOT_REQUEST) -> PathClient:
        return PathClient(self, req)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.fs.destroy()
        finally:
            self.ks.close()

    def crash(self) -> None:
        """Stop without unmounting: nothing more reaches the device (for crash tests)."""
        self.closed = True
        if self.ks.journal is not None:
            self.ks.journal.halt()
        self.ks.cache.stop_writeback()

    def __enter__(self) -> DirectRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Fd:
    ino: InodeNo
    fh: FileHandle
    flags: int
    directory: bool
    pos: int = 0


class PathClient:
    """POSIX-style calls by path and descriptor, as one user (``req``)."""

    def __init__(self, rt: DirectRuntime, req: Request = ROOT_REQUEST) -> None:
        self.rt = rt
        self.req = req
        self._checked = replace(req, checked=True)
        self._fds: dict[int, _Fd] = {}
        self._next_fd = 3

    # -- plumbing ----------------------------------------------------------------

    def _call(self, op: str, *args: Any) -> Any:
        return self.rt.call(op, *args)

    @property
    def _vfs(self) -> bool:
        """Whether this client checks as the VFS does (asked at each call: a live
        upgrade may change the class)."""
        return self.rt.fs.vfs_checks

    @property
    def _r(self) -> Request:
        """The request the file system gets: ``checked`` once the client checked."""
        return self._checked if self._vfs else self.req

    @contextmanager
    def _errors(self, path: Path | None = None) -> Iterator[list[InodeNo]]:
        """Turn FsError into OSError(errno, strerror, path); forget lookups made
        during the call afterwards (as the kernel drops its dentry references)."""
        held: list[InodeNo] = []
        try:
            yield held
        except FsError as e:  # the file system's reason: os.strerror's unless it gave one
            raise OSError(e.errno, e.strerror, os.fsdecode(path) if path is not None
                          else None) from None
        finally:
            if held:
                self._call("forget", [(ino, 1) for ino in held])

    def _lookup(self, held: list[InodeNo], parent: InodeNo, name: bytes) -> Attr:
        attr: Attr = self._call("lookup", self._r, parent, name)
        held.append(attr.ino)
        return attr

    def _walk(self, held: list[InodeNo], path: Path, follow: bool = True,
              dirs: list[Attr] | None = None) -> tuple[InodeNo, bytes, Attr | None]:
        """(directory, last name, its attributes or None if absent) for ``path``.
        With ``vfs_checks``, as the kernel walks: search permission on each directory
        before a name in it, '..' from the directories walked (``dirs``, filled from
        the root down to the one returned)."""
        raw = os.fsencode(path)
        if not raw:
            raise FsError(errno.ENOENT)
        todo = deque(raw.split(b"/"))
        must_be_dir = raw.endswith(b"/")
        cur, links = ROOT_INODE, 0
        cur_attr: Attr | None = None
        name = b"."
        checks = self._vfs
        walked = dirs if dirs is not None else []
        walked[:] = [self._call("getattr", self._r, ROOT_INODE)] if checks else []
        while todo:
            part = todo.popleft()
            if part in (b"", b"."):
                if not todo:
                    name = b"."
                continue
            last = not any(p not in (b"", b".") for p in todo)
            if checks:
                vfs.require(self.req, walked[-1], os.X_OK)
                if part == b"..":
                    if last:
                        return cur, part, walked[-2] if len(walked) > 1 else walked[-1]
                    if len(walked) > 1:
                        walked.pop()
                    cur, cur_attr = walked[-1].ino, walked[-1]
                    continue
            try:
                attr = self._lookup(held, cur, part)
            except FsError as e:
                if e.errno == errno.ENOENT and last:
                    return cur, part, None
                raise
            if S_ISLNK(attr.mode) and (not last or follow or must_be_dir):
                links += 1
                if links > MAXSYMLINKS:
                    raise FsError(errno.ELOOP)
                target: bytes = self._call("readlink", self._r, attr.ino)
                if target.startswith(b"/"):
                    cur = ROOT_INODE
                    del walked[1:]
                todo.extendleft(reversed(target.split(b"/")))
                continue
            if last:
                if must_be_dir and not S_ISDIR(attr.mode):
                    raise FsError(errno.ENOTDIR)
                return cur, part, attr
            if not S_ISDIR(attr.mode):
                raise FsError(errno.ENOTDIR)
            cur, cur_attr = attr.ino, attr
            if checks:
                walked.append(attr)
        # the path named a directory itself ("/", "a/.")
        attr = cur_attr or self._call("getattr", self._r, cur)
        return cur, name, attr

    def _existing(self, held: list[InodeNo], path: Path, follow: bool = True) -> Attr:
        _, _, attr = self._walk(held, path, follow)
        if attr is None:
            raise FsError(errno.ENOENT)
        return attr

    def _parent(self, held: list[InodeNo], path: Path, dirs: list[Attr] | None = None
                ) -> tuple[InodeNo, bytes, Attr | None]:
        parent, name, attr = self._walk(held, path, follow=False, dirs=dirs)
        if name in (b".", b".."):
            raise FsError(errno.EBUSY if attr is not None else errno.ENOENT)
        return parent, name, attr

    def _may_create(self, dirs: list[Attr]) -> None:
        """may_create: write and search on the directory (``dirs[-1]``)."""
        if self._vfs:
            vfs.require(self.req, dirs[-1], os.W_OK | os.X_OK)

    # -- files and descriptors ---------------------------------------------------

    def open(self, path: Path, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
        with self._errors(path) as held:
            follow = not flags & os.O_NOFOLLOW and not (flags & os.O_CREAT and flags & os.O_EXCL)
            dirs: list[Attr] = []
            parent, name, attr = self._walk(held, path, follow, dirs)
            if attr is None:
                if not flags & os.O_CREAT:
                    raise FsError(errno.ENOENT)
                if flags & os.O_DIRECTORY:
                    raise FsError(errno.EINVAL)
                self._may_create(dirs)
                attr, fh = self._call("create", self._r, parent, name, mode, flags)
                held.append(attr.ino)
                return self._add_fd(attr, fh, flags)
            if flags & os.O_CREAT and flags & os.O_EXCL:
                raise FsError(errno.EEXIST)
            if S_ISLNK(attr.mode):
                raise FsError(errno.ELOOP)
            if flags & os.O_DIRECTORY and not S_ISDIR(attr.mode):
                raise FsError(errno.ENOTDIR)
            if S_ISDIR(attr.mode) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise FsError(errno.EISDIR)
            if self._vfs:
                vfs.may_open(self.req, attr, flags)
            if S_ISDIR(attr.mode):
                return self._add_fd(attr, self._call("opendir", self._r, attr.ino), flags)
            return self._add_fd(attr, self._call("open", self._r, attr.ino, flags), flags)

    def _add_fd(self, attr: Attr, fh: FileHandle, flags: int) -> int:
        fd = self._next_fd
        self._next_fd += 1
        self._fds[fd] = _Fd(attr.ino, fh, flags, S_ISDIR(attr.mode))
        return fd

    def _fd(self, fd: int) -> _Fd:
        f = self._fds.get(fd)
        if f is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return f

    def close(self, fd: int) -> None:
        f = self._fd(fd)
        del self._fds[fd]
        with self._errors():
            if f.directory:
                self._call("releasedir", f.fh)
            else:
                self._call("flush", f.fh)
                self._call("release", f.fh)

    def read(self, fd: int, size: int) -> bytes:
        f = self._fd(fd)
        data = self.pread(fd, size, f.pos)
        f.pos += len(data)
        return data

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        f = self._fd(fd)
        if f.directory:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        if f.flags & os.O_ACCMODE == os.O_WRONLY:  # the kernel's own check (FMODE_READ)
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        with self._errors():
            return self._call("read", f.fh, offset, size)

    def write(self, fd: int, data: bytes) -> int:
        f = self._fd(fd)
        if f.flags & os.O_APPEND:
            f.pos = self.fstat(fd).size
        n = self.pwrite(fd, data, f.pos)
        f.pos += n
        return n

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        f = self._fd(fd)
        if f.flags & os.O_ACCMODE == os.O_RDONLY:  # the kernel's own check (FMODE_WRITE)
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        with self._errors():
            return self._call("write", f.fh, offset, data)

    def lseek(self, fd: int, pos: int, how: int = os.SEEK_SET) -> int:
        f = self._fd(fd)
        if how in (SEEK_DATA, SEEK_HOLE):
            f.pos = self._seek_hole_or_data(fd, pos, how)
            return f.pos
        base = {os.SEEK_SET: 0, os.SEEK_CUR: f.pos, os.SEEK_END: None}[how]
        if base is None:
            base = self.fstat(fd).size
        if base + pos < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        f.pos = base + pos
        return f.pos

    def _seek_hole_or_data(self, fd: int, pos: int, how: int) -> int:
        """The file system's answer, or the kernel's own when it has none (ENOSYS):
        the whole file is data."""
        try:
            with self._errors():
                return int(self._call("lseek", self._fd(fd).fh, pos, how))
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
        size = self.fstat(fd).size
        if pos < 0 or pos >= size:
            raise OSError(errno.ENXIO, os.strerror(errno.ENXIO))
        return pos if how == SEEK_DATA else size

    def fstat(self, fd: int) -> Attr:
        with self._errors():
            return self._call("getattr", self._r, self._fd(fd).ino)

    def fsync(self, fd: int, datasync: bool = False) -> None:
        f = self._fd(fd)
        with self._errors():
            self._call("fsyncdir" if f.directory else "fsync", f.fh, datasync)

    def ftruncate(self, fd: int, size: int) -> None:
        f = self._fd(fd)
        with self._errors():
            changes = SetAttr(size=size)
            if self._vfs:
                attr = self._call("getattr", self._r, f.ino)
                changes = vfs.setattr_prepare(self.req, attr, changes, f.flags)
            self._call("setattr", self._r, f.ino, changes, f.fh)

    def fallocate(self, fd: int, mode: int, offset: int, length: int) -> None:
        f = self._fd(fd)
        with self._errors():
            self._call("fallocate", f.fh, mode, offset, length)

    # -- whole files (test conveniences) -------------------------------------------

    def read_bytes(self, path: Path) -> bytes:
        fd = self.open(path)
        try:
            chunks = []
            while chunk := self.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            self.close(fd)

    def write_bytes(self, path: Path, data: bytes, mode: int = 0o666) -> None:
        fd = self.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[self.write(fd, view[: 1 << 20]):]
        finally:
            self.close(fd)

    # -- names -------------------------------------------------------------------

    def stat(self, path: Path, follow_symlinks: bool = True) -> Attr:
        with self._errors(path) as held:
            return self._existing(held, path, follow_symlinks)

    def lstat(self, path: Path) -> Attr:
        return self.stat(path, follow_symlinks=False)

    def exists(self, path: Path) -> bool:
        try:
            self.lstat(path)
            return True
        except FileNotFoundError:
            return False

    def mkdir(self, path: Path, mode: int = 0o777) -> None:
        with self._errors(path) as held:
            dirs: list[Attr] = []
            parent, name, attr = self._parent(held, path, dirs)
            if attr is not None:
                raise FsError(errno.EEXIST)
            self._may_create(dirs)
            held.append(self._call("mkdir", self._r, parent, name, mode).ino)

    def mknod(self, path: Path, mode: int = 0o600 | S_IFREG, device: int = 0) -> None:
        with self._errors(path) as held:
            dirs: list[Attr] = []
            parent, name, attr = self._parent(held, path, dirs)
            if attr is not None:
                raise FsError(errno.EEXIST)
            self._may_create(dirs)
            held.append(self._call("mknod", self._r, parent, name, mode, device).ino)

    def symlink(self, target: Path, path: Path) -> None:
        with self._errors(path) as held:
            dirs: list[Attr] = []
            parent, name, attr = self._parent(held, path, dirs)
            if attr is not None:
                raise FsError(errno.EEXIST)
            self._may_create(dirs)
            held.append(self._call("symlink", self._r, parent, name, os.fsencode(target)).ino)

    def readlink(self, path: Path) -> bytes:
        with self._errors(path) as held:
            attr = self._existing(held, path, follow=False)
            return self._call("readlink", self._r, attr.ino)

    def link(self, src: Path, dst: Path) -> None:
        with self._errors(dst) as held:
            attr = self._existing(held, src, follow=False)
            dirs: list[Attr] = []
            parent, name, existing = self._parent(held, dst, dirs)
            if existing is not None:
                raise FsError(errno.EEXIST)
            self._may_create(dirs)
            held.append(self._call("link", self._r, attr.ino, parent, name).ino)

    def unlink(self, path: Path) -> None:
        with self._errors(path) as held:
            dirs: list[Attr] = []
            parent, name, attr = self._parent(held, path, dirs)
            if attr is None:
                raise FsError(errno.ENOENT)
            if self._vfs:
                vfs.may_delete(self.req, dirs[-1], attr, want_dir=False)
            self._call("unlink", self._r, parent, name)

    def rmdir(self, path: Path) -> None:
        with self._errors(path) as held:
            dirs: list[Attr] = []
            parent, name, attr = self._walk(held, path, follow=False, dirs=dirs)
            if attr is None:
                raise FsError(errno.ENOENT)
            if name == b".":
                raise FsError(errno.EINVAL if os.fsencode(path).rstrip(b"/") else errno.EBUSY)
            if name == b"..":
                raise FsError(errno.ENOTEMPTY)
            if self._vfs:
                vfs.may_delete(self.req, dirs[-1], attr, want_dir=True)
            self._call("rmdir", self._r, parent, name)

    def rename(self, src: Path, dst: Path, flags: int = 0) -> None:
        """rename(2), or renameat2(2) with RENAME_NOREPLACE / RENAME_EXCHANGE."""
        with self._errors(src) as held:
            sdirs: list[Attr] = []
            ddirs: list[Attr] = []
            sp, sn, sattr = self._parent(held, src, sdirs)
            if sattr is None:
                raise FsError(errno.ENOENT)
            dp, dn, dattr = self._parent(held, dst, ddirs)
            if self._vfs and not vfs.may_rename(
                    self.req, sdirs[-1], sattr, ddirs[-1], dattr, flags,
                    src_above_ddir=any(a.ino == sattr.ino for a in ddirs),
                    dst_above_sdir=dattr is not None and any(a.ino == dattr.ino for a in sdirs)):
                return  # onto itself: nothing to do
            self._call("rename", self._r, sp, sn, dp, dn, flags)

    replace = rename

    def listdir(self, path: Path = "/") -> list[bytes]:
        """Names in the directory (without '.' and '..'), in readdir order."""
        return [e[0] for e in self.scandir(path) if e[0] not in (b".", b"..")]

    def scandir(self, path: Path = "/") -> list[tuple[bytes, int, int]]:
        """(name, inode, kind) of every entry, '.' and '..' included."""
        fd = self.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            f = self._fds[fd]
            out: list[tuple[bytes, int, int]] = []
            offset = 0
            with self._errors(path):
                while True:
                    batch = list(self._call("readdir", f.fh, offset))
                    if not batch:
                        return out
                    out.extend((e.name, e.ino, e.kind) for e in batch)
                    offset = batch[-1].next_offset
        finally:
            self.close(fd)

    # -- attributes --------------------------------------------------------------

    def _setattr(self, path: Path, changes: SetAttr, follow: bool = True) -> Attr:
        with self._errors(path) as held:
            attr = self._existing(held, path, follow)
            if self._vfs:
                changes = vfs.setattr_prepare(self.req, attr, changes, None)
            return self._call("setattr", self._r, attr.ino, changes, None)

    def chmod(self, path: Path, mode: int) -> None:
        self._setattr(path, SetAttr(mode=mode))

    def chown(self, path: Path, uid: int, gid: int, follow_symlinks: bool = True) -> None:
        self._setattr(path, SetAttr(uid=None if uid == -1 else uid, gid=None if gid == -1 else gid),
                      follow_symlinks)

    def truncate(self, path: Path, size: int) -> None:
        self._setattr(path, SetAttr(size=size))

    def utime(self, path: Path, ns: tuple[int, int] | None = None) -> None:
        a, m = (SetAttr.NOW, SetAttr.NOW) if ns is None else ns
        self._setattr(path, SetAttr(atime_ns=a, mtime_ns=m))

    def access(self, path: Path, mode: int) -> bool:
        try:
            with self._errors(path) as held:
                attr = self._existing(held, path)
                if self._vfs:
                    vfs.require(self.req, attr, mode)
                else:
                    self._call("access", self.req, attr.ino, mode)
            return True
        except OSError:
            return False

    def statvfs(self) -> StatFs:
        with self._errors():
            return self._call("statfs", self._r)

    # -- extended attributes -----------------------------------------------------

    def getxattr(self, path: Path, name: bytes, follow_symlinks: bool = True) -> bytes:
        with self._errors(path) as held:
            return self._call("getxattr", self.req, self._existing(held, path, follow_symlinks).ino,
                              name)

    def setxattr(self, path: Path, name: bytes, value: bytes, flags: int = 0,
                 follow_symlinks: bool = True) -> None:
        with self._errors(path) as held:
            self._call("setxattr", self.req, self._existing(held, path, follow_symlinks).ino,
                       name, value, flags)

    def listxattr(self, path: Path, follow_symlinks: bool = True) -> list[bytes]:
        with self._errors(path) as held:
            return self._call("listxattr", self.req, self._existing(held, path, follow_symlinks).ino)

    def removexattr(self, path: Path, name: bytes, follow_symlinks: bool = True) -> None:
        with self._errors(path) as held:
            self._call("removexattr", self.req, self._existing(held, path, follow_symlinks).ino,
                       name)

    def close_all(self) -> None:
        for fd in list(self._fds):
            self.close(fd)
