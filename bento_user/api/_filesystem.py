"""The file-system API (Bento's libBentoFS): the class a file system subclasses.

Methods mirror FUSE's low-level operations. A runtime calls them; they are
synchronous, and may be called from several threads at once, so a file system guards
its shared state with kernel-services locks. Every method that is not overridden
answers ENOSYS.

The lookup count (FUSE's contract): every ``Attr`` returned by ``lookup``, ``create``,
``mknod``, ``mkdir``, ``symlink`` and ``link`` adds one to the inode's count; ``forget``
takes counts away. An inode whose last name is gone must live on (readable, writable
through open handles) until its count and its open handles are zero. ``readdir``
does not count: a runtime that wants attributes for entries (readdirplus) calls
``lookup`` for each, and ``forget`` for the ones it could not deliver.

Offsets, sizes and file handles are ints; names and link targets are ``bytes`` (no
NUL, no ``/``); data to write arrives as any bytes-like object.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ._types import Attr, DirEntry, FileHandle, FsError, InodeNo, Request, SetAttr, StatFs, UpgradeState

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

    # -- life cycle --------------------------------------------------------------

    def init(self, ks: KernelServices) -> None:
        """Attach to a device through ``ks``; raise FsError if its format is wrong."""

    def destroy(self) -> None:
        """Unmount: make everything durable. Must not raise for a healthy mount."""

    def prepare_upgrade(self) -> UpgradeState:
        """Hand over in-memory state as plain data (ints, strings, bytes, lists,
        dicts, NumPy arrays, the API's own values): never objects of your own
        classes, which would carry the old code into the new version.

        Called with no operation in flight and the journal just committed. Only
        read: if the upgrade fails, this instance serves on as if nothing happened;
        if it succeeds, it is not called again (no ``destroy``).
        """
        raise _nosys()

    @classmethod
    def from_upgrade(cls, state: UpgradeState, ks: KernelServices) -> Filesystem:
        """Build the successor on the same kernel services (the cache, the open
        journal: ``ks.open_journal`` returns it) from a predecessor's state; raise
        ``FsError(EPROTO)`` for a schema you do not read. Do not change the disk
        here: the runtime may still throw the new instance away (a time-out)."""
        raise _nosys()

    # -- tools: what the fuzzers (and tests) need besides the operations ---------------

    @classmethod
    def mkfs(cls, device: BlockDevice) -> None:
        """Make an empty file system on ``device`` (the fuzzers format small images
        of their own); ENOSYS if there is no formatter, and then nothing can be fuzzed."""
        raise _nosys()

    @classmethod
    def fsck(cls, device: BlockDevice) -> list[str]:
        """Check ``device`` without changing it: the problems found, one line each,
        ``[]`` if clean; FsError if it is not this kind of file system at all.
        ``device`` is closed afterwards. ENOSYS if there is no checker: the fuzzers
        then check only behaviour."""
        raise _nosys()

    @classmethod
    def block_kinds(cls, device: BlockDevice, blocks: Sequence[int]) -> dict[int, str]:
        """What each of ``blocks`` is on the image ("superblock", "journal", "inodes",
        "directory", "indirect-2", ... in the file system's own words; file data may
        be left out). Tools ask: the image fuzzer reports which kinds of metadata a
        campaign corrupted. ``{}`` (the default) when the file system does not say."""
        return {}

    def report(self, name: str) -> bytes:
        """A named report about the file system's own state, for tools (``bento prov``
        asks a provenance file system for ``"provenance"``). ENOENT for a name it
        does not know."""
        raise _nosys()

    # -- names -------------------------------------------------------------------

    def lookup(self, req: Request, parent: InodeNo, name: bytes) -> Attr:
        """The entry ``name`` in directory ``parent``; counts one lookup."""
        raise _nosys()

    def forget(self, items: Sequence[tuple[InodeNo, int]]) -> None:
        """Drop lookup counts. Must not raise."""

    def mknod(self, req: Request, parent: InodeNo, name: bytes, mode: int, rdev: int) -> Attr:
        raise _nosys()

    def mkdir(self, req: Request, parent: InodeNo, name: bytes, mode: int) -> Attr:
        raise _nosys()

    def symlink(self, req: Request, parent: InodeNo, name: bytes, target: bytes) -> Attr:
        raise _nosys()

    def link(self, req: Request, ino: InodeNo, new_parent: InodeNo, new_name: bytes) -> Attr:
        raise _nosys()

    def unlink(self, req: Request, parent: InodeNo, name: bytes) -> None:
        raise _nosys()

    def rmdir(self, req: Request, parent: InodeNo, name: bytes) -> None:
        raise _nosys()

    def rename(self, req: Request, parent: InodeNo, name: bytes, new_parent: InodeNo,
               new_name: bytes, flags: int = 0) -> None:
        """Move an entry; ``flags`` may hold RENAME_NOREPLACE or RENAME_EXCHANGE."""
        raise _nosys()

    def readlink(self, req: Request, ino: InodeNo) -> bytes:
        raise _nosys()

    # -- attributes --------------------------------------------------------------

    def getattr(self, req: Request, ino: InodeNo) -> Attr:
        raise _nosys()

    def setattr(self, req: Request, ino: InodeNo, changes: SetAttr,
                fh: FileHandle | None = None) -> Attr:
        """Change attributes; ``fh`` is set when the caller used an open file (ftruncate)."""
        raise _nosys()

    def access(self, req: Request, ino: InodeNo, mask: int) -> None:
        """Raise EACCES unless ``req`` may access ``ino`` with ``mask`` (R_OK|W_OK|X_OK)."""
        raise _nosys()

    def statfs(self, req: Request) -> StatFs:
        raise _nosys()

    # -- files -------------------------------------------------------------------

    def open(self, req: Request, ino: InodeNo, flags: int) -> FileHandle:
        raise _nosys()

    def create(self, req: Request, parent: InodeNo, name: bytes, mode: int,
               flags: int) -> tuple[Attr, FileHandle]:
        """Create and open a regular file; counts one lookup."""
        raise _nosys()

    def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        raise _nosys()

    def write(self, fh: FileHandle, offset: int, data: bytes | memoryview) -> int:
        raise _nosys()

    def flush(self, fh: FileHandle) -> None:
        """A ``close()`` of one descriptor of the open file (there may be several)."""

    def release(self, fh: FileHandle) -> None:
        """The last descriptor of the open file is gone. Must not raise."""

    def fsync(self, fh: FileHandle, datasync: bool) -> None:
        raise _nosys()

    def fallocate(self, fh: FileHandle, mode: int, offset: int, length: int) -> None:
        raise _nosys()

    # -- directories -------------------------------------------------------------

    def opendir(self, req: Request, ino: InodeNo) -> FileHandle:
        raise _nosys()

    def readdir(self, fh: FileHandle, offset: int) -> Iterable[DirEntry]:
        """Entries after ``offset`` (0: from the start), each with its own next offset."""
        raise _nosys()

    def releasedir(self, fh: FileHandle) -> None:
        """Must not raise."""

    def fsyncdir(self, fh: FileHandle, datasync: bool) -> None:
        raise _nosys()

    # -- extended attributes -----------------------------------------------------

    def getxattr(self, req: Request, ino: InodeNo, name: bytes) -> bytes:
        raise _nosys()

    def setxattr(self, req: Request, ino: InodeNo, name: bytes, value: bytes,
                 flags: int = 0) -> None:
        raise _nosys()

    def listxattr(self, req: Request, ino: InodeNo) -> list[bytes]:
        raise _nosys()

    def removexattr(self, req: Request, ino: InodeNo, name: bytes) -> None:
        raise _nosys()
