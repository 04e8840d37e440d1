"""xv6's system-call layer: the ``Filesystem`` API over the xv6 v2 format (cf. xv6's
sysfile.c).

Each operation checks its arguments and permissions (``_perm``), takes the locks in
the order docs/locking.md writes down, starts the journal handle and calls down:

- ``_xattr_ops`` the extended-attribute calls and POSIX ACLs (the class below
  ``Xv6``)
- ``_names``   names given, taken and moved (namei, dirlink)
- ``_file``    file contents read, written, truncated, synced, freed (readi, writei,
  itrunc)
- ``_orphans`` the orphan list; ``_icache`` the in-memory inodes (iget, iupdate)
- ``_dir``, ``_bmap``, ``_alloc``, ``_xattr`` the on-disk structures below them

Inode lifetime: an inode lives on disk while it has names (nlink); in memory
while the kernel holds lookups (nlookup) or handles are open (nopen). When all
three are zero it is reclaimed. Between its last unlink and its reclaim it sits on
the on-disk orphan list, so a crash cannot leak it: mount reclaims the list.

A subclass (provenance) is written against ``Xv6Core``'s extension seam (_core.py):
public names with a stated contract; the rest is private.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterable, Sequence

import numpy as np

from bento_user.api import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_ZERO_RANGE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    SEEK_DATA,
    SEEK_HOLE,
    Attr,
    DirEntry,
    FileHandle,
    FsError,
    InodeNo,
    Request,
    SetAttr,
    StatFs,
    corrupt,
)
from bento_user.ks_emul import Handle

from . import _perm as perm
from . import _xattr as xattr
from ._bmap import NoSpace
from ._core import OpenFile
from ._file import OP_CREDITS, SMALL_WRITE
from ._format import BLOCK_SIZE, MAX_FILE_SIZE, NAME_MAX, SYMLINK_MAX
from ._inode import Inode, touch
from ._names import check_name
from ._xattr_ops import XattrOps

log = logging.getLogger(__name__)

LINK_MAX = 65000
_ACCMODE = os.O_RDONLY | os.O_WRONLY | os.O_RDWR


class Xv6(XattrOps):
    """xv6 grown up: FORMAT.md describes the disk, docs/locking.md the locks.

    Args:
        read_only: refuse every change with EROFS (and never write the device).
        atime: "relatime" (Linux's default), "strictatime" or "noatime".
    """

    name = "xv6"

    # ---------------------------------------------------------------- helpers

    def _reclaim_if_unused(self, ip: Inode) -> None:
        if self.icache.unused(ip) and not self.read_only:
            self.file_io.reclaim(ip)

    # ---------------------------------------------------------------- names

    def lookup(self, req: Request, parent: InodeNo, name: bytes) -> Attr:
        with self.ns.read():
            dp = self.directory(parent)
            perm.require(req, dp, os.X_OK)  # Linux: search permission before the name
            if len(name) > NAME_MAX:
                raise FsError(errno.ENAMETOOLONG)
            ip = self.names.child(dp, name)
            if ip is None:
                raise FsError(errno.ENOENT)
            return self.icache.counted(ip)

    def lookup_inode(self, req: Request, ino: InodeNo) -> Attr:
        with self.ns.read():
            ip = self.icache.iget(ino)  # ESTALE when out of range, free or hidden
            if ip.nlink == 0:
                raise FsError(errno.ESTALE, f"inode {ino} has no name left")
            return self.icache.counted(ip)

    def forget(self, items: Sequence[tuple[InodeNo, int]]) -> None:
        for ino, n in items:
            try:
                if not self.icache.forget(ino, n):
                    continue
                # the last lookup: an inode with no name left goes now (one out of
                # memory has a name, unless it is an orphan a predecessor held)
                with self.icache.lock:
                    ip = self.icache.table.get(ino)
                if ip is None and ino in self.orphans:
                    ip = self.icache.iget(ino)
                if ip is not None:
                    self._reclaim_if_unused(ip)
            except Exception:  # forget must not fail; the inode stays on the orphan list
                log.exception("xv6: forget of inode %d", ino)

    def _create(self, req: Request, parent: int, name: bytes, mode: int, rdev: int = 0,
                target: bytes | None = None) -> Inode:
        """Make a new inode named ``name`` in ``parent`` (any kind), counted once."""
        self._writable()
        kind = stat.S_IFMT(mode)
        with self.ns.write():
            dp = self.directory(parent)
            with dp.lock.write():
                perm.require(req, dp, os.X_OK)  # Linux: search permission, then the name
                check_name(name)
                perm.require(req, dp, os.W_OK | os.X_OK)
                if dp.nlink == 0:
                    raise FsError(errno.ENOENT, "the directory was removed")
                if self.dirs.lookup(dp, name) is not None:
                    raise FsError(errno.EEXIST)
                if kind in (stat.S_IFCHR, stat.S_IFBLK):
                    perm.require_root(req)  # CAP_MKNOD
                if kind == stat.S_IFDIR and dp.nlink >= LINK_MAX:
                    raise FsError(errno.EMLINK)
                mode, acls = self.inherit_acl(dp, kind | (mode & 0o7777), req.umask)
                uid, gid, mode = perm.new_owner(req, dp, mode)
                raw = xattr.encode(acls) if acls else b""
                if acls and self.alloc.free_blocks < xattr.stream_blocks(raw) + 2:
                    # now, not half-way: the name would stay without its ACL
                    raise FsError(errno.ENOSPC, "no room for the inherited ACL")
                with self.transaction(OP_CREDITS + xattr.credits_for_new(raw)) as h:
                    ip = self.names.new_inode(h, dp, name, mode, uid, gid, rdev, target)
                    if acls:
                        self.store_xattrs(h, ip, acls, raw)
                    self.created(h, dp, name, ip)
                self.icache.shrink()
            return ip

    def mknod(self, req: Request, parent: InodeNo, name: bytes, mode: int, rdev: int) -> Attr:
        kind = stat.S_IFMT(mode)
        if kind == 0:
            mode |= stat.S_IFREG
        elif kind not in (stat.S_IFREG, stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK):
            raise FsError(errno.EINVAL)
        rdev = rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0
        return self._create(req, parent, name, mode, rdev).attr(BLOCK_SIZE)

    def mkdir(self, req: Request, parent: InodeNo, name: bytes, mode: int) -> Attr:
        return self._create(req, parent, name, stat.S_IFDIR | (mode & 0o7777)).attr(BLOCK_SIZE)

    def symlink(self, req: Request, parent: InodeNo, name: bytes, target: bytes) -> Attr:
        if len(target) > SYMLINK_MAX:
            raise FsError(errno.ENAMETOOLONG)
        if not target or b"\0" in target:
            raise FsError(errno.ENOENT if not target else errno.EINVAL)
        return self._create(req, parent, name, stat.S_IFLNK | 0o777, target=target).attr(BLOCK_SIZE)

    def readlink(self, req: Request, ino: InodeNo) -> bytes:
        ip = self.icache.iget(ino)
        if not stat.S_ISLNK(ip.mode):
            raise FsError(errno.EINVAL)
        with ip.lock.read():
            p = self.bmap.lookup(ip, 0)
            if not p or ip.size > SYMLINK_MAX:
                raise corrupt(f"symlink {ino} has no target block")
            with self.ks.bread(p) as bh:
                return bh.data[: ip.size].tobytes()

    def link(self, req: Request, ino: InodeNo, new_parent: InodeNo, new_name: bytes) -> Attr:
        self._writable()
        check_name(new_name)
        with self.ns.write():
            ip = self.icache.iget(ino)
            dp = self.directory(new_parent)
            if ip.is_dir:
                raise FsError(errno.EPERM, "hard links to directories are not allowed")
            first, second = sorted((dp, ip), key=lambda i: i.ino)
            with first.lock.write(), second.lock.write(1):
                perm.require(req, dp, os.W_OK | os.X_OK)
                if dp.nlink == 0 or ip.nlink == 0:
                    raise FsError(errno.ENOENT)
                if self.dirs.lookup(dp, new_name) is not None:
                    raise FsError(errno.EEXIST)
                if ip.nlink >= LINK_MAX:
                    raise FsError(errno.EMLINK)
                with self.transaction() as h:
                    self.names.link(h, dp, new_name, ip)
            return self.icache.counted(ip)

    def unlink(self, req: Request, parent: InodeNo, name: bytes) -> None:
        self._remove(req, parent, name, directory=False)

    def rmdir(self, req: Request, parent: InodeNo, name: bytes) -> None:
        self._remove(req, parent, name, directory=True)

    def _remove(self, req: Request, parent: int, name: bytes, directory: bool) -> None:
        self._writable()
        if len(name) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG)
        if directory and name == b".":
            raise FsError(errno.EINVAL)
        if directory and name == b"..":
            raise FsError(errno.ENOTEMPTY)
        with self.ns.write():
            dp = self.directory(parent)
            ip = self.names.child(dp, name)
            if ip is None:
                raise FsError(errno.ENOENT)
            with dp.lock.write(), ip.lock.write(1):
                perm.require(req, dp, os.W_OK | os.X_OK)
                perm.check_sticky(req, dp, ip)
                if directory and not ip.is_dir:
                    raise FsError(errno.ENOTDIR)
                if not directory and ip.is_dir:
                    raise FsError(errno.EISDIR)
                if directory and not self.dirs.is_empty(ip):
                    raise FsError(errno.ENOTEMPTY)
                with self.transaction() as h:
                    self.names.remove(h, dp, name, ip)
            self.icache.shrink()
        self._reclaim_if_unused(ip)

    def rename(self, req: Request, parent: InodeNo, name: bytes, new_parent: InodeNo,
               new_name: bytes, flags: int = 0) -> None:
        self._writable()
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
            raise FsError(errno.EINVAL)
        check_name(new_name)
        if len(name) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG)
        if {name, new_name} & {b".", b".."}:
            raise FsError(errno.EBUSY if flags != RENAME_EXCHANGE else errno.EINVAL)
        victim = None
        with self.ns.write():
            sdp, ddp = self.directory(parent), self.directory(new_parent)
            sip = self.names.child(sdp, name)
            if sip is None:
                raise FsError(errno.ENOENT)
            dip = self.names.child(ddp, new_name)
            involved = sorted({i.ino: i for i in (sdp, ddp, sip, dip) if i}.values(),
                              key=lambda i: i.ino)
            for depth, i in enumerate(involved):
                i.lock.acquire_write(depth)
            try:
                if self._check_rename(req, sdp, ddp, sip, dip, flags):
                    with self.transaction() as h:
                        victim = self.names.rename(h, sdp, name, ddp, new_name, sip, dip,
                                                   exchange=bool(flags & RENAME_EXCHANGE))
            finally:
                for i in reversed(involved):
                    i.lock.release_write()
            self.icache.shrink()
        if victim is not None:
            self._reclaim_if_unused(victim)

    def _check_rename(self, req: Request, sdp: Inode, ddp: Inode, sip: Inode,
                      dip: Inode | None, flags: int) -> bool:
        """Raise what Linux would; False when there is nothing to do. In vfs_rename's
        order: the names, the same inode (nothing to do, nothing checked), then
        permissions, then the kinds; emptiness is the file system's."""
        if flags & RENAME_EXCHANGE and dip is None:
            raise FsError(errno.ENOENT)
        if flags & RENAME_NOREPLACE and dip is not None:
            raise FsError(errno.EEXIST)
        moves = [(sip, ddp)] + ([(dip, sdp)] if flags & RENAME_EXCHANGE else [])
        moved = [child for child, _ in moves if child.is_dir and sdp is not ddp]
        for child, target in moves:
            if child in moved and self.names.is_ancestor(child, target):
                raise FsError(errno.EINVAL, "cannot move a directory inside itself")
        if dip is sip:
            return False  # two names of one inode: POSIX says do nothing
        perm.require(req, sdp, os.W_OK | os.X_OK)
        perm.require(req, ddp, os.W_OK | os.X_OK)
        perm.check_sticky(req, sdp, sip)
        if dip is not None:
            perm.check_sticky(req, ddp, dip)
        replaced = dip if not flags & RENAME_EXCHANGE else None
        if replaced is not None:
            if sip.is_dir and not replaced.is_dir:
                raise FsError(errno.ENOTDIR)
            if not sip.is_dir and replaced.is_dir:
                raise FsError(errno.EISDIR)
        for child in moved:
            perm.require(req, child, os.W_OK)  # its '..' changes
        if replaced is not None and replaced.is_dir and not self.dirs.is_empty(replaced):
            raise FsError(errno.ENOTEMPTY)
        return True

    # ---------------------------------------------------------------- attributes

    def getattr(self, req: Request, ino: InodeNo) -> Attr:
        ip = self.icache.iget(ino)
        with ip.lock.read():
            return ip.attr(BLOCK_SIZE)

    def setattr(self, req: Request, ino: InodeNo, changes: SetAttr,
                fh: FileHandle | None = None) -> Attr:
        self._writable()
        ip = self.icache.iget(ino)
        with ip.lock.write():
            self._check_setattr(req, ip, changes, fh)
            now = self.ks.now_ns()
            if changes.size is not None and changes.size != ip.size:
                self.file_io.truncate(ip, changes.size)
            c = changes
            mode = ip.mode if c.mode is None else stat.S_IFMT(ip.mode) | perm.chmod_mode(req, ip, c.mode)
            acls = self.chmod_acl(ip, mode) if c.mode is not None else None
            acl_credits = xattr.credits_for(self.ks, self.bmap, ip, acls[1]) if acls else 0
            with self.transaction(OP_CREDITS + acl_credits) as h:
                ip.mode = mode
                if acls:
                    self.store_xattrs(h, ip, *acls)
                if c.uid is not None or c.gid is not None:
                    ip.mode = req.killed_suid(ip.mode, ip.gid)  # Linux: even root, even unchanged
                    ip.uid = ip.uid if c.uid is None else c.uid
                    ip.gid = ip.gid if c.gid is None else c.gid
                if c.size is not None:
                    if req.uid:
                        ip.mode = req.killed_suid(ip.mode, ip.gid)
                    if c.mtime_ns is None:
                        ip.mtime_ns = now
                if c.atime_ns is not None:
                    ip.atime_ns = now if c.atime_ns == SetAttr.NOW else c.atime_ns
                if c.mtime_ns is not None:
                    ip.mtime_ns = now if c.mtime_ns == SetAttr.NOW else c.mtime_ns
                ip.ctime_ns = now if c.ctime_ns is None else c.ctime_ns
                self.icache.iupdate(h, ip)
            return ip.attr(BLOCK_SIZE)

    def _check_setattr(self, req: Request, ip: Inode, c: SetAttr, fh: FileHandle | None) -> None:
        if c.mode is not None:
            perm.require_owner(req, ip)
        if c.uid is not None or c.gid is not None:
            perm.check_chown(req, ip, c.uid, c.gid)
        if c.size is not None:
            if ip.is_dir:
                raise FsError(errno.EISDIR)
            if not stat.S_ISREG(ip.mode):
                raise FsError(errno.EINVAL)
            if c.size < 0:
                raise FsError(errno.EINVAL)
            if c.size > MAX_FILE_SIZE:
                raise FsError(errno.EFBIG)
            of = (self.open_files.get(fh) or self._adopt(fh)) if fh is not None else None
            if of is None:
                perm.require(req, ip, os.W_OK)
            elif of.flags & _ACCMODE == os.O_RDONLY:
                raise FsError(errno.EINVAL)
        times = [t for t in (c.atime_ns, c.mtime_ns) if t is not None]
        if times:
            perm.check_utimes(req, ip, only_now=all(t == SetAttr.NOW for t in times))

    def access(self, req: Request, ino: InodeNo, mask: int) -> None:
        ip = self.icache.iget(ino)
        if mask and not perm.permitted(req, ip, mask):
            raise FsError(errno.EACCES)
        if mask & os.W_OK and self.read_only:
            raise FsError(errno.EROFS)

    def statfs(self, req: Request) -> StatFs:
        a = self.alloc
        free = a.free_blocks + a.pending_blocks
        return StatFs(block_size=BLOCK_SIZE, blocks=self.geo.nblocks - self.geo.data_start,
                      blocks_free=free, blocks_available=free, files=self.geo.ninodes - 1,
                      files_free=a.free_inodes, name_max=NAME_MAX)

    # ---------------------------------------------------------------- files

    def open(self, req: Request, ino: InodeNo, flags: int) -> FileHandle:
        ip = self.icache.iget(ino)
        acc = flags & _ACCMODE
        want = {os.O_RDONLY: os.R_OK, os.O_WRONLY: os.W_OK, os.O_RDWR: os.R_OK | os.W_OK}.get(acc)
        if want is None:
            raise FsError(errno.EINVAL)
        if ip.is_dir and (acc != os.O_RDONLY or flags & os.O_TRUNC):
            raise FsError(errno.EISDIR)
        if (acc != os.O_RDONLY or flags & os.O_TRUNC) and self.read_only:
            raise FsError(errno.EROFS)
        perm.require(req, ip, want | (os.W_OK if flags & os.O_TRUNC else 0))
        if flags & os.O_TRUNC and stat.S_ISREG(ip.mode):  # Linux: read-only opens too
            with ip.lock.write():
                if ip.size:
                    self.file_io.truncate(ip, 0)
                with self.transaction() as h:
                    touch(self.ks.now_ns(), ip)
                    if req.uid:
                        ip.mode = req.killed_suid(ip.mode, ip.gid)
                    self.icache.iupdate(h, ip)
        return self._new_handle(ip, flags, req)

    def _new_handle(self, ip: Inode, flags: int, req: Request) -> FileHandle:
        with self.icache.lock:
            ip.nopen += 1
            fh = next(self._fh)
            self.open_files[fh] = OpenFile(ip, flags, req)
        return FileHandle(fh)

    def create(self, req: Request, parent: InodeNo, name: bytes, mode: int,
               flags: int) -> tuple[Attr, FileHandle]:
        ip = self._create(req, parent, name, stat.S_IFREG | (mode & 0o7777))
        return ip.attr(BLOCK_SIZE), self._new_handle(ip, flags, req)

    def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        of = self.open_file(fh)
        ip = of.ip
        if ip.is_dir:
            raise FsError(errno.EISDIR)
        if of.flags & _ACCMODE == os.O_WRONLY:
            raise FsError(errno.EBADF)
        if offset < 0 or size < 0:
            raise FsError(errno.EINVAL)
        with ip.lock.read():
            out = self.file_io.read(ip, offset, size)
            if not out:
                return b""
            update_atime = self._atime_due(ip)
        if update_atime:
            with ip.lock.write(), self.transaction() as h:
                ip.atime_ns = self.ks.now_ns()
                self.icache.iupdate(h, ip)
        return out

    def _atime_due(self, ip: Inode) -> bool:
        if self.atime == "noatime" or self.read_only:
            return False
        if self.atime == "strictatime":
            return True
        day = 24 * 3600 * 10**9
        return (ip.atime_ns <= ip.mtime_ns or ip.atime_ns <= ip.ctime_ns
                or self.ks.now_ns() - ip.atime_ns >= day)

    def write(self, fh: FileHandle, offset: int, data: bytes | memoryview) -> int:
        self._writable()
        of = self.open_file(fh)
        if of.flags & _ACCMODE == os.O_RDONLY:
            raise FsError(errno.EBADF)
        ip = of.ip
        src = np.frombuffer(data, dtype=np.uint8)
        if offset < 0:
            raise FsError(errno.EINVAL)
        if offset + len(src) > MAX_FILE_SIZE:
            raise FsError(errno.EFBIG)
        if not len(src):
            return 0
        with ip.lock.write():
            if len(src) <= SMALL_WRITE:
                try:
                    with self.transaction() as h:
                        self.file_io.write_small(h, ip, offset, src)
                        self._wrote(h, of, ip, offset + len(src))
                    return len(src)
                except NoSpace:
                    pass  # the general path below waits for blocks a commit frees
            done = self.file_io.write(ip, offset, src)
            if done == 0:
                raise FsError(errno.ENOSPC)
            with self.transaction() as h:
                self._wrote(h, of, ip, offset + done)
        return done

    def _wrote(self, h: Handle, of: OpenFile, ip: Inode, end: int) -> None:
        """A write through ``of`` ended at ``end``: the size, the times, and (as
        Linux's file_remove_privs) setuid gone unless root wrote."""
        ip.size = max(ip.size, end)
        touch(self.ks.now_ns(), ip)
        if of.req.uid:
            ip.mode = of.req.killed_suid(ip.mode, ip.gid)
        self.icache.iupdate(h, ip)

    def fallocate(self, fh: FileHandle, mode: int, offset: int, length: int) -> None:
        self._writable()
        keep = bool(mode & FALLOC_FL_KEEP_SIZE)
        kind = mode & ~FALLOC_FL_KEEP_SIZE
        if kind not in (0, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE) or (
                kind == FALLOC_FL_PUNCH_HOLE and not keep):
            raise FsError(errno.EOPNOTSUPP)
        if offset < 0 or length <= 0:
            raise FsError(errno.EINVAL)
        end = offset + length
        if end > MAX_FILE_SIZE:
            raise FsError(errno.EFBIG)
        of = self.open_file(fh)
        if of.flags & _ACCMODE == os.O_RDONLY:
            raise FsError(errno.EBADF)
        ip = of.ip
        if not stat.S_ISREG(ip.mode):
            raise FsError(errno.ENODEV)
        with ip.lock.write():
            inside = min(end, ip.size) if keep else end
            done = self.file_io.fallocate(ip, kind, offset, end, inside)
            with self.transaction() as h:
                if not keep:
                    ip.size = max(ip.size, min(end, done))
                touch(self.ks.now_ns(), ip)
                if of.req.uid:
                    ip.mode = of.req.killed_suid(ip.mode, ip.gid)
                self.icache.iupdate(h, ip)
            if done < inside:
                raise FsError(errno.ENOSPC)

    def lseek(self, fh: FileHandle, offset: int, whence: int) -> int:
        if whence not in (SEEK_DATA, SEEK_HOLE):
            raise FsError(errno.EINVAL)
        ip = self.open_file(fh).ip
        with ip.lock.read():
            if offset < 0 or offset >= ip.size:
                raise FsError(errno.ENXIO)
            if whence == SEEK_HOLE:
                return self.file_io.seek_hole(ip, offset)
            pos = self.file_io.seek_data(ip, offset)
        if pos is None:
            raise FsError(errno.ENXIO)
        return pos

    def release(self, fh: FileHandle) -> None:
        if fh not in self.open_files:
            self._adopt(fh)
        with self.icache.lock:
            of = self.open_files.pop(fh, None)
            if of is None:
                return
            of.ip.nopen -= 1
        try:
            self._reclaim_if_unused(of.ip)
        except Exception:
            log.exception("xv6: reclaiming inode %d", of.ip.ino)

    def fsync(self, fh: FileHandle, datasync: bool) -> None:
        self.file_io.sync(self.open_file(fh).ip)

    # ---------------------------------------------------------------- directories

    def opendir(self, req: Request, ino: InodeNo) -> FileHandle:
        ip = self.directory(ino)
        perm.require(req, ip, os.R_OK)
        return self._new_handle(ip, os.O_RDONLY | os.O_DIRECTORY, req)

    def readdir(self, fh: FileHandle, offset: int) -> Iterable[DirEntry]:
        ip = self.open_file(fh).ip
        if not ip.is_dir:
            raise FsError(errno.ENOTDIR)
        with self.ns.read(), ip.lock.read():
            if ip.nlink == 0:
                return []
            out = [DirEntry(r.name, InodeNo(r.ino), r.kind << 12, nxt)
                   for r, nxt in self.dirs.scan(ip, offset, 128)]
            update_atime = offset == 0 and self.diratime and self._atime_due(ip)
        if update_atime:  # a listing reads the directory: its atime, as a read's
            with ip.lock.write(), self.transaction() as h:
                ip.atime_ns = self.ks.now_ns()
                self.icache.iupdate(h, ip)
        return out

    def releasedir(self, fh: FileHandle) -> None:
        self.release(fh)

    def fsyncdir(self, fh: FileHandle, datasync: bool) -> None:
        self.open_file(fh)
        self.journal.force_commit()
