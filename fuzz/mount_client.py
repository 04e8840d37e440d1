"""The direct runtime's ``PathClient`` calls, made with real system calls on a mount.

``bento fuzz ops --mount`` runs the same state machine through the kernel: paths go
through the VFS and FUSE, permissions through the kernel's checks, and each call is
made as the machine's user (effective uid/gid switched for the call, supplementary
groups dropped, so the kernel sees exactly what the model assumes).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from dataclasses import dataclass

from bento_user.api import Request

_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2) itself: Python has only posix_fallocate, which glibc emulates by
    writing when the file system refuses."""
    if _libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass(frozen=True)
class Stat:
    """What the machine reads of a ``stat`` (the fields ``Attr`` shares)."""

    ino: int
    mode: int
    nlink: int
    size: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stat:
        return cls(st.st_ino, st.st_mode, st.st_nlink, st.st_size, st.st_uid, st.st_gid,
                   st.st_atime_ns, st.st_mtime_ns)


@contextlib.contextmanager
def as_user(req: Request) -> Iterator[None]:
    """Run the body with ``req``'s uid and gid (we are root; root needs no switch)."""
    if req.uid == 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(req.gid)
    os.seteuid(req.uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


class MountClient:
    """POSIX calls by path under ``root`` as user ``req`` (paths are mount-relative)."""

    def __init__(self, root: bytes, req: Request) -> None:
        self.root = root.rstrip(b"/")
        self.req = req
        self._fds: set[int] = set()

    def _p(self, path: bytes | str) -> bytes:
        return self.root + b"/" + os.fsencode(path).lstrip(b"/")

    def _fail_path(self, e: OSError) -> OSError:
        return OSError(e.errno, e.strerror)

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        try:
            with as_user(self.req):
                yield
        except OSError as e:
            raise self._fail_path(e) from None

    # -- descriptors -------------------------------------------------------------

    def open(self, path: bytes | str, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
        with self._call():
            fd = os.open(self._p(path), flags, mode)
        self._fds.add(fd)
        return fd

    def close(self, fd: int) -> None:
        self._fds.discard(fd)
        os.close(fd)

    def close_all(self) -> None:
        for fd in list(self._fds):
            self.close(fd)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        with self._call():
            return os.pwrite(fd, data, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        with self._call():
            return os.pread(fd, size, offset)

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        with self._call():
            return os.lseek(fd, offset, whence)

    def fallocate(self, fd: int, mode: int, offset: int, length: int) -> None:
        with self._call():
            fallocate(fd, mode, offset, length)

    def fstat(self, fd: int) -> Stat:
        with self._call():
            return Stat.of(os.fstat(fd))

    def fsync(self, fd: int, datasync: bool = False) -> None:
        with self._call():
            (os.fdatasync if datasync else os.fsync)(fd)

    # -- paths -------------------------------------------------------------------

    def read_bytes(self, path: bytes | str) -> bytes:
        with self._call(), open(self._p(path), "rb") as f:
            return f.read()

    def stat(self, path: bytes | str) -> Stat:
        with self._call():
            return Stat.of(os.stat(self._p(path)))

    def lstat(self, path: bytes | str) -> Stat:
        with self._call():
            return Stat.of(os.lstat(self._p(path)))

    def listdir(self, path: bytes | str = b"/") -> list[bytes]:
        with self._call():
            return os.listdir(self._p(path))

    def mkdir(self, path: bytes | str, mode: int = 0o777) -> None:
        with self._call():
            os.mkdir(self._p(path), mode)

    def unlink(self, path: bytes | str) -> None:
        with self._call():
            os.unlink(self._p(path))

    def rmdir(self, path: bytes | str) -> None:
        with self._call():
            os.rmdir(self._p(path))

    def rename(self, src: bytes | str, dst: bytes | str, flags: int = 0) -> None:
        with self._call():
            if _libc.renameat2(_AT_FDCWD, self._p(src), _AT_FDCWD, self._p(dst), flags):
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))

    def link(self, src: bytes | str, dst: bytes | str) -> None:
        with self._call():
            os.link(self._p(src), self._p(dst), follow_symlinks=False)

    def symlink(self, target: bytes | str, path: bytes | str) -> None:
        with self._call():
            os.symlink(os.fsencode(target), self._p(path))

    def readlink(self, path: bytes | str) -> bytes:
        with self._call():
            return os.readlink(self._p(path))

    def chmod(self, path: bytes | str, mode: int) -> None:
        with self._call():
            os.chmod(self._p(path), mode)

    def chown(self, path: bytes | str, uid: int, gid: int) -> None:
        with self._call():
            os.chown(self._p(path), uid, gid)

    def utime(self, path: bytes | str, ns: tuple[int, int]) -> None:
        with self._call():
            os.utime(self._p(path), ns=ns)

    def truncate(self, path: bytes | str, size: int) -> None:
        with self._call():
            os.truncate(self._p(path), size)

    def setxattr(self, path: bytes | str, name: bytes, value: bytes, flags: int = 0) -> None:
        with self._call():
            os.setxattr(self._p(path), name, value, flags, follow_symlinks=False)

    def getxattr(self, path: bytes | str, name: bytes, follow_symlinks: bool = True) -> bytes:
        with self._call():
            return os.getxattr(self._p(path), name, follow_symlinks=follow_symlinks)

    # -- kernel references without an open file (O_PATH) --------------------------

    def hold(self, path: bytes | str) -> int:
        """A reference to the inode (the kernel keeps its lookup) and nothing else."""
        with self._call():
            fd = os.open(self._p(path), os.O_PATH | os.O_NOFOLLOW)
        self._fds.add(fd)
        return fd
