"""The checks Linux's VFS makes before it calls a file system, for the direct runtime.

A Linux file system does not check who may unlink a name or chmod a file, nor that
rmdir names a directory: fs/namei.c, fs/attr.c and fs/open.c have done it, with the
dentries the kernel holds, before ``->unlink`` or ``->setattr`` is called. A file
system here that says so (``Filesystem.vfs_checks``) is written the same way. Under a
FUSE mount the kernel makes these checks (``default_permissions``, which such a file
system requires); in the direct runtime ``PathClient`` plays the kernel and calls
these functions, in the kernel's order, with the attributes its path walk looked up,
then passes the request on marked ``checked``.

What stays the file system's, as in Linux: ENOTEMPTY, ENOSPC, EFBIG, ENAMETOOLONG,
what a flag it does not implement answers (EINVAL), and the *effects* of
permissions: setuid cleared by a write, a chown or a truncate. Root (uid 0) stands
for the capabilities; ACLs are not consulted here (a file system with POSIX ACLs
checks them itself).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import replace

from ..api import RENAME_EXCHANGE, RENAME_NOREPLACE, Attr, FsError, Request, SetAttr


def require(req: Request, attr: Attr, mask: int) -> None:
    """generic_permission: EACCES unless ``req`` may access ``attr`` with ``mask``."""
    if not req.may(attr.mode, attr.uid, attr.gid, mask):
        raise FsError(errno.EACCES)


def may_delete(req: Request, directory: Attr, victim: Attr, want_dir: bool) -> None:
    """unlink and rmdir (and the target of a rename): write and search on the
    directory, the sticky bit's owners, then the kinds."""
    require(req, directory, os.W_OK | os.X_OK)
    if directory.mode & stat.S_ISVTX and req.uid not in (0, victim.uid, directory.uid):
        raise FsError(errno.EPERM)
    is_dir = stat.S_ISDIR(victim.mode)
    if is_dir != want_dir:
        raise FsError(errno.EISDIR if is_dir else errno.ENOTDIR)


def may_rename(req: Request, sdir: Attr, src: Attr, ddir: Attr, dst: Attr | None, flags: int,
               src_above_ddir: bool, dst_above_sdir: bool) -> bool:
    """do_renameat2 and vfs_rename, in their order: the flags, a missing or present
    target, a directory moved under itself (``src_above_ddir``: ``src`` is ``ddir``
    or one of its ancestors), a rename onto itself (False: nothing to do), then write
    permission on both directories (and on a directory that changes its parent, for
    its '..'), the sticky bit and the kinds as for a removal."""
    exchange = bool(flags & RENAME_EXCHANGE)
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
        raise FsError(errno.EINVAL)
    if exchange and dst is None:
        raise FsError(errno.ENOENT)
    if flags & RENAME_NOREPLACE and dst is not None:
        raise FsError(errno.EEXIST)
    if (stat.S_ISDIR(src.mode) and src_above_ddir) or (
            exchange and dst is not None and stat.S_ISDIR(dst.mode) and dst_above_sdir):
        raise FsError(errno.EINVAL, "cannot move a directory inside itself")
    if dst is not None and dst.ino == src.ino:
        return False
    may_delete(req, sdir, src, stat.S_ISDIR(src.mode))
    if dst is None:
        require(req, ddir, os.W_OK | os.X_OK)
    else:
        may_delete(req, ddir, dst, stat.S_ISDIR((dst if exchange else src).mode))
    if sdir.ino != ddir.ino:
        for moved in (src, dst if exchange else None):
            if moved is not None and stat.S_ISDIR(moved.mode):
                require(req, moved, os.W_OK)
    return True


def may_open(req: Request, attr: Attr, flags: int) -> None:
    """may_open: the access mode's permissions (and write for O_TRUNC)."""
    acc = flags & os.O_ACCMODE
    want = {os.O_RDONLY: os.R_OK, os.O_WRONLY: os.W_OK, os.O_RDWR: os.R_OK | os.W_OK}.get(acc)
    if want is None:
        raise FsError(errno.EINVAL)
    require(req, attr, want | (os.W_OK if flags & os.O_TRUNC else 0))


def setattr_prepare(req: Request, attr: Attr, c: SetAttr, fd_flags: int | None) -> SetAttr:
    """setattr_prepare and do_truncate: who may change what (``fd_flags``: the
    descriptor's open flags for ftruncate, None for a path). Returns the change the
    file system gets: chmod by an owner outside the file's group drops setgid."""
    if c.size is not None:
        if stat.S_ISDIR(attr.mode):
            raise FsError(errno.EISDIR)
        if not stat.S_ISREG(attr.mode) or c.size < 0:
            raise FsError(errno.EINVAL)
        if fd_flags is None:
            require(req, attr, os.W_OK)
        elif fd_flags & os.O_ACCMODE == os.O_RDONLY:
            raise FsError(errno.EINVAL)
    if req.uid != 0:
        if c.uid is not None and c.uid != attr.uid:
            raise FsError(errno.EPERM)
        if c.gid is not None and c.gid != attr.gid and not (req.uid == attr.uid and req.in_group(c.gid)):
            raise FsError(errno.EPERM)
        if (c.uid is not None or c.gid is not None or c.mode is not None) and req.uid != attr.uid:
            raise FsError(errno.EPERM)
    times = {t for t in (c.atime_ns, c.mtime_ns) if t is not None}
    if times and req.uid not in (0, attr.uid):
        if times != {SetAttr.NOW}:
            raise FsError(errno.EPERM)
        require(req, attr, os.W_OK)
    if c.mode is not None and req.uid != 0 and not req.in_group(attr.gid):
        return replace(c, mode=c.mode & ~stat.S_ISGID)
    return c
