"""The FUSE runtime: a file system mounted through pyfuse3 on trio.

Every FUSE request becomes one call (readdirplus: a few) on the current file system
through the ``Dispatcher``, made inline on the trio thread: handlers never await, so
requests run one at a time, and code in the runtime between calls (the control
socket, a live upgrade) sees no request half-done. A hop to a worker thread costs
~170 µs per request on our machines (../shared/research/fuse_perf.md §1.6), more than
most operations take. Two handlers may await around their call, ``lseek`` and a
write through an O_DIRECT handle (see there), for the kernel to drop cached pages:
other pyfuse3 workers (up to ``WORKERS``) serve the requests that arrive meanwhile.

The error sandbox lives here: pyfuse3 ends the whole mount on any exception that is
not a ``FUSEError``, so each call maps ``FsError`` to its errno and anything else — a
bug in the file system — to a logged traceback and EIO (or, with ``pdb``, a
post-mortem debugger in the foreground).
"""

from __future__ import annotations

import errno
import logging
import os
import pdb
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyfuse3
import trio

from ..api import (
    FALLOC_FL_PUNCH_HOLE,
    ROOT_INODE,
    ROOT_REQUEST,
    Attr,
    FileHandle,
    Filesystem,
    FsError,
    InodeNo,
    Request,
    SetAttr,
)
from ..ks_emul import supplementary_groups
from .guard import Guard
from .kernel_cache import KernelCache
from .space import SpaceGuard

log = logging.getLogger("bento.fuse")
# third_party/pyfuse3's cache-readdir.patch: opendir may answer with a FileInfo
_CACHE_READDIR = hasattr(pyfuse3.FileInfo(), "cache_readdir")

_ACCMODE = os.O_ACCMODE
# pyfuse3 worker tasks: one reads requests while others wait for the kernel to drop
# pages; the kernel may need that one to answer the READs it is waiting for.
WORKERS = 16
_DOTS = (b".", b"..")


@dataclass
class FuseOptions:
    """How the mount uses the kernel's caches; see ``bento mount --help``.

    ``writeback_cache`` lets the kernel gather small writes into 1 MiB ones (4-10x
    faster 4 KiB writes, measured) at the price of the kernel opening write-only
    files read-write; ``keep_cache`` keeps a file's pages and a directory's entries
    across opens. ``poll_us``: after each answer the daemon polls for the next
    request that long before it sleeps, which spares the kernel waking it for a
    client that asks again at once (a request's round trip 110 -> about 50 µs here;
    third_party/pyfuse3/README.md), for a CPU busy that long after the last request.
    ``negative_timeout``: how long the kernel may remember that a name is not there
    (kernel_cache.py).
    """

    entry_timeout: float = 60.0
    attr_timeout: float = 60.0
    negative_timeout: float = 60.0
    writeback_cache: bool = True
    keep_cache: bool = True
    default_permissions: bool = True
    allow_other: bool = True
    poll_us: float = 50.0
    pdb: bool = False  # post-mortem debugger on a file-system bug (foreground only)
    extra: set[str] = field(default_factory=set)  # mount options passed to libfuse


class FuseOperations(pyfuse3.Operations):
    """Translates pyfuse3's requests into ``Filesystem`` calls and back."""

    supports_dot_lookup = True

    def __init__(self, guard: Guard, options: FuseOptions) -> None:
        super().__init__()
        self.guard = guard  # undoes a failed call (guard.py)
        self.dispatch = guard.dispatch
        self.options = options
        self.enable_writeback_cache = options.writeback_cache
        # The kernel enforces ACLs only with its own permission checks (and makes
        # them on whenever ACLs are); the file system then applies the umask itself.
        self.enable_acl = guard.dispatch.fs.posix_acls and options.default_permissions
        self._dirs: dict[int, tuple[InodeNo, Request]] = {}  # dir handle -> (inode, opener)
        self._file_inodes: dict[int, int] = {}  # open file handle -> inode
        self._direct_fhs: set[int] = set()  # handles opened with O_DIRECT
        # inodes the kernel holds no page of: all dropped at an O_DIRECT open (or
        # created with O_DIRECT), none read or written through the cache since. The
        # complement would grow with every inode the kernel keeps; this one, only
        # with the files O_DIRECT writers use.
        self._uncached: set[int] = set()
        self._waiting = 0  # workers waiting for the kernel to drop pages
        self._requests: dict[tuple[int, int, int, int], Request] = {}
        self.kernel_cache = KernelCache(  # what the kernel keeps of our answers
            options.negative_timeout, options.keep_cache and _CACHE_READDIR)
        self.bugs = 0  # non-FsError exceptions answered with EIO
        self.space = SpaceGuard()  # direct I/O and a reserve near a full disk (space.py)
        self.initialized = False  # the kernel's INIT has arrived
        # Set by the control socket: called instead of the operation, once, to stop
        # it in a debugger (``bento debug``).
        self.intercept: Callable[[str, tuple[Any, ...]], Any] | None = None
        self.intercept_op: str | None = None

    def init(self) -> None:
        self.initialized = True
        if not hasattr(pyfuse3.Operations, "lseek") or not hasattr(pyfuse3, "set_spin"):
            log.warning("pyfuse3 lacks third_party/pyfuse3's patches (run scripts/setup.sh): "
                        "holes read as data, fallocate answers EOPNOTSUPP, O_DIRECT "
                        "writes drop whole files from the page cache, requests cost a "
                        "wake-up each")

    # -- the sandbox ---------------------------------------------------------------

    def _call(self, op: str, *args: Any) -> Any:
        try:
            if self.intercept is not None and self.intercept_op in (None, op):
                hook, self.intercept = self.intercept, None
                return hook(op, args)
            return self.guard.call(op, *args)
        except FsError as e:
            raise pyfuse3.FUSEError(e.errno) from None
        except Exception:
            self.bugs += 1
            log.exception("file-system bug in %s%r: answering EIO", op, _short(args))
            if self.options.pdb:
                pdb.post_mortem(sys.exc_info()[2])
            raise pyfuse3.FUSEError(errno.EIO) from None

    def _quiet(self, op: str, *args: Any) -> None:
        """For calls the kernel does not wait for (forget, release): never raise."""
        try:
            self._call(op, *args)
        except pyfuse3.FUSEError:
            pass

    def _req(self, ctx: pyfuse3.RequestContext) -> Request:
        """The request's credentials, with the supplementary groups FUSE leaves out
        (read once per process from /proc: ~20 µs) and whether the kernel checked."""
        key = (ctx.uid, ctx.gid, ctx.pid, ctx.umask)
        req = self._requests.get(key)
        if req is None:
            if len(self._requests) > 4096:
                self._requests.clear()
            groups = supplementary_groups(ctx.pid) if ctx.pid else ()
            req = self._requests[key] = Request(
                uid=ctx.uid, gid=ctx.gid, pid=ctx.pid, umask=ctx.umask, groups=groups,
                checked=self.options.default_permissions)
        return req

    def _entry(self, a: Attr) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = a.ino
        e.generation = a.generation if a.ino != ROOT_INODE else 0  # the kernel's rule
        e.entry_timeout = self.options.entry_timeout
        e.attr_timeout = self.options.attr_timeout
        e.st_mode = a.mode
        e.st_nlink = a.nlink
        e.st_uid = a.uid
        e.st_gid = a.gid
        e.st_rdev = a.rdev
        e.st_size = a.size
        e.st_blocks = a.blocks
        e.st_blksize = a.blksize
        e.st_atime_ns = a.atime_ns
        e.st_mtime_ns = a.mtime_ns
        e.st_ctime_ns = a.ctime_ns
        return e

    def _file_info(self, fh: FileHandle, ino: int, flags: int) -> pyfuse3.FileInfo:
        """An open for writing goes through the page cache, or below the low-water
        mark with direct I/O, so that its writes see ENOSPC themselves."""
        direct = False
        if self.options.writeback_cache and flags & _ACCMODE != os.O_RDONLY:
            if self.space.reserve:  # armed: the file system's free space decides
                try:
                    direct = self.space.wants_direct(self._free())
                except pyfuse3.FUSEError:  # the handle is open: answer the open anyway
                    direct = True
            self.space.opened(fh, ino, direct)
        self._file_inodes[fh] = ino
        if flags & os.O_DIRECT:
            self._direct_fhs.add(fh)
        return pyfuse3.FileInfo(fh=fh, keep_cache=self.options.keep_cache, direct_io=direct)

    def _free(self) -> int:
        s = self._call("statfs", ROOT_REQUEST)
        return s.blocks_available * s.block_size

    def _keep_reserve(self, nbytes: int = 0) -> None:
        """ENOSPC for an allocation that would take what cached writers may need."""
        if self.space.guarding and not self.space.may_allocate(self._free(), nbytes):
            raise pyfuse3.FUSEError(errno.ENOSPC)

    # -- names ---------------------------------------------------------------------

    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        """``.`` arrives only from a file handle whose inode the kernel evicted
        (``supports_dot_lookup``): the inode itself, by number."""
        if name == b".":
            return self._entry(self._call("lookup_inode", self._req(ctx), parent_inode))
        try:
            return self._entry(self._call("lookup", self._req(ctx), parent_inode, name))
        except pyfuse3.FUSEError as e:
            if e.errno != errno.ENOENT or not self.kernel_cache.missing(parent_inode, name):
                raise
            missing = pyfuse3.EntryAttributes()  # inode 0: "not there", kept that long
            missing.entry_timeout = self.options.negative_timeout
            return missing

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        """The kernel evicted these inodes, and their pages with them."""
        inos = [ino for ino, _ in inode_list]
        self._uncached.difference_update(inos)  # unknown again: at most one needless drop
        self.kernel_cache.forgotten(inos)
        self._quiet("forget", list(inode_list))

    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        self._keep_reserve()
        made = self._entry(self._call("mknod", self._req(ctx), parent_inode, name, mode, rdev))
        self.kernel_cache.made(parent_inode, name)
        return made

    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        self._keep_reserve()
        made = self._entry(self._call("mkdir", self._req(ctx), parent_inode, name, mode))
        self.kernel_cache.made(parent_inode, name)
        return made

    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        self._keep_reserve()
        made = self._entry(self._call("symlink", self._req(ctx), parent_inode, name, target))
        self.kernel_cache.made(parent_inode, name)
        return made

    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        self._keep_reserve()
        made = self._entry(self._call("link", self._req(ctx), inode, new_parent_inode, new_name))
        self.kernel_cache.made(new_parent_inode, new_name)
        return made

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._call("unlink", self._req(ctx), parent_inode, name)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._call("rmdir", self._req(ctx), parent_inode, name)

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        self._keep_reserve()
        self._call("rename", self._req(ctx), parent_inode_old, name_old, parent_inode_new,
                   name_new, flags)
        self.kernel_cache.made(parent_inode_new, name_new)

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return self._call("readlink", self._req(ctx), inode)

    # -- attributes ----------------------------------------------------------------

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._entry(self._call("getattr", self._req(ctx), inode))

    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        changes = SetAttr(
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            size=attr.st_size if fields.update_size else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            ctime_ns=attr.st_ctime_ns if fields.update_ctime else None,
        )
        return self._entry(self._call("setattr", self._req(ctx), inode, changes, fh))

    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        try:
            self._call("access", self._req(ctx), inode, mode)
        except pyfuse3.FUSEError as e:
            if e.errno == errno.EACCES:
                return False
            raise
        return True

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = self._call("statfs", self._req(ctx))
        out = pyfuse3.StatvfsData()
        out.f_bsize = s.block_size
        out.f_frsize = s.fragment_size
        out.f_blocks = s.blocks
        out.f_bfree = s.blocks_free
        out.f_bavail = s.blocks_available
        out.f_files = s.files
        out.f_ffree = s.files_free
        out.f_favail = s.files_free
        out.f_namemax = s.name_max
        return out

    # -- files ---------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        info = self._file_info(self._open(self._req(ctx), inode, flags), inode, flags)
        if flags & os.O_DIRECT and flags & _ACCMODE != os.O_RDONLY and inode not in self._uncached:
            await self._drop_pages(inode)  # see write: from now on only a READ costs
        return info

    def _for_kernel(self, flags: int) -> int:
        """With the writeback cache the kernel reads pages through any handle to fill
        partial writes, so a write-only open must give a readable handle. The caller
        still cannot read: the kernel checks its own file's mode."""
        if self.options.writeback_cache and flags & _ACCMODE == os.O_WRONLY:
            return flags & ~_ACCMODE | os.O_RDWR
        return flags

    def _open(self, req: Request, inode: int, flags: int) -> FileHandle:
        asked, flags = flags, self._for_kernel(flags)
        try:
            return self._call("open", req, inode, flags)
        except pyfuse3.FUSEError as e:
            # The kernel may ask read-write for a write-only open (above, or on its
            # own); if only the read permission is missing, check the write one and
            # open for the kernel's use.
            if not (e.errno == errno.EACCES and self.options.writeback_cache
                    and flags & _ACCMODE == os.O_RDWR and asked & _ACCMODE != os.O_RDONLY):
                raise
            self._call("access", req, inode, os.W_OK)
            return self._call("open", ROOT_REQUEST, inode, flags)

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        self._keep_reserve()
        attr, fh = self._call("create", self._req(ctx), parent_inode, name, mode,
                              self._for_kernel(flags))
        self.kernel_cache.made(parent_inode, name)
        if flags & os.O_DIRECT:
            self._uncached.add(attr.ino)  # new: the kernel has no page of it
        return self._file_info(fh, attr.ino, flags), self._entry(attr)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        data = self._call("read", fh, off, size)
        if fh not in self._direct_fhs:
            self._uncached.discard(self._file_inodes.get(fh, 0))
        return data

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        """A write through an O_DIRECT handle goes around the kernel's page cache, and
        for asynchronous I/O (libaio, io_uring) the kernel does not drop the pages a
        buffered reader cached meanwhile: that reader would go on seeing old data.
        So before answering, the kernel is told to drop the pages written, if it may
        hold pages of the file: a READ or a cached write of it was served since the
        last time all were dropped (at an O_DIRECT open). A file that only O_DIRECT
        handles use pays nothing."""
        if not self.space.is_write_back(fh):
            self._keep_reserve(len(buf))
        written = self._call("write", fh, off, buf)
        ino = self._file_inodes.get(fh, 0)
        if fh not in self._direct_fhs:
            self._uncached.discard(ino)
        elif ino not in self._uncached:
            await self._drop_pages(ino, off, len(buf))
        return written

    async def _drop_pages(self, ino: int, offset: int = 0, length: int = 0,
                          wait: bool = False) -> None:
        """Invalidate ``ino``'s pages in a range (length 0: all of them) from a thread:
        the kernel may wait for READs of them, which other workers serve. With every
        spare worker already waiting, start it without waiting for it rather than
        risk none left to serve those READs — unless the caller must ``wait``
        (lseek: its answer depends on what the kernel writes back first)."""
        if not length:
            self._uncached.add(ino)  # a READ or cached write served from now on clears it
        if self._waiting >= WORKERS - 2 and not wait:
            threading.Thread(target=_invalidate, args=(ino, offset, length), daemon=True).start()
            return
        self._waiting += 1
        try:
            await trio.to_thread.run_sync(_invalidate, ino, offset, length)
        finally:
            self._waiting -= 1

    async def flush(self, fh: int) -> None:
        """ENOSYS for a file system that keeps the API's no-op flush: the kernel then
        stops sending FLUSH (Filesystem.flush)."""
        if type(self.dispatch.fs).flush is Filesystem.flush:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        self._call("flush", fh)

    async def release(self, fh: int) -> None:
        self.space.released(fh)
        self._file_inodes.pop(fh, None)
        self._direct_fhs.discard(fh)
        self._quiet("release", fh)

    async def fsync(self, fh: int, datasync: bool) -> None:
        self._call("fsync", fh, bool(datasync))

    async def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        if not mode & FALLOC_FL_PUNCH_HOLE:
            self._keep_reserve(length)
        self._call("fallocate", fh, mode, offset, length)

    async def lseek(self, fh: int, offset: int, whence: int) -> int:
        """SEEK_DATA/SEEK_HOLE. The kernel sends FUSE_LSEEK without writing back the
        pages it caches, so while a handle writes the file through the cache the
        file system alone would call fresh data a hole (and ``cp --sparse`` would
        skip it). Invalidating the inode's pages makes the kernel write them back
        first (launder): from a thread, as it waits for those WRITEs, which the
        second worker serves."""
        ino = self._file_inodes.get(fh)
        if ino is not None and self.space.has_cached_writer(ino):
            await self._drop_pages(ino, wait=True)
        return self._call("lseek", fh, offset, whence)

    # -- directories ---------------------------------------------------------------

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int | pyfuse3.FileInfo:
        """With ``keep_cache``, the kernel keeps the entries it reads (kernel_cache.py)."""
        req = self._req(ctx)
        fh = self._call("opendir", req, inode)
        self._dirs[fh] = (InodeNo(inode), req)
        if self.kernel_cache.opened_dir(inode):
            return pyfuse3.FileInfo(fh=fh, keep_cache=True, cache_readdir=True)
        return fh

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        """readdirplus: each entry goes with its attributes and counts one lookup
        (pyfuse3 clears READDIRPLUS_AUTO, so the kernel always asks for plus)."""
        ino, _ = self._dirs[fh]
        offset = start_id
        while True:
            entries = list(self._call("readdir", fh, offset))
            if not entries:
                return
            for d in entries:
                try:
                    if d.name in _DOTS:  # the kernel keeps no dentry for these
                        attr = self._call("getattr", ROOT_REQUEST, d.ino)
                    else:  # the kernel, not the caller, looks: no search permission needed
                        attr = self._call("lookup", ROOT_REQUEST, ino, d.name)
                except pyfuse3.FUSEError as e:
                    if e.errno in (errno.ENOENT, errno.ESTALE):  # gone since the scan
                        offset = d.next_offset
                        continue
                    raise
                if not pyfuse3.readdir_reply(token, d.name, self._entry(attr), d.next_offset):
                    if d.name not in _DOTS:
                        self._quiet("forget", [(attr.ino, 1)])
                    return
                offset = d.next_offset

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)
        self._quiet("releasedir", fh)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        self._call("fsyncdir", fh, bool(datasync))

    # -- extended attributes -------------------------------------------------------

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        return self._call("getxattr", self._req(ctx), inode, name)

    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        self._keep_reserve(len(value))
        self._call("setxattr", self._req(ctx), inode, name, value, 0)

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return self._call("listxattr", self._req(ctx), inode)

    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._call("removexattr", self._req(ctx), inode, name)


def _short(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Arguments for a log line: data payloads by length only."""
    return tuple(f"<{len(a)} bytes>" if isinstance(a, (bytes, memoryview)) and len(a) > 64
                 else a for a in args)


def _invalidate(ino: int, offset: int = 0, length: int = 0) -> None:
    """Make the kernel write back and drop the inode's cached pages in a range
    (length 0: all), from a thread. An inode the kernel no longer holds has none:
    ENOENT is no error; another error is logged, never raised into pyfuse3 (which
    would end the mount)."""
    try:
        if hasattr(pyfuse3, "invalidate_range"):
            pyfuse3.invalidate_range(ino, offset, length)
        else:  # an unpatched pyfuse3 (init warned): the whole file
            pyfuse3.invalidate_inode(ino, False)
    except OSError as e:
        if e.errno != errno.ENOENT:
            log.warning("the kernel did not drop inode %d's pages: %s", ino, e)
