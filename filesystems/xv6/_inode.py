"""In-memory inodes: the on-disk fields as Python ints, plus what only memory knows.

An ``Inode`` object exists once per inode number while it is cached (the file
system's icache guarantees that). Its on-disk fields are loaded once and written back
by the file system (``store``) inside a journal handle after every change.

Locking: ``lock`` (an rw-semaphore) protects the fields and the file's contents;
``nopen`` is changed under the file system's icache mutex. The kernel's lookup count
is not here but in the icache's array: an inode the kernel holds may leave memory.
"""

from __future__ import annotations

import operator
import stat
import struct
from typing import TYPE_CHECKING

import numpy as np

from bento_user.api import Attr, InodeNo, corrupt

from ._format import FORMAT_KINDS, INODE_DTYPE, INODE_SIZE, MAX_FILE_SIZE, NADDRS

if TYPE_CHECKING:
    from bento_user.blockdev import BlockDevice
    from bento_user.ks_emul import RWSemaphore

    from ._dir import DirIndex

FIELDS = ("mode", "uid", "gid", "nlink", "size", "blocks", "atime_ns", "mtime_ns",
          "ctime_ns", "crtime_ns", "generation", "flags", "rdev", "next_orphan",
          "xattr_block")


NOTHING_OWED: frozenset[int] = frozenset()  # shared by every inode that owes nothing

# INODE_DTYPE up to its reserved tail, for struct: FIELDS in order, then the addrs
_STRUCT_CODE = {"<u4": "I", "<u8": "Q", "<i8": "q"}
_RECORD = struct.Struct("<" + "".join(_STRUCT_CODE[INODE_DTYPE.fields[f][0].str] for f in FIELDS)
                        + f"{NADDRS}I")
assert _RECORD.size == INODE_DTYPE.fields["addrs"][1] + 4 * NADDRS
assert [INODE_DTYPE.fields[f][1] for f in FIELDS] == sorted(INODE_DTYPE.fields[f][1] for f in FIELDS)
_fields = operator.attrgetter(*FIELDS)


class Inode:
    """One inode: disk fields (see ``INODE_DTYPE``) and runtime state."""

    # Tens of thousands live at once; slots make them smaller and their fields
    # faster to read (a live upgrade walks them all while the mount waits).
    __slots__ = ("ino", "lock", *FIELDS, "addrs", "nopen", "orphan", "dir",
                 "xattrs", "dirty_data", "unflushed")

    def __init__(self, ino: int, lock: RWSemaphore) -> None:
        self.ino = ino
        self.lock = lock
        self.mode = self.uid = self.gid = self.nlink = 0
        self.size = self.blocks = 0
        self.atime_ns = self.mtime_ns = self.ctime_ns = self.crtime_ns = 0
        self.generation = self.flags = self.rdev = 0
        self.next_orphan = self.xattr_block = 0
        self.addrs: list[int] = [0] * NADDRS
        # runtime state
        self.nopen = 0             # open file and directory handles
        self.orphan = False        # on the on-disk orphan list
        self.dir: DirIndex | None = None       # name index, built on first use
        self.xattrs: dict[bytes, bytes] | None = None  # parsed xattr block
        # overwritten data blocks (fsync writes them); a set only once there are some
        self.dirty_data: set[int] | frozenset[int] = NOTHING_OWED
        self.unflushed = 0         # data written around the journal: the flush it waits
                                   # for (BlockDevice.flush_ticket), 0 for none

    # -- disk form ---------------------------------------------------------------

    def load(self, block: np.ndarray, slot: int, max_block: int) -> None:
        """Fields from record ``slot`` of an inode-table block (corrupt: EUCLEAN)."""
        values = _RECORD.unpack_from(block, slot * INODE_SIZE)
        for f, v in zip(FIELDS, values):
            setattr(self, f, v)
        self.addrs = list(values[len(FIELDS):])
        if self.mode and stat.S_IFMT(self.mode) not in FORMAT_KINDS:
            raise corrupt(f"inode {self.ino}: unknown file type {stat.S_IFMT(self.mode):#o}")
        for a in (*self.addrs, self.xattr_block):
            if a >= max_block:
                raise corrupt(f"inode {self.ino}: block pointer {a} outside the device")
        if self.size > MAX_FILE_SIZE:
            raise corrupt(f"inode {self.ino}: size {self.size} beyond the largest file")

    def store(self, block: np.ndarray, slot: int) -> None:
        """Fields into record ``slot`` of an inode-table block (the reserved tail is
        left as it is). One struct call: a store per change is on every hot path."""
        _RECORD.pack_into(block, slot * INODE_SIZE, *_fields(self), *self.addrs)

    # -- what the next fsync owes ------------------------------------------------

    def owe(self, pblk: int) -> None:
        """A data block was overwritten in place: the next fsync writes and flushes it."""
        if not self.dirty_data:
            self.dirty_data = set()
        self.dirty_data.add(pblk)  # type: ignore[union-attr]

    def forgive(self, pblk: int) -> None:
        """The block left the file (truncate): nothing is owed for it."""
        if self.dirty_data:
            self.dirty_data.discard(pblk)  # type: ignore[union-attr]

    def owes_flush(self, device: BlockDevice) -> bool:
        """Whether data written around the journal still waits for a flush (anyone's:
        a journal commit's pays it too)."""
        return bool(self.unflushed) and not device.durable(self.unflushed)

    def take_owed(self) -> set[int] | frozenset[int]:
        owed, self.dirty_data = self.dirty_data, NOTHING_OWED
        return owed

    # -- views -------------------------------------------------------------------

    @property
    def kind(self) -> int:
        return stat.S_IFMT(self.mode)

    @property
    def is_dir(self) -> bool:
        return self.kind == stat.S_IFDIR

    def attr(self, block_size: int) -> Attr:
        return Attr(ino=InodeNo(self.ino), mode=self.mode, nlink=self.nlink, uid=self.uid,
                    gid=self.gid, size=self.size, blocks=self.blocks * (block_size // 512),
                    atime_ns=self.atime_ns, mtime_ns=self.mtime_ns, ctime_ns=self.ctime_ns,
                    rdev=self.rdev, generation=self.generation, blksize=block_size)

    def __repr__(self) -> str:
        return f"<Inode {self.ino} {self.kind:#o} size={self.size} nlink={self.nlink}>"


def inode_records(block: np.ndarray) -> np.ndarray:
    """The inode records of one inode-table block (a writable view)."""
    return block.view(INODE_DTYPE)


def touch(now_ns: int, *ips: Inode, mtime: bool = True) -> None:
    """A change: ctime (and, for a change of contents, mtime) becomes ``now_ns``."""
    for ip in ips:
        ip.ctime_ns = now_ns
        if mtime:
            ip.mtime_ns = now_ns
