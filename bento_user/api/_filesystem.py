"""The file-system API (Bento's libBentoFS): the class a file system subclasses.

Methods mirror FUSE's low-level operations. A runtime calls them; they are
synchronous, and may be called from several threads at once, so a file system guards
its shared state with kernel-services locks, or sets ``serial``. Every method that is
not overridden answers ENOSYS.

The lookup count (FUSE's contract): every ``Attr`` returned by ``lookup``, ``create``,
``mknod``, ``mkdir``, ``symlink`` and ``link`` adds one to the inode's count; ``forget``
takes counts away. An inode whose last name is gone must live on (readable, writable
through open handles) until its count and its open handles are zero. ``readdir``
does not count: a runtime that wants attributes for entries (readdirplus) calls
``lookup`` for each, and ``forget`` for the ones it could not deliver. A file system
may keep these counts itself (xv6) or override ``evict`` and have the runtime keep
them, as Linux's VFS does for its file systems (tiny).

Permissions: under a FUSE mount with ``default_permissions`` (the default) the kernel
has checked every permission with the caller's full credentials before a call
arrives, and marks the request ``checked``; a file system then must not refuse again
(EACCES, EPERM) with less information than the kernel had. Without it (the direct
runtime, ``no_default_permissions``) the file system is the only check, unless it
sets ``vfs_checks``: then the direct runtime checks as the kernel would.

Offsets, sizes and file handles are ints; names and link targets are ``bytes`` (no
NUL, no ``/``); data to write arrives as any bytes-like object.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ._fsck import FsckReport, Progress
from ._types import (Attr, DirEntry, ErrorRecord, FileHandle, FsError, InodeNo, Request, SetAttr,
                     StatFs, UpgradeState)

if TYPE_CHECKING:
    from ..blockdev import BlockDevice
    from ..ks_emul import KernelServices


def _nosys() -> FsError:
    return FsError(errno.ENOSYS)


class Filesystem:
    """Subclass and override what your file system supports.

    Life cycle: ``init(ks)`` once with the kernel services (it opens the journal,
    recovers, reads the superblock), then operations, then ``destroy()`` (commit,
    release; the runtime closes the services afterwards). A live upgrade replaces
    ``destroy`` by ``prepare_upgrade()`` on the old instance and
    ``from_upgrade(state, ks)`` on the new class.
    """

    name = "filesystem"

    #: The durability contract beyond POSIX's, which the crash explorer holds a file
    #: system to. False (the default): ``sync`` persists everything, ``fsync`` and
    #: ``fdatasync`` the file's own data; nothing else is promised. True: any fsync,
    #: fdatasync or directory fsync also persists every metadata operation that
    #: returned before it (one journal committed whole, like xv6 or ext4's default);
    #: claim it only if it holds, or the crash explorer will say so.
    ordered_metadata: bool = False

    #: The renameat2 flags implemented (RENAME_NOREPLACE, RENAME_EXCHANGE); any other
    #: must be refused with EINVAL, as Linux file systems do. The fuzzers draw these.
    rename_flags: int = 0

    #: True: the runtime makes one call at a time (libfuse's ``-s``), so the file
    #: system needs no locks of its own; simple, and slower only where calls could
    #: have overlapped (reads of different files, a slow fsync).
    serial: bool = False

    #: True: the file system leaves to the kernel the checks Linux's VFS makes before
    #: it calls a file system (runtime/vfs.py): permissions and the sticky bit, the
    #: kinds in unlink, rmdir and rename, a rename's own rules (onto itself, into its
    #: own subtree, RENAME_NOREPLACE), who may chmod, chown or set times, and
    #: chmod's setgid rule. Every request but an xattr's then arrives ``checked``; what
    #: is left is what Linux leaves a file system (ENOTEMPTY, ENOSPC, the effects of
    #: permissions). A mount needs ``default_permissions``; the direct runtime makes
    #: the checks itself.
    vfs_checks: bool = False

    #: POSIX ACLs: the file system stores ``system.posix_acl_access`` and
    #: ``system.posix_acl_default`` like any extended attribute and does what the
    #: kernel leaves to it (``bento_user.api.acl``): the mode follows a new access ACL,
    #: chmod rewrites it, and a create applies the parent's default ACL or else the
    #: umask (``req.umask``: the kernel no longer masks modes itself). Mounts then
    #: let the kernel enforce ACLs (under ``default_permissions``).
    posix_acls: bool = False

    # -- life cycle --------------------------------------------------------------

    def init(self, ks: KernelServices) -> None:
        """Attach to a device through ``ks``; raise FsError if its format is wrong."""

    def destroy(self) -> None:
        """Unmount: make everything durable. Must not raise for a healthy mount."""

    def remount(self, read_only: bool) -> None:
        """The mount was made read-only (``mount -o remount,ro``) or writable again.
        The runtime has committed and refuses every change with EROFS itself; a file
        system that writes on its own while serving reads (atime, deferred work) must
        stop until it is writable again. The default does nothing."""

    def prepare_upgrade(self) -> UpgradeState:
        """Hand over in-memory state as plain data (ints, strings, bytes, lists,
        dicts, NumPy arrays, the API's own values): never objects of your own
        classes, which would carry the old code into the new version.

        Called with no operation in flight and the journal just committed. Only
        read: if the upgrade fails, this instance serves on as if nothing happened;
        if it succeeds, it is not called again (no ``destroy``).

        The runtime's guard (runtime/guard.py) recovers from an operation that
        raised the same way: it puts back the blocks the operation changed, then
        rebuilds the file system from them, ``prepare_recovery`` then
        ``type(self).from_upgrade``. A file system without the pair turns read-only
        after such a failure.
        """
        raise _nosys()

    def prepare_recovery(self) -> UpgradeState:
        """``prepare_upgrade`` for the guard's recovery: the blocks a failed
        operation changed have just been put back, so whatever the upgrade state
        carries that is read from blocks (an allocator's bitmaps, a list kept on
        disk) is stale and must be left out, for ``from_upgrade`` to read it again.
        The default is ``prepare_upgrade``: right for a state of runtime facts only."""
        return self.prepare_upgrade()

    @classmethod
    def from_upgrade(cls, state: UpgradeState, ks: KernelServices) -> Filesystem:
        """Build the successor on the same kernel services (the cache, the open
        journal: ``ks.open_journal`` returns it) from a predecessor's state; raise
        ``FsError(EPROTO)`` for a schema you do not read. Do not change the disk
        here: the runtime may still throw the new instance away (a time-out)."""
        raise _nosys()

    # -- tools: what the fuzzers (and tests) need besides the operations ---------------

    @classmethod
    def mkfs(cls, device: BlockDevice, progress: Progress | None = None, **options: int) -> str:
        """Make an empty file system on ``device``; returns one line describing what
        was made (``bento mkfs`` prints it). ``options`` are the file system's own
        (xv6: ``inodes``, ``journal_blocks``; ``bento mkfs -O NAME=VALUE``): raise
        ``FsError(EINVAL)`` for one it does not take or a value it cannot use. The
        fuzzers format small images of their own with no options. ENOSYS if there is
        no formatter, and then nothing can be fuzzed."""
        raise _nosys()

    @classmethod
    def fsck(cls, device: BlockDevice, progress: Progress | None = None) -> FsckReport:
        """Check ``device`` without changing it (a journal is replayed in memory, never
        onto the image). FsError if it is not this kind of file system at all; every
        other finding goes in the report. ``device`` is closed afterwards. ENOSYS if
        there is no checker: the fuzzers then check only behaviour."""
        raise _nosys()

    @classmethod
    def repair(cls, device: BlockDevice, progress: Progress | None = None,
               preen: bool = False) -> FsckReport:
        """Repair the file system on ``device`` in place (``bento fsck -y``), as far as
        you can: the report's ``repaired`` lists each fix, its ``problems`` what a
        check finds afterwards (e2fsck's exit codes follow: 1 all fixed, 4 some
        left). ``preen`` (``-p``): only what needs no judgement (counts, bitmaps,
        replaying the journal), never what loses data. The caller holds the image
        exclusively (``bento fsck``: the device's lock). FsError as ``fsck`` raises it
        when the device holds no such file system at all. The default cannot repair
        (ENOSYS)."""
        raise _nosys()

    @classmethod
    def identify(cls, device: BlockDevice) -> str | None:
        """A short name ("xv6 v2") if ``device`` already holds this file system, from
        its signature alone (cheap, never raises for a foreign or corrupt image).
        ``bento mkfs`` asks every installed file system before overwriting."""
        return None

    @classmethod
    def block_kinds(cls, device: BlockDevice, blocks: Sequence[int]) -> dict[int, str]:
        """What each of ``blocks`` is on the image ("superblock", "journal", "inodes",
        "directory", "indirect-2", ... in the file system's own words; file data may
        be left out). Tools ask: the image fuzzer reports which kinds of metadata a
        campaign corrupted. ``{}`` (the default) when the file system does not say."""
        return {}

    @classmethod
    def describe(cls, device: BlockDevice, view: str) -> str:
        """A view of an unmounted image in the file system's own terms, as text for
        ``bento inspect``: ``"super"`` (dumpe2fs's header: sizes, uuid, features,
        state, mount count, recorded errors, the journal's position) and
        ``"journal"`` (the transactions in its log). Read the device as it is — it may
        be corrupt — and say where reading stopped rather than raise; FsError ENOENT
        for a view you do not offer. The default offers none (ENOSYS)."""
        raise _nosys()

    def block_map(self, ino: InodeNo) -> list[tuple[int, int]]:
        """(logical, physical) of every mapped block of inode ``ino``, in order (holes
        left out), for ``bento inspect blocks``. The default says nothing (ENOSYS)."""
        raise _nosys()

    def record_error(self, when_ns: int, what: str) -> None:
        """Keep on disk that an inconsistency was met while serving (ext4 sets its
        error state and counts): ``what`` names the operation and the reason, as the
        ``corrupt`` error said it (the inode or block). The runtime calls this after
        the operation that met it was undone, never on a read-only mount: make the
        change in a transaction of your own, committed with the next (as ext4 defers
        its superblock update to a worker; a crash before it loses the record). Do not
        raise for a healthy device. The default keeps nothing; the daemon's log and
        ``bento stat`` still say what was met."""

    def recorded_errors(self) -> ErrorRecord | None:
        """What the disk says about errors met while mounted (``record_error``); None
        when there is nothing, or the file system keeps no record. Read at mount (a
        warning: "run bento fsck") and by ``bento stat``; the file system's fsck
        should say it too, and a repair clear it."""
        return None

    def report(self, name: str) -> bytes:
        """A named report about the file system's own state, for tools (``bento prov``
        asks xv6 and its subclasses for ``"hidden"``, the hidden inode where
        provenance keeps its records). ENOENT for a name it does not know."""
        raise _nosys()

    # -- names -------------------------------------------------------------------

    def lookup(self, req: Request, parent: InodeNo, name: bytes) -> Attr:
        """The entry ``name`` in directory ``parent``; counts one lookup. ``..`` is
        the parent's parent: the kernel asks for it to reconnect a directory's file
        handle (``.`` comes as ``lookup_inode``)."""
        raise _nosys()

    def lookup_inode(self, req: Request, ino: InodeNo) -> Attr:
        """An inode by its number alone, counted as a lookup: the kernel decoding a
        file handle (``open_by_handle_at``, an NFS export) after it has evicted the
        inode. ESTALE if the number names no inode now: out of range, free, or with
        no name left. The kernel then compares ``Attr.generation`` with the handle's,
        so a number used again must come with another generation. The default
        answers ESTALE: handles then work only while the kernel holds the inode."""
        raise FsError(errno.ESTALE)

    def forget(self, items: Sequence[tuple[InodeNo, int]]) -> None:
        """Drop lookup counts. Must not raise."""

    def evict(self, ino: InodeNo) -> None:
        """The kernel holds ``ino`` no more: every lookup counted for it is forgotten
        and every handle opened on it released (Linux's ``evict_inode``). Free it
        here if its last link is gone. Overriding this has the runtime count lookups
        and handles for you (runtime/references.py), so ``forget`` and ``release``
        need not; it is called after the call that dropped the last reference. The
        class mounted first decides: a live upgrade cannot bring it in, since the
        counts start at mount. Must not raise."""

    def mknod(self, req: Request, parent: InodeNo, name: bytes, mode: int, rdev: int) -> Attr:
        """Create a node of the type in ``mode`` (S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR,
        S_IFBLK; ``rdev`` the device number) without opening it. Counts one lookup.
        EEXIST if the name is taken, ENOSPC when no inode or block is left, EPERM for
        a device node without CAP_MKNOD."""
        raise _nosys()

    def mkdir(self, req: Request, parent: InodeNo, name: bytes, mode: int) -> Attr:
        """Create a directory with ``mode`` less ``req.umask`` (the group, and setgid,
        from a setgid parent). Counts one lookup; the parent gains a link. EEXIST,
        ENOSPC, EMLINK when the parent has as many subdirectories as it can hold."""
        raise _nosys()

    def symlink(self, req: Request, parent: InodeNo, name: bytes, target: bytes) -> Attr:
        """Create a symbolic link holding ``target`` as given (never resolved; it may
        dangle). Counts one lookup. EEXIST, ENOSPC, ENAMETOOLONG for a target longer
        than the file system keeps."""
        raise _nosys()

    def link(self, req: Request, ino: InodeNo, new_parent: InodeNo, new_name: bytes) -> Attr:
        """Give ``ino`` the name ``new_name`` too; returns its attributes (the link
        count raised) and counts one lookup. EEXIST, EPERM for a directory, EMLINK
        when the inode has as many links as it can hold, ENOSPC."""
        raise _nosys()

    def unlink(self, req: Request, parent: InodeNo, name: bytes) -> None:
        """Remove the name of a non-directory (EISDIR for a directory). The inode
        lives on while lookups or open handles remain (see the lookup count above)
        and is freed on disk by the last ``forget`` or ``release``; a crash before
        that must not leak it (an orphan list, as xv6 keeps)."""
        raise _nosys()

    def rmdir(self, req: Request, parent: InodeNo, name: bytes) -> None:
        """Remove an empty directory: ENOTDIR if it is not one, ENOTEMPTY if it has
        entries, EBUSY for the root. The same lookup-count rule as ``unlink``."""
        raise _nosys()

    def rename(self, req: Request, parent: InodeNo, name: bytes, new_parent: InodeNo,
               new_name: bytes, flags: int = 0) -> None:
        """Move an entry; ``flags`` may hold RENAME_NOREPLACE or RENAME_EXCHANGE."""
        raise _nosys()

    def readlink(self, req: Request, ino: InodeNo) -> bytes:
        """The target of symbolic link ``ino``, as stored; EINVAL for any other kind."""
        raise _nosys()

    # -- attributes --------------------------------------------------------------

    def getattr(self, req: Request, ino: InodeNo) -> Attr:
        """The inode's attributes now. Does not count a lookup. The kernel asks
        often (attribute time-outs, the writeback cache): keep it cheap."""
        raise _nosys()

    def setattr(self, req: Request, ino: InodeNo, changes: SetAttr,
                fh: FileHandle | None = None) -> Attr:
        """Change attributes; ``fh`` is set when the caller used an open file (ftruncate)."""
        raise _nosys()

    def access(self, req: Request, ino: InodeNo, mask: int) -> None:
        """Raise EACCES unless ``req`` may access ``ino`` with ``mask`` (R_OK|W_OK|X_OK)."""
        raise _nosys()

    def statfs(self, req: Request) -> StatFs:
        """Sizes and free counts of the whole file system (``df``). The FUSE runtime
        also asks at every open for writing (direct I/O near a full disk,
        runtime/space.py): counters, not a scan."""
        raise _nosys()

    # -- files -------------------------------------------------------------------

    def open(self, req: Request, ino: InodeNo, flags: int) -> FileHandle:
        """Open ``ino`` with open(2)'s ``flags`` (never O_CREAT: that is ``create``);
        returns the handle later calls name. O_TRUNC truncates, with O_RDONLY too, as
        on Linux. Under the writeback cache the runtime may ask O_RDWR for a
        write-only open (the kernel reads to fill partial pages). EACCES, EISDIR for
        a directory opened to write, EROFS on a read-only mount."""
        raise _nosys()

    def create(self, req: Request, parent: InodeNo, name: bytes, mode: int,
               flags: int) -> tuple[Attr, FileHandle]:
        """Create and open a regular file; counts one lookup."""
        raise _nosys()

    def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``: fewer only at the end of the file,
        holes as zeros, and nothing a truncate removed. May update atime."""
        raise _nosys()

    def write(self, fh: FileHandle, offset: int, data: bytes | memoryview) -> int:
        """Write ``data`` at ``offset``; returns the bytes written, short only when
        the disk fills (ENOSPC if none fit). Extends the size, sets mtime and ctime,
        and clears setuid/setgid for writers other than root. Under the writeback
        cache the kernel sends its cached pages here later, through whichever
        writable handle of the inode it holds: depend on the handle's access mode
        only, never on who opened it."""
        raise _nosys()

    def flush(self, fh: FileHandle) -> None:
        """A ``close()`` of one descriptor of the open file (there may be several).

        Keep this default unless ``close()`` must do something: through FUSE, a file
        system that keeps it is never asked — the runtime answers the kernel's first
        FLUSH with ENOSYS and the kernel sends no more for the mount (its own write-back
        of the file's pages at close goes on), which spares every close a round trip.
        The choice is made by the class mounted first: a live upgrade cannot bring
        FLUSH back."""

    def release(self, fh: FileHandle) -> None:
        """The last descriptor of the open file is gone. Must not raise."""

    def fsync(self, fh: FileHandle, datasync: bool) -> None:
        """Make the file durable before returning: its data and size (``datasync``,
        fdatasync), or also its other attributes and the name it was created under
        (fsync). That includes blocks already written home without a device flush.
        The crash explorer holds a file system to this, and to ``ordered_metadata``
        if it claims it."""
        raise _nosys()

    def fallocate(self, fh: FileHandle, mode: int, offset: int, length: int) -> None:
        """fallocate(2) on a handle open for writing (EBADF otherwise), in the modes
        FUSE passes on: 0 or ``FALLOC_FL_KEEP_SIZE`` (allocate; ENOSPC if the space
        is not there, so a later write into the range cannot fail for lack of it),
        ``FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`` (free the range; it reads as
        zeros), ``FALLOC_FL_ZERO_RANGE`` (zeros, allocated). EOPNOTSUPP for a mode
        the file system does not do. Like a write it updates mtime and ctime and
        clears setuid/setgid for writers other than root. ENOSYS (the default): the
        FUSE runtime answers EOPNOTSUPP from then on without asking."""
        raise _nosys()

    def lseek(self, fh: FileHandle, offset: int, whence: int) -> int:
        """``SEEK_DATA``: the first offset at or after ``offset`` that is data;
        ``SEEK_HOLE``: the first that is in a hole, or the size (every file ends in
        one). ENXIO when ``offset`` is at or past the size, or (SEEK_DATA) no data
        follows. Reporting a hole as data is allowed, data as a hole never is: ``cp
        --sparse`` and backup tools skip what this calls a hole. Under the writeback
        cache the runtime asks only when the kernel holds no unwritten pages of the
        file. ENOSYS (the default): the whole file is data, as the kernel assumes."""
        raise _nosys()

    # -- directories -------------------------------------------------------------

    def opendir(self, req: Request, ino: InodeNo) -> FileHandle:
        """Open directory ``ino`` for ``readdir``; returns its handle. ENOTDIR, and
        EACCES without read permission."""
        raise _nosys()

    def readdir(self, fh: FileHandle, offset: int) -> Iterable[DirEntry]:
        """Entries after ``offset`` (0: from the start), each with its own next offset."""
        raise _nosys()

    def releasedir(self, fh: FileHandle) -> None:
        """Must not raise."""

    def fsyncdir(self, fh: FileHandle, datasync: bool) -> None:
        """Make the directory's entries durable: the names created, removed and
        renamed in it (``datasync`` changes nothing for a directory)."""
        raise _nosys()

    # -- extended attributes -----------------------------------------------------

    def getxattr(self, req: Request, ino: InodeNo, name: bytes) -> bytes:
        """The value of extended attribute ``name`` (with its namespace, e.g.
        b"user.note"); ENODATA if the inode has none of that name."""
        raise _nosys()

    def setxattr(self, req: Request, ino: InodeNo, name: bytes, value: bytes,
                 flags: int = 0) -> None:
        """Set an extended attribute. ``flags``: XATTR_CREATE (EEXIST if it is
        there), XATTR_REPLACE (ENODATA if it is not), or 0. EINVAL for a bare
        namespace (b"user."), ENOTSUP for a namespace the file system does not keep,
        ENOSPC when it does not fit, EPERM for trusted. and security. without root."""
        raise _nosys()

    def listxattr(self, req: Request, ino: InodeNo) -> list[bytes]:
        """The names of the inode's extended attributes, each with its namespace."""
        raise _nosys()

    def removexattr(self, req: Request, ino: InodeNo, name: bytes) -> None:
        """Remove an extended attribute; ENODATA if there is none of that name."""
        raise _nosys()
