"""The "xv6 v2" on-disk format: geometry, superblock, inode and directory-entry layouts.

FORMAT.md beside this file describes it for humans; this module is its single source
for code (mkfs, the file system and fsck all read it from here). Everything is
little-endian and read through NumPy structured dtypes laid over buffer-cache blocks.
"""

from __future__ import annotations

import stat
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import crc32c
import numpy as np

from bento_user.api import ROOT_INODE, ErrorRecord, corrupt

if TYPE_CHECKING:
    from bento_user.ks_emul import Handle, KernelServices

BLOCK_SIZE = 4096
MAGIC = b"XV6FSv2\0"
VERSION = 3            # 3: the superblock names a hidden inode (provenance's log)
SUPERBLOCK = 1          # block 0 is the boot block, left zero
JOURNAL_START = 2
MIN_JOURNAL = 256       # room for transactions of the largest operation (48 blocks)
# The root directory is inode ROOT_INODE (1 on disk, the number FUSE gives the root:
# no mapping); inode 0 is never used: a zero pointer means "none".
INODE_SIZE = 256
INODES_PER_BLOCK = BLOCK_SIZE // INODE_SIZE
BITS_PER_BLOCK = BLOCK_SIZE * 8
NAME_MAX = 255
SYMLINK_MAX = BLOCK_SIZE - 1   # the target lives in one block, as PATH_MAX - 1

# inode block pointers: addrs[0..11] direct, [12] single, [13] double, [14] triple indirect
NDIRECT = 12
NADDRS = 15
PTRS_PER_BLOCK = BLOCK_SIZE // 4
MAX_FILE_BLOCKS = NDIRECT + PTRS_PER_BLOCK + PTRS_PER_BLOCK**2 + PTRS_PER_BLOCK**3
MAX_FILE_SIZE = min(MAX_FILE_BLOCKS * BLOCK_SIZE, (1 << 63) - 1)

# superblock state
STATE_CLEAN = 1         # unmounted cleanly
STATE_MOUNTED = 2       # mounted (or crashed while mounted): journal/orphans decide

SUPERBLOCK_DTYPE = np.dtype([
    ("magic", "S8"),
    ("version", "<u4"),
    ("block_size", "<u4"),
    ("nblocks", "<u8"),
    ("ninodes", "<u8"),
    ("journal_start", "<u8"),
    ("journal_blocks", "<u8"),
    ("inode_start", "<u8"),
    ("inode_blocks", "<u8"),
    ("ibitmap_start", "<u8"),
    ("ibitmap_blocks", "<u8"),
    ("bbitmap_start", "<u8"),
    ("bbitmap_blocks", "<u8"),
    ("data_start", "<u8"),
    ("uuid", "u1", 16),
    ("features_compat", "<u4"),
    ("features_incompat", "<u4"),
    ("features_ro_compat", "<u4"),
    ("root_ino", "<u4"),
    ("orphan_head", "<u4"),
    ("state", "<u4"),
    ("mkfs_time_ns", "<i8"),
    ("mount_time_ns", "<i8"),
    ("mount_count", "<u4"),
    ("hidden_ino", "<u4"),
    ("checksum", "<u4"),
])

# Errors met while mounted (ext4's s_error_count and first/last error) live in the
# superblock's block after the superblock record, under a checksum of their own: an
# image made before them has zeros there, which read as "none recorded".
ERRORS_OFFSET = 2048
ERRORS_MAGIC = b"XV6ERRS"
ERRORS_TEXT = 480           # bytes of each message kept (UTF-8, cut at a character)
ERRORS_DTYPE = np.dtype([
    ("magic", "S8"),
    ("count", "<u4"),
    ("first_ns", "<i8"),
    ("last_ns", "<i8"),
    ("first", f"S{ERRORS_TEXT}"),
    ("last", f"S{ERRORS_TEXT}"),
    ("checksum", "<u4"),
])

INODE_DTYPE = np.dtype([
    ("mode", "<u4"),
    ("uid", "<u4"),
    ("gid", "<u4"),
    ("nlink", "<u4"),
    ("size", "<u8"),
    ("blocks", "<u8"),      # 4 KiB blocks held: data, indirect, symlink and xattr blocks
    ("atime_ns", "<i8"),
    ("mtime_ns", "<i8"),
    ("ctime_ns", "<i8"),
    ("crtime_ns", "<i8"),
    ("generation", "<u4"),
    ("flags", "<u4"),
    ("rdev", "<u8"),
    ("next_orphan", "<u4"),
    ("xattr_block", "<u4"),
    ("addrs", "<u4", NADDRS),
    ("reserved", "u1", INODE_SIZE - 148),
])
assert INODE_DTYPE.itemsize == INODE_SIZE

# A directory block holds variable-length entries, each one header plus the name,
# padded to 4 bytes; rec_len reaches the next entry (the last one reaches the block's
# end). A free record has ino 0.
DIRENT_HEADER = np.dtype([("ino", "<u4"), ("rec_len", "<u2"), ("name_len", "u1"), ("kind", "u1")])
DIRENT_HEADER_SIZE = 8

FORMAT_KINDS = {stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK,
                stat.S_IFIFO, stat.S_IFSOCK}


def dirent_size(name_len: int) -> int:
    return (DIRENT_HEADER_SIZE + name_len + 3) & ~3


def kind_code(mode: int) -> int:
    """The entry's type byte: Linux's DT_* value, which is S_IFMT >> 12."""
    return stat.S_IFMT(mode) >> 12


@dataclass(frozen=True)
class Geometry:
    """Where each area starts and how long it is, in blocks."""

    nblocks: int
    ninodes: int
    journal_blocks: int
    inode_start: int
    inode_blocks: int
    ibitmap_start: int
    ibitmap_blocks: int
    bbitmap_start: int
    bbitmap_blocks: int
    data_start: int

    @classmethod
    def plan(cls, nblocks: int, ninodes: int | None = None,
             journal_blocks: int | None = None) -> Geometry:
        """The layout mkfs writes: ext4-like defaults (one inode per 16 KiB, a
        journal of 1/64 of the disk between 1,024 and 32,768 blocks)."""
        if ninodes is None:
            ninodes = max(64, min(nblocks * BLOCK_SIZE // 16384, 1 << 26))
        if journal_blocks is None:
            journal_blocks = max(1024, min(nblocks // 64, 32768))
            journal_blocks = min(journal_blocks, max(MIN_JOURNAL, nblocks // 4))
        # round inodes up to fill their blocks; slot 0 is reserved
        ninodes = -(-(ninodes + 1) // INODES_PER_BLOCK) * INODES_PER_BLOCK
        inode_start = JOURNAL_START + journal_blocks
        inode_blocks = ninodes // INODES_PER_BLOCK
        ibitmap_start = inode_start + inode_blocks
        ibitmap_blocks = -(-ninodes // BITS_PER_BLOCK)
        bbitmap_start = ibitmap_start + ibitmap_blocks
        bbitmap_blocks = -(-nblocks // BITS_PER_BLOCK)
        data_start = bbitmap_start + bbitmap_blocks
        if ninodes >= 1 << 32:
            raise ValueError(f"too many inodes: {ninodes}")
        if nblocks >= 1 << 32:
            raise ValueError(f"too large: {nblocks} blocks (at most 2^32 - 1)")
        if journal_blocks < MIN_JOURNAL:
            raise ValueError(f"the journal needs at least {MIN_JOURNAL} blocks, not {journal_blocks}")
        if data_start + 16 > nblocks:
            need = data_start + 16
            raise ValueError(f"{nblocks} blocks ({nblocks * BLOCK_SIZE / 2**20:.2g} MiB) is too "
                             f"small: {ninodes} inodes and a {journal_blocks}-block journal "
                             f"need at least {need} blocks ({need * BLOCK_SIZE / 2**20:.2g} MiB)")
        return cls(nblocks, ninodes, journal_blocks, inode_start, inode_blocks,
                   ibitmap_start, ibitmap_blocks, bbitmap_start, bbitmap_blocks, data_start)

    def inode_location(self, ino: int) -> tuple[int, int]:
        """(block, slot) of inode ``ino``."""
        return self.inode_start + ino // INODES_PER_BLOCK, ino % INODES_PER_BLOCK


def superblock_view(block: np.ndarray) -> np.ndarray:
    """The superblock record inside its block's bytes (a writable view)."""
    return block[: SUPERBLOCK_DTYPE.itemsize].view(SUPERBLOCK_DTYPE)[0]


# Where each numeric superblock field lies and how it packs. Every unlink and every
# freeing moves the orphan head: struct instead of a NumPy record view took a handle
# with one update from 9.0 to 5.9 µs (bench/RESULTS.md).
_STRUCT_CODES = {"<u4": "<I", "<u8": "<Q", "<i8": "<q"}
_SB_FIELDS = {name: (offset, struct.Struct(_STRUCT_CODES[dt.str]))
              for name, (dt, offset) in SUPERBLOCK_DTYPE.fields.items()
              if dt.str in _STRUCT_CODES}
_CHECKSUM_AT, _U32 = _SB_FIELDS["checksum"]


def seal_superblock(block: np.ndarray) -> None:
    """Recompute the superblock checksum after a change."""
    _U32.pack_into(block, _CHECKSUM_AT, 0)
    _U32.pack_into(block, _CHECKSUM_AT, crc32c.crc32c(block[:SUPERBLOCK_DTYPE.itemsize]))


def update_superblock(ks: KernelServices, h: Handle, **fields: int) -> None:
    """Set superblock fields inside journal handle ``h`` (and reseal it)."""
    with ks.bread(SUPERBLOCK) as bh:
        h.get_write_access(bh)
        for name, value in fields.items():
            offset, packer = _SB_FIELDS[name]
            packer.pack_into(bh.data, offset, value)
        seal_superblock(bh.data)
        h.dirty_metadata(bh)


def read_errors(block: np.ndarray) -> ErrorRecord | None:
    """The error record in the superblock's block; None if there is none. A record
    whose checksum fails is itself an error met: it reads as one error, saying so."""
    raw = block[ERRORS_OFFSET:ERRORS_OFFSET + ERRORS_DTYPE.itemsize]
    rec = raw.view(ERRORS_DTYPE)[0]
    if bytes(rec["magic"]) != ERRORS_MAGIC:
        return None
    if crc32c.crc32c(raw[:-4].tobytes()) != int(rec["checksum"]):
        return ErrorRecord(1, 0, "the error record's checksum fails", 0,
                           "the error record's checksum fails")
    text = [bytes(rec[k]).decode(errors="replace") for k in ("first", "last")]
    return ErrorRecord(int(rec["count"]), int(rec["first_ns"]), text[0], int(rec["last_ns"]),
                       text[1])


def write_errors(block: np.ndarray, record: ErrorRecord | None) -> None:
    """Put ``record`` (None: clear it) into the superblock's block."""
    raw = block[ERRORS_OFFSET:ERRORS_OFFSET + ERRORS_DTYPE.itemsize]
    raw[:] = 0
    if record is None:
        return
    rec = raw.view(ERRORS_DTYPE)[0]
    rec["magic"], rec["count"] = ERRORS_MAGIC, min(record.count, 2**32 - 1)
    rec["first_ns"], rec["last_ns"] = record.first_ns, record.last_ns
    rec["first"], rec["last"] = _cut(record.first), _cut(record.last)
    rec["checksum"] = crc32c.crc32c(raw[:-4].tobytes())


def _cut(text: str) -> bytes:
    """At most ERRORS_TEXT bytes of UTF-8, never half a character."""
    return text.encode()[:ERRORS_TEXT].decode(errors="ignore").encode()


def read_geometry(block: np.ndarray, device_blocks: int, what: str) -> Geometry:
    """Validate a superblock block and return its geometry, or raise ``corrupt``.

    Every size is bounded and every area checked against the device before use, so a
    corrupt superblock cannot make later code read outside the disk or loop forever.
    """
    sb = superblock_view(block)
    if bytes(sb["magic"]) + b"\0" * (8 - len(bytes(sb["magic"]))) != MAGIC:
        raise corrupt(f"{what}: not an xv6 v2 file system")
    if int(sb["version"]) != VERSION:
        raise corrupt(f"{what}: xv6 format version {int(sb['version'])}, this code reads {VERSION}")
    stored = int(sb["checksum"])
    copy = block[: SUPERBLOCK_DTYPE.itemsize].copy()
    copy.view(SUPERBLOCK_DTYPE)[0]["checksum"] = 0
    if crc32c.crc32c(copy.tobytes()) != stored:
        raise corrupt(f"{what}: superblock checksum mismatch")
    if int(sb["block_size"]) != BLOCK_SIZE:
        raise corrupt(f"{what}: block size {int(sb['block_size'])}, expected {BLOCK_SIZE}")
    if int(sb["features_incompat"]) != 0:
        raise corrupt(f"{what}: unknown incompatible features {int(sb['features_incompat']):#x}")
    nblocks, ninodes = int(sb["nblocks"]), int(sb["ninodes"])
    if nblocks > device_blocks:
        raise corrupt(f"{what}: file system has {nblocks} blocks, the device only {device_blocks}")
    try:
        expect = Geometry.plan(nblocks, ninodes - 1, int(sb["journal_blocks"]))
    except ValueError as e:
        raise corrupt(f"{what}: impossible geometry: {e}") from None
    got = Geometry(nblocks, ninodes, int(sb["journal_blocks"]), int(sb["inode_start"]),
                   int(sb["inode_blocks"]), int(sb["ibitmap_start"]), int(sb["ibitmap_blocks"]),
                   int(sb["bbitmap_start"]), int(sb["bbitmap_blocks"]), int(sb["data_start"]))
    if got != expect or int(sb["journal_start"]) != JOURNAL_START:
        raise corrupt(f"{what}: superblock areas do not match its sizes")
    if int(sb["root_ino"]) != ROOT_INODE:
        raise corrupt(f"{what}: root inode {int(sb['root_ino'])}, expected {ROOT_INODE}")
    if int(sb["orphan_head"]) >= ninodes:
        raise corrupt(f"{what}: orphan list head {int(sb['orphan_head'])} is not an inode")
    if int(sb["hidden_ino"]) >= ninodes or int(sb["hidden_ino"]) == ROOT_INODE:
        raise corrupt(f"{what}: hidden inode {int(sb['hidden_ino'])} is not a file's inode")
    return got


def bit_array(blocks: list[np.ndarray], count: int) -> np.ndarray:
    """Bits 0..count-1 of bitmap blocks as a bool array (True: in use)."""
    raw = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    return np.unpackbits(raw, bitorder="little")[:count].astype(bool)
