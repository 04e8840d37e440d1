"""xv6's extended-attribute calls, and the POSIX ACLs kept in two of them.

ACLs are stored as Linux stores them, the attributes ``system.posix_acl_access`` and
``system.posix_acl_default`` in the inode's attribute stream (_xattr.py); the kernel
enforces them through FUSE, and ``bento_user.api.acl`` computes what it leaves to
the file system. Here are the three places that call it: setting the access ACL sets
the mode, chmod rewrites the access ACL (``chmod_acl``), and a create takes the
parent's default ACL instead of the umask (``inherit_acl``, ``store_acls``). Each
change is made in the same transaction as the one it goes with.
"""

from __future__ import annotations

import errno

from bento_user.api import XATTR_CREATE, XATTR_REPLACE, FsError, InodeNo, Request, acl
from bento_user.ks_emul import Handle

from . import _perm as perm
from . import _xattr as xattr
from ._core import Xv6Core
from ._inode import Inode, touch


class XattrOps(Xv6Core):
    """The extended-attribute system calls over ``Xv6Core``; ``Xv6`` adds the rest."""

    posix_acls = True

    def getxattr(self, req: Request, ino: InodeNo, name: bytes) -> bytes:
        ip = self.icache.iget(ino)
        with ip.lock.read():
            self._check_xattr(req, ip, name, write=False)
            value = xattr.load(self.ks, self.bmap, ip).get(name)
        if value is None:
            raise FsError(errno.ENODATA)
        return value

    def listxattr(self, req: Request, ino: InodeNo) -> list[bytes]:
        ip = self.icache.iget(ino)
        with ip.lock.read():
            names = list(xattr.load(self.ks, self.bmap, ip))
        return [n for n in names if req.uid == 0 or not n.startswith(b"trusted.")]

    def setxattr(self, req: Request, ino: InodeNo, name: bytes, value: bytes, flags: int = 0) -> None:
        self._writable()
        if flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise FsError(errno.EINVAL)
        if len(value) > xattr.SIZE_MAX:
            raise FsError(errno.E2BIG)
        ip = self.icache.iget(ino)
        with ip.lock.write():
            self._check_xattr(req, ip, name, write=True)
            attrs = dict(xattr.load(self.ks, self.bmap, ip))
            if flags & XATTR_CREATE and name in attrs:
                raise FsError(errno.EEXIST)
            if flags & XATTR_REPLACE and name not in attrs:
                raise FsError(errno.ENODATA)
            mode, stored = ip.mode, bytes(value)
            if name == acl.ACCESS:  # the mode follows; an ACL the mode says is not kept
                mode, kept = acl.on_set(stored, ip.mode, req, ip.gid)
                stored = kept or b""
            elif name == acl.DEFAULT and stored:
                acl.parse(stored)  # EINVAL for what is not an ACL
            if name in acl.NAMES and not stored:
                attrs.pop(name, None)
            else:
                attrs[name] = stored
            self._save_xattrs(ip, attrs, mode)

    def removexattr(self, req: Request, ino: InodeNo, name: bytes) -> None:
        self._writable()
        ip = self.icache.iget(ino)
        with ip.lock.write():
            self._check_xattr(req, ip, name, write=True)
            attrs = dict(xattr.load(self.ks, self.bmap, ip))
            if attrs.pop(name, None) is None:
                raise FsError(errno.ENODATA)
            self._save_xattrs(ip, attrs, ip.mode)

    def _check_xattr(self, req: Request, ip: Inode, name: bytes, write: bool) -> None:
        xattr.check_name(name)
        perm.check_xattr(req, ip, name, write)

    def _save_xattrs(self, ip: Inode, attrs: dict[bytes, bytes], mode: int) -> None:
        """Store ``attrs`` and ``mode`` in one transaction, or nothing (ENOSPC)."""
        raw = xattr.encode(attrs) if attrs else b""
        credits = xattr.credits_for(self.ks, self.bmap, ip, raw)
        if credits > self.credits // 2:  # the other half: room to free them with the inode
            raise FsError(errno.ENOSPC, f"extended attributes of {credits} blocks are more "
                          f"than this journal's transactions take ({self.credits // 2})")
        with self.transaction(credits) as h:
            xattr.save(self.ks, self.bmap, h, ip, attrs, raw)
            ip.mode = mode
            touch(self.ks.now_ns(), ip, mtime=False)
            self.icache.iupdate(h, ip)

    # ---------------------------------------------------------------- ACLs

    def chmod_acl(self, ip: Inode, mode: int) -> tuple[dict[bytes, bytes], bytes] | None:
        """The attributes after chmod to ``mode``, and encoded, if ``ip`` has an access
        ACL (None: nothing to rewrite). Stored with ``store_xattrs`` inside the chmod's
        transaction, which asks ``xattr.credits_for`` the encoded form more."""
        if not ip.xattr_block:
            return None
        attrs = dict(xattr.load(self.ks, self.bmap, ip))
        if acl.ACCESS not in attrs:
            return None
        attrs[acl.ACCESS] = acl.on_chmod(attrs[acl.ACCESS], mode)
        return attrs, xattr.encode(attrs)

    def inherit_acl(self, dp: Inode, mode: int, umask: int) -> tuple[int, dict[bytes, bytes]]:
        """A new inode's mode (type bits included) under ``dp``, and the ACL
        attributes it is born with: the umask applies only where ``dp`` has no
        default ACL."""
        default = xattr.load(self.ks, self.bmap, dp).get(acl.DEFAULT) if dp.xattr_block else None
        mode, access, inherited = acl.on_create(default, mode, umask)
        born = {acl.ACCESS: access, acl.DEFAULT: inherited}
        return mode, {k: v for k, v in born.items() if v}

    def store_xattrs(self, h: Handle, ip: Inode, attrs: dict[bytes, bytes], raw: bytes) -> None:
        """``attrs`` (``raw``: encoded) as ``ip``'s attributes, and the inode stored,
        inside the caller's transaction ``h`` (which asked ``xattr.credits_for`` more)."""
        xattr.save(self.ks, self.bmap, h, ip, attrs, raw)
        self.icache.iupdate(h, ip)
