"""Permission rules as Linux applies them (fs/namei.c, fs/attr.c, fs/inode.c).

In front of a FUSE mount with ``default_permissions`` the kernel checks all of them,
with the caller's full credentials, and marks the request ``checked``: then the
refusals here step aside (refusing again, with less information, is how a file
system says no where Linux says yes). Without it — the direct runtime, a mount with
``no_default_permissions`` — they are the only check. The *effects* of permissions
(``new_owner``, ``chmod_mode``'s setgid rule, ``Request.killed_suid``) apply either way.
Root (uid 0) stands for the capabilities CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN,
CAP_FSETID and CAP_MKNOD.
"""

from __future__ import annotations

import errno
import os
import stat

from bento_user.api import FsError, Request, acl

from ._inode import Inode


def permitted(req: Request, ip: Inode, mask: int) -> bool:
    """May ``req`` access ``ip`` with ``mask`` (os.R_OK | W_OK | X_OK)? Linux's
    generic_permission, which the API gives every file system (``Request.may``)."""
    return req.may(ip.mode, ip.uid, ip.gid, mask)


def require(req: Request, ip: Inode, mask: int) -> None:
    if not req.checked and not permitted(req, ip, mask):
        raise FsError(errno.EACCES)


def require_owner(req: Request, ip: Inode) -> None:
    """chmod, explicit utimes, xattrs on sticky dirs: the owner or root (EPERM)."""
    if not req.checked and req.uid not in (0, ip.uid):
        raise FsError(errno.EPERM)


def check_utimes(req: Request, ip: Inode, only_now: bool) -> None:
    """Setting times to now needs write permission (or ownership); any other time
    needs ownership."""
    if not only_now:
        require_owner(req, ip)
    elif not req.checked and req.uid not in (0, ip.uid) and not permitted(req, ip, os.W_OK):
        raise FsError(errno.EACCES)


def require_root(req: Request) -> None:
    """What only a capability allows (CAP_MKNOD, trusted.* and security.* xattrs)."""
    if not req.checked and req.uid != 0:
        raise FsError(errno.EPERM)


def check_sticky(req: Request, dp: Inode, ip: Inode) -> None:
    """In a sticky directory only the file's owner, the directory's owner or root may
    remove or rename an entry."""
    if not req.checked and dp.mode & stat.S_ISVTX and req.uid not in (0, ip.uid, dp.uid):
        raise FsError(errno.EPERM)


def new_owner(req: Request, dp: Inode, mode: int) -> tuple[int, int, int]:
    """(uid, gid, mode) of a new inode in ``dp``: a setgid directory passes on its
    group (and, to subdirectories, its setgid bit)."""
    gid = req.gid
    if dp.mode & stat.S_ISGID:
        gid = dp.gid
        if stat.S_ISDIR(mode):
            mode |= stat.S_ISGID
        elif mode & stat.S_ISGID and not req.in_group(gid) and req.uid != 0:
            mode &= ~stat.S_ISGID
    return req.uid, gid, mode


def chmod_mode(req: Request, ip: Inode, mode: int) -> int:
    """The mode chmod really sets: setgid is dropped when a non-root caller is not
    in the file's group; sticky on non-directories stays (Linux allows it)."""
    require_owner(req, ip)
    mode &= 0o7777
    if req.uid != 0 and not req.in_group(ip.gid) and mode & stat.S_ISGID:
        mode &= ~stat.S_ISGID
    return mode


def check_chown(req: Request, ip: Inode, uid: int | None, gid: int | None) -> None:
    """Only root gives a file away; an owner may change its group to one of their own."""
    if req.uid == 0 or req.checked:
        return
    if uid is not None and uid != ip.uid:
        raise FsError(errno.EPERM)
    if gid is not None and gid != ip.gid and not (req.uid == ip.uid and req.in_group(gid)):
        raise FsError(errno.EPERM)
    if req.uid != ip.uid and (uid is not None or gid is not None):
        raise FsError(errno.EPERM)


def check_xattr(req: Request, ip: Inode, name: bytes, write: bool) -> None:
    """Who may read or change an extended attribute: trusted.* is root's, security.*
    root's to change, user.* only on files and directories, by their permission
    bits (and, on a sticky directory, only the owner changes them); the ACLs are
    anyone's to read and the owner's to change, a default ACL only a directory's."""
    if name in acl.NAMES:
        if name == acl.DEFAULT and not ip.is_dir:
            raise FsError(errno.EACCES if write else errno.ENODATA)
        if write:
            require_owner(req, ip)
        return
    if name.startswith(b"trusted.") or (name.startswith(b"security.") and write):
        require_root(req)
    if name.startswith(b"user."):
        if not (stat.S_ISREG(ip.mode) or ip.is_dir):
            raise FsError(errno.EPERM if write else errno.ENODATA)
        if write and ip.is_dir and ip.mode & stat.S_ISVTX:
            require_owner(req, ip)
        require(req, ip, os.W_OK if write else os.R_OK)
