"""The journal's on-disk format (written up for people in docs/journal-format.md).

A journal is an area of ``maxlen`` blocks that a file system hands over. Block 0 of the
area is the journal superblock; blocks ``first``..``maxlen-1`` are a circular log. All
integers are big-endian, as in jbd2, whose layout this follows closely (it is not
byte-compatible: our own magic, one tag format, and a commit block that checksums the
whole transaction).

Every log block starts with a 12-byte header: magic, block type, sequence (the
transaction id, "tid"). A transaction is written as

    descriptor, its data blocks, [descriptor, data blocks ...], [revoke ...], commit

Checksums are crc32c seeded with ``crc32c(uuid)`` of the owning file system, so a
block left behind by another file system or another journal can never pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import crc32c
import numpy as np

from ..blockdev import aligned_blocks

MAGIC = 0x42454E4A  # b"BENJ"
MAGIC_BYTES = MAGIC.to_bytes(4, "big")
VERSION = 1

DESCRIPTOR, COMMIT, SUPERBLOCK, REVOKE = 1, 2, 4, 5

TAG_ESCAPED = 0x1  # the block began with MAGIC; the log copy has those 4 bytes zeroed
TAG_LAST = 0x8  # the last tag of its descriptor

HEADER = np.dtype([("magic", ">u4"), ("blocktype", ">u4"), ("sequence", ">u4")])

SUPERBLOCK_DTYPE = np.dtype([
    ("header", HEADER),
    ("version", ">u4"),
    ("block_size", ">u4"),
    ("maxlen", ">u4"),      # blocks in the area, superblock included
    ("first", ">u4"),       # first log block
    ("sequence", ">u4"),    # tid of the oldest transaction still in the log
    ("start", ">u4"),       # log block where that transaction starts; 0 = log empty
    ("errno", ">i4"),       # non-zero once the journal aborted on an I/O error
    ("uuid", "u1", (16,)),
    ("checksum", ">u4"),    # crc32c(seed, the whole block with checksum = 0)
])

TAG_DTYPE = np.dtype([
    ("blocknr", ">u8"),     # the home location of the data block that follows
    ("flags", ">u4"),
    ("checksum", ">u4"),    # crc32c(seed, tid as 4 big-endian bytes + unescaped data)
])

REVOKE_HEAD = np.dtype([("header", HEADER), ("count", ">u4")])

COMMIT_DTYPE = np.dtype([
    ("header", HEADER),
    ("nblocks", ">u4"),     # log blocks of this transaction before the commit block
    ("txn_checksum", ">u4"),  # crc32c(seed, ...) chained over exactly those blocks
    ("sec", ">u8"),
    ("nsec", ">u4"),
    ("checksum", ">u4"),    # crc32c(seed, the whole block with checksum = 0)
])

TAIL_BYTES = 4  # descriptor and revoke blocks end with crc32c(seed, block with tail = 0)


def tags_per_descriptor(block_size: int) -> int:
    return (block_size - HEADER.itemsize - TAIL_BYTES) // TAG_DTYPE.itemsize


def revokes_per_block(block_size: int) -> int:
    return (block_size - REVOKE_HEAD.itemsize - TAIL_BYTES) // 8


def checksum_seed(uuid: bytes) -> int:
    return crc32c.crc32c(uuid)


def crc(seed: int, data: object) -> int:
    return crc32c.crc32c(data, seed)  # type: ignore[arg-type]


@dataclass
class JournalSuperblock:
    block_size: int
    maxlen: int
    first: int
    sequence: int
    start: int
    uuid: bytes
    errno: int = 0
    version: int = VERSION


class JournalFormatError(ValueError):
    """A journal block is not what it claims to be (bad magic, type or checksum)."""


def header_of(block: np.ndarray) -> tuple[int, int, int]:
    """(magic, blocktype, sequence) of any log block."""
    h = block[: HEADER.itemsize].view(HEADER)[0]
    return int(h["magic"]), int(h["blocktype"]), int(h["sequence"])


def _set_header(block: np.ndarray, blocktype: int, tid: int) -> None:
    h = block[: HEADER.itemsize].view(HEADER)
    h["magic"], h["blocktype"], h["sequence"] = MAGIC, blocktype, tid


def _sealed_struct(block: np.ndarray, dtype: np.dtype, seed: int) -> np.void | None:
    """The struct at the start of ``block`` if its ``checksum`` field matches the whole
    block (taken with that field zeroed); None if it does not."""
    raw = block.copy()
    fields = raw[: dtype.itemsize].view(dtype)
    stored = int(fields["checksum"][0])
    fields["checksum"] = 0
    if crc(seed, raw) != stored:
        return None
    fields["checksum"] = stored
    return fields[0]


# -- superblock ------------------------------------------------------------------------

def write_superblock(block: np.ndarray, sb: JournalSuperblock, seed: int) -> None:
    block[:] = 0
    s = block[: SUPERBLOCK_DTYPE.itemsize].view(SUPERBLOCK_DTYPE)
    _set_header(block, SUPERBLOCK, 0)
    s["version"], s["block_size"], s["maxlen"] = sb.version, sb.block_size, sb.maxlen
    s["first"], s["sequence"], s["start"], s["errno"] = sb.first, sb.sequence, sb.start, sb.errno
    s["uuid"][0] = np.frombuffer(sb.uuid, dtype=np.uint8)
    s["checksum"] = crc(seed, block)


def read_superblock(block: np.ndarray, seed: int) -> JournalSuperblock:
    magic, blocktype, _ = header_of(block)
    if magic != MAGIC or blocktype != SUPERBLOCK:
        raise JournalFormatError("no journal superblock (bad magic)")
    s = _sealed_struct(block, SUPERBLOCK_DTYPE, seed)
    if s is None:
        raise JournalFormatError("journal superblock checksum mismatch (wrong uuid or corrupt)")
    if int(s["version"]) != VERSION:
        raise JournalFormatError(f"journal format version {int(s['version'])} is not {VERSION}")
    return JournalSuperblock(
        block_size=int(s["block_size"]), maxlen=int(s["maxlen"]), first=int(s["first"]),
        sequence=int(s["sequence"]), start=int(s["start"]), uuid=bytes(s["uuid"]),
        errno=int(s["errno"]), version=int(s["version"]),
    )


# -- descriptor, revoke and commit blocks ----------------------------------------------

def _seal_tail(block: np.ndarray, seed: int) -> None:
    block[-TAIL_BYTES:] = 0
    block[-TAIL_BYTES:] = np.frombuffer(crc(seed, block).to_bytes(4, "big"), np.uint8)


def _tail_ok(block: np.ndarray, seed: int) -> bool:
    copy = block.copy()
    stored = int.from_bytes(copy[-TAIL_BYTES:].tobytes(), "big")
    copy[-TAIL_BYTES:] = 0
    return crc(seed, copy) == stored


def write_descriptor(block: np.ndarray, tid: int, tags: list[tuple[int, int, int]],
                     seed: int) -> None:
    """Fill ``block`` with a descriptor listing (blocknr, flags, checksum) tags."""
    block[:] = 0
    _set_header(block, DESCRIPTOR, tid)
    t = block[HEADER.itemsize : HEADER.itemsize + len(tags) * TAG_DTYPE.itemsize].view(TAG_DTYPE)
    for i, (blocknr, flags, csum) in enumerate(tags):
        last = TAG_LAST if i == len(tags) - 1 else 0
        t[i] = (blocknr, flags | last, csum)
    _seal_tail(block, seed)


def read_descriptor(block: np.ndarray, seed: int) -> list[tuple[int, int, int]]:
    if not _tail_ok(block, seed):
        raise JournalFormatError("descriptor checksum mismatch")
    limit = tags_per_descriptor(block.size)
    t = block[HEADER.itemsize : HEADER.itemsize + limit * TAG_DTYPE.itemsize].view(TAG_DTYPE)
    tags = []
    for blocknr, flags, csum in t.tolist():
        tags.append((int(blocknr), int(flags), int(csum)))
        if flags & TAG_LAST:
            return tags
    raise JournalFormatError("descriptor without a last tag")


def write_revoke(block: np.ndarray, tid: int, blocknos: list[int], seed: int) -> None:
    block[:] = 0
    _set_header(block, REVOKE, tid)
    block[: REVOKE_HEAD.itemsize].view(REVOKE_HEAD)["count"] = len(blocknos)
    end = REVOKE_HEAD.itemsize + 8 * len(blocknos)
    block[REVOKE_HEAD.itemsize : end].view(">u8")[:] = blocknos
    _seal_tail(block, seed)


def read_revoke(block: np.ndarray, seed: int) -> list[int]:
    if not _tail_ok(block, seed):
        raise JournalFormatError("revoke block checksum mismatch")
    count = int(block[: REVOKE_HEAD.itemsize].view(REVOKE_HEAD)["count"][0])
    if count > revokes_per_block(block.size):
        raise JournalFormatError(f"revoke block claims {count} records")
    end = REVOKE_HEAD.itemsize + 8 * count
    return [int(b) for b in block[REVOKE_HEAD.itemsize : end].view(">u8")]


def write_commit(block: np.ndarray, tid: int, nblocks: int, txn_checksum: int,
                 time_ns: int, seed: int) -> None:
    block[:] = 0
    _set_header(block, COMMIT, tid)
    c = block[: COMMIT_DTYPE.itemsize].view(COMMIT_DTYPE)
    c["nblocks"], c["txn_checksum"] = nblocks, txn_checksum
    c["sec"], c["nsec"] = divmod(time_ns, 1_000_000_000)
    c["checksum"] = crc(seed, block)


def read_commit(block: np.ndarray, seed: int) -> tuple[int, int, int]:
    """(nblocks, txn_checksum, time_ns) of a commit block whose own checksum holds."""
    c = _sealed_struct(block, COMMIT_DTYPE, seed)
    if c is None:
        raise JournalFormatError("commit block checksum mismatch")
    return int(c["nblocks"]), int(c["txn_checksum"]), int(c["sec"]) * 1_000_000_000 + int(c["nsec"])


def data_checksum(seed: int, tid: int, data: np.ndarray) -> int:
    return crc(crc(seed, tid.to_bytes(4, "big")), data)


class TransactionLayout:
    """Where a transaction's blocks go in the log: [descriptor, copies ...]*,
    [revoke]*, commit, in one aligned staging array.

    The journal copies logged block ``i`` straight into ``staging[slot(i)]`` while the
    transaction is locked; ``seal`` then fills in descriptors, revokes and the commit
    block around the copies, without moving them.
    """

    def __init__(self, blocknos: list[int], revokes: list[int], block_size: int) -> None:
        self.blocknos = blocknos
        self.revokes = revokes
        self.per = tags_per_descriptor(block_size)
        self.per_revoke = revokes_per_block(block_size)
        ndesc = -(-len(blocknos) // self.per)
        nrev = -(-len(revokes) // self.per_revoke)
        self.staging = aligned_blocks(ndesc + len(blocknos) + nrev + 1, block_size)

    def slot(self, i: int) -> int:
        """The log position (within the transaction) of the copy of block ``i``."""
        return i // self.per * (self.per + 1) + 1 + i % self.per

    def seal(self, tid: int, seed: int, now_ns: int) -> np.ndarray:
        """Fill in descriptors (escaping copies in place), revoke and commit blocks;
        return every block of the transaction in log order."""
        out = self.staging
        n = len(self.blocknos)
        pos = 0
        for first in range(0, n, self.per):
            tags = []
            for i in range(first, min(n, first + self.per)):
                data = out[self.slot(i)]
                csum = data_checksum(seed, tid, data)
                flags = 0
                if data[:4].tobytes() == MAGIC_BYTES:
                    data[:4] = 0
                    flags = TAG_ESCAPED
                tags.append((self.blocknos[i], flags, csum))
            write_descriptor(out[pos], tid, tags, seed)
            pos += 1 + len(tags)
        for first in range(0, len(self.revokes), self.per_revoke):
            write_revoke(out[pos], tid, self.revokes[first : first + self.per_revoke], seed)
            pos += 1
        # crc32c streams, so one call over the contiguous blocks equals the per-block
        # chain that recovery computes.
        write_commit(out[pos], tid, pos, crc(seed, out[:pos]), now_ns, seed)
        return out
