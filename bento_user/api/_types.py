"""The values that cross the file-system API: requests, attributes, errors.

Plain Python values on purpose: a runtime (FUSE or direct) builds them from its own
types, so a file system never sees pyfuse3's.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass, field
from typing import NewType

InodeNo = NewType("InodeNo", int)
FileHandle = NewType("FileHandle", int)

ROOT_INODE = InodeNo(1)  # FUSE's root node id; a file system maps its own root to it

# rename flags (linux/fs.h)
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
# setxattr flags
XATTR_CREATE = 1
XATTR_REPLACE = 2
# fallocate modes (linux/falloc.h): the ones FUSE passes on
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
FALLOC_FL_ZERO_RANGE = 0x10
# lseek's hole-finding whences (os.SEEK_DATA, os.SEEK_HOLE on Linux)
SEEK_DATA = 3
SEEK_HOLE = 4


class FsError(OSError):
    """An operation's failure, reported to the caller as its errno.

    Anything else a file system raises is a bug in it: the FUSE runtime logs it and
    answers EIO. ``message`` adds the reason for humans (logs, one-line CLI errors).
    """

    def __init__(self, err: int, message: str | None = None) -> None:
        super().__init__(err, message or os.strerror(err))

    def __reduce__(self) -> tuple[type, tuple[int, str]]:
        return (type(self), (self.errno, self.strerror))


def corrupt(message: str) -> FsError:
    """The error for on-disk structures that break the format: EUCLEAN, with why."""
    return FsError(errno.EUCLEAN, message)


@dataclass(frozen=True)
class Request:
    """Who asks: the calling process's credentials, as FUSE passes them.

    ``groups`` are supplementary groups. FUSE does not pass them; the FUSE runtime
    reads them from /proc/PID/status, the direct runtime takes them from its caller.

    ``checked``: the kernel has already checked this request's permissions (a FUSE
    mount with ``default_permissions``), with everything the caller holds —
    supplementary groups and capabilities that no request carries. A file system must
    then not refuse the call on permission grounds (it would refuse, with less
    information, what Linux allows); it still applies what permissions *do*: a write
    by a non-root caller clears setuid, a setgid directory passes on its group.
    """

    uid: int = 0
    gid: int = 0
    pid: int = 0
    umask: int = 0o022
    groups: tuple[int, ...] = ()
    checked: bool = False

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups

    def killed_suid(self, mode: int, gid: int) -> int:
        """The mode of a file of group ``gid`` once this caller's chown, truncate or
        write has passed (Linux's should_remove_suid and setattr_should_drop_sgid):
        setuid goes; setgid goes when group-executable (without it setgid marks
        mandatory locking) or when the caller is neither root nor in the group.
        Directories keep theirs. When it applies is the file system's: any chown,
        but only a truncate or write by someone other than root."""
        if stat.S_ISDIR(mode):
            return mode
        if mode & stat.S_IXGRP or not (self.uid == 0 or self.in_group(gid)):
            mode &= ~stat.S_ISGID
        return mode & ~stat.S_ISUID

    def may(self, mode: int, uid: int, gid: int, mask: int, acl: bytes | None = None) -> bool:
        """Linux's generic_permission: may this caller access an inode of ``mode``,
        ``uid`` and ``gid`` with ``mask`` (os.R_OK | W_OK | X_OK)? Always, once the
        kernel has checked; root may do anything but execute a file no one may
        execute; others by the inode's access ACL if it has one (``acl``, the
        attribute's bytes), else by the owner, group or other bits."""
        if self.checked:
            return True
        if self.uid == 0:
            return not mask & 1 or stat.S_ISDIR(mode) or bool(mode & 0o111)
        if acl:
            from ._acl import permits
            return permits(acl, self, uid, gid, mask)
        bits = mode >> 6 if self.uid == uid else mode >> 3 if self.in_group(gid) else mode
        return bits & mask & 7 == mask


ROOT_REQUEST = Request()


@dataclass(frozen=True)
class Attr:
    """An inode's attributes (``struct stat`` plus the generation)."""

    ino: InodeNo
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    blocks: int  # in 512-byte units, as st_blocks
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    rdev: int = 0
    generation: int = 0
    blksize: int = 4096

    @property
    def kind(self) -> int:
        return stat.S_IFMT(self.mode)


@dataclass(frozen=True)
class SetAttr:
    """Which attributes ``setattr`` changes; None leaves one as it is.

    ``atime_ns``/``mtime_ns`` may be ``NOW`` (UTIME_NOW): the file system's clock.
    ``NOW`` lies outside every 64-bit time, so -1 (a nanosecond before the epoch)
    stays a time like any other. Other times arrive clamped to what ``Attr`` can
    carry, i64 nanoseconds (1677-09-21 to 2262-04-11), as ext4 clamps to its range:
    the kernel passes FUSE any ``utimensat`` time, 2**40 seconds included. A file
    system whose format holds less clamps again.
    """

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None

    NOW = -(1 << 63) - 1
    TIME_MIN_NS = -(1 << 63)
    TIME_MAX_NS = (1 << 63) - 1

    def __post_init__(self) -> None:
        for name in ("atime_ns", "mtime_ns", "ctime_ns"):
            t = getattr(self, name)
            if t is not None and t != SetAttr.NOW:
                object.__setattr__(self, name, min(max(t, SetAttr.TIME_MIN_NS),
                                                   SetAttr.TIME_MAX_NS))


@dataclass(frozen=True)
class DirEntry:
    """One directory entry; ``next_offset`` resumes the scan just after it."""

    name: bytes
    ino: InodeNo
    kind: int  # S_IFDIR, S_IFREG, ...
    next_offset: int


@dataclass(frozen=True)
class StatFs:
    block_size: int
    blocks: int
    blocks_free: int
    blocks_available: int
    files: int
    files_free: int
    name_max: int = 255
    fragment_size: int = 0

    def __post_init__(self) -> None:
        if not self.fragment_size:
            object.__setattr__(self, "fragment_size", self.block_size)


@dataclass(frozen=True)
class ErrorRecord:
    """Inconsistencies a file system met while mounted, as its disk records them
    (ext4's error count and first and last error): kept until a repair clears them,
    so that the next mount, ``bento stat`` and ``bento fsck`` can say "run fsck".
    ``first`` and ``last`` say where (the operation and the reason, naming the inode
    or block); the times are nanoseconds since the epoch."""

    count: int
    first_ns: int
    first: str
    last_ns: int
    last: str

    def added(self, when_ns: int, what: str) -> ErrorRecord:
        """This record with one more error."""
        return ErrorRecord(self.count + 1, self.first_ns, self.first, when_ns, what)

    def summary(self) -> str:
        """One line for a warning: how many, the last one and when."""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.last_ns / 1e9))
        return (f"recorded {self.count} error{'s' if self.count != 1 else ''} while mounted, "
                f"the last at {when}: {self.last}")


@dataclass
class UpgradeState:
    """What a file system hands its successor in a live upgrade.

    ``schema`` names the layout of ``data`` ("xv6/1"); a successor refuses a schema
    it does not know by raising ``FsError(EPROTO)`` in ``from_upgrade``.
    """

    schema: str
    data: dict[str, object] = field(default_factory=dict)
