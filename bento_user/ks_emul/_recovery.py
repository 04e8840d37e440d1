"""Journal recovery: make the disk what the last committed transaction said.

Three passes, as in jbd2:

1. scan — from the superblock's ``start``, expect transaction ``sequence``, then +1,
   +2 ...; a transaction counts only if its commit block is present, its own checksum
   holds, it covers exactly the blocks scanned (count and chained checksum), and every
   data block matches its tag. The scan stops at the first block that breaks any of
   this: nothing after a broken checksum or sequence is ever applied.
2. revoke — block → newest transaction that revoked it.
3. replay — each committed transaction's blocks, oldest first, written home unless a
   revoke in the same or a later transaction cancels them.

Then the device is flushed and the superblock marked empty with a sequence past every
transaction id seen, so a block left over from this log generation can never be taken
for a new one. A crash anywhere in here leaves the superblock unchanged, so recovery
simply runs again: running it twice equals running it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..blockdev import aligned_blocks
from . import _journal_format as fmt
from ._buffer_cache import BufferCache


class JournalCorruptError(OSError):
    """The journal's superblock is unusable; the file system cannot be mounted as is."""


@dataclass
class RecoveryReport:
    """What recovery found and did.

    Attributes:
        needed: the log was not empty (the file system was not cleanly unmounted).
        transactions: committed transactions replayed (ids ``first_tid``..``last_tid``).
        blocks_replayed: block copies written home.
        blocks_revoked: block copies skipped because a revoke cancelled them.
        stop_reason: why the scan ended (for the log and for tests).
        next_tid: the id the next transaction will get.
    """

    needed: bool = False
    transactions: int = 0
    first_tid: int | None = None
    last_tid: int | None = None
    blocks_replayed: int = 0
    blocks_revoked: int = 0
    stop_reason: str = "clean"
    next_tid: int = 1
    replayed: set[int] = field(default_factory=set)


@dataclass
class _Scanned:
    tid: int
    tags: list[tuple[int, int, int]]  # (blocknr, flags, checksum)
    data: list[np.ndarray]  # unescaped contents, one per tag
    revokes: list[int]


class _Log:
    """Reads blocks of the circular log area directly from the device."""

    def __init__(self, cache: BufferCache, area_start: int, sb: fmt.JournalSuperblock) -> None:
        self.device = cache.device
        self.area_start = area_start
        self.first = sb.first
        self.maxlen = sb.maxlen
        self.buf = aligned_blocks(1, sb.block_size)[0]

    def wrap(self, pos: int) -> int:
        return self.first + (pos - self.first) % (self.maxlen - self.first)

    def read(self, pos: int) -> np.ndarray:
        self.device.read_blocks(self.area_start + self.wrap(pos), [self.buf])
        return self.buf.copy()


def read_journal_superblock(cache: BufferCache, area_start: int, area_len: int,
                            uuid: bytes) -> fmt.JournalSuperblock:
    """The journal superblock, checked against the area the file system gave."""
    buf = aligned_blocks(1, cache.block_size)[0]
    cache.device.read_blocks(area_start, [buf])
    try:
        sb = fmt.read_superblock(buf, fmt.checksum_seed(uuid))
    except fmt.JournalFormatError as e:
        raise JournalCorruptError(f"journal at block {area_start}: {e}") from None
    problems = []
    if sb.block_size != cache.block_size:
        problems.append(f"block size {sb.block_size} is not the device's {cache.block_size}")
    if sb.maxlen != area_len:
        problems.append(f"length {sb.maxlen} is not the {area_len} blocks given")
    if not 1 <= sb.first < sb.maxlen - 3:
        problems.append(f"first log block {sb.first} is out of range")
    if sb.start and not sb.first <= sb.start < sb.maxlen:
        problems.append(f"start {sb.start} is outside the log")
    if sb.uuid != uuid:
        problems.append("it belongs to another file system (uuid differs)")
    if problems:
        raise JournalCorruptError(f"journal at block {area_start}: " + "; ".join(problems))
    return sb


def recover(cache: BufferCache, area_start: int, area_len: int, uuid: bytes) -> RecoveryReport:
    """Replay committed transactions home (through ``cache``) and mark the log empty."""
    seed = fmt.checksum_seed(uuid)
    sb = read_journal_superblock(cache, area_start, area_len, uuid)
    report = RecoveryReport(next_tid=sb.sequence)
    if sb.start == 0:
        return report
    report.needed = True
    log = _Log(cache, area_start, sb)
    committed, report.stop_reason, max_tid = _scan(log, sb, seed)
    revoked: dict[int, int] = {}
    for t in committed:
        for b in t.revokes:
            revoked[b] = max(revoked.get(b, t.tid), t.tid)
    for t in committed:
        for (blocknr, _, _), data in zip(t.tags, t.data):
            if revoked.get(blocknr, -1) >= t.tid:
                report.blocks_revoked += 1
                continue
            if blocknr >= cache.device.nblocks:
                raise JournalCorruptError(
                    f"journal transaction {t.tid} logs block {blocknr}, outside the device")
            with cache.getblk(blocknr) as bh:
                bh.data[:] = data  # type: ignore[index]
                bh.mark_dirty()
            report.blocks_replayed += 1
            report.replayed.add(blocknr)
    if committed:
        report.transactions = len(committed)
        report.first_tid, report.last_tid = committed[0].tid, committed[-1].tid
    cache.sync()
    report.next_tid = max(max_tid, sb.sequence - 1) + 1
    sb.start, sb.sequence, sb.errno = 0, report.next_tid, 0
    write_journal_superblock(cache, area_start, sb, seed)
    return report


@dataclass
class LogContents:
    """The log as it stands, read without replaying it (``bento inspect journal``):
    each committed transaction's id, the blocks it logs and those it revokes, and
    why the scan stopped (an empty log: nothing to scan)."""

    superblock: fmt.JournalSuperblock
    transactions: list[tuple[int, list[int], list[int]]]
    stop_reason: str


def read_log(cache: BufferCache, area_start: int, area_len: int, uuid: bytes) -> LogContents:
    """What recovery would replay, and nothing written."""
    sb = read_journal_superblock(cache, area_start, area_len, uuid)
    if sb.start == 0:
        return LogContents(sb, [], "the log is empty: nothing to replay")
    committed, why, _ = _scan(_Log(cache, area_start, sb), sb, fmt.checksum_seed(uuid))
    return LogContents(sb, [(t.tid, [b for b, _, _ in t.tags], t.revokes) for t in committed], why)


def write_journal_superblock(cache: BufferCache, area_start: int, sb: fmt.JournalSuperblock,
                             seed: int) -> None:
    """Write the superblock and make it durable before anything relies on it."""
    buf = aligned_blocks(1, cache.block_size)[0]
    fmt.write_superblock(buf, sb, seed)
    cache.device.write_blocks(area_start, [buf])
    cache.device.flush()


def _scan(log: _Log, sb: fmt.JournalSuperblock, seed: int) -> tuple[list[_Scanned], str, int]:
    """Pass 1. Returns the committed transactions, why the scan stopped, and the
    highest transaction id seen in any block header."""
    committed: list[_Scanned] = []
    pos, tid = sb.start, sb.sequence
    budget = sb.maxlen - sb.first  # never read more than one lap of the log
    max_tid = sb.sequence - 1
    while budget > 0:
        t = _Scanned(tid, [], [], [])
        count = 0
        chain = seed
        while True:
            if count >= budget:
                return committed, f"transaction {tid} runs past the end of the log", max_tid
            block = log.read(pos + count)
            magic, blocktype, seq = fmt.header_of(block)
            if magic == fmt.MAGIC and blocktype in (fmt.DESCRIPTOR, fmt.REVOKE, fmt.COMMIT):
                max_tid = max(max_tid, seq)
            if magic != fmt.MAGIC:
                return committed, f"no journal block at log position {log.wrap(pos + count)}", max_tid
            if seq != tid:
                return committed, f"expected transaction {tid}, found {seq}", max_tid
            if blocktype == fmt.COMMIT:
                try:
                    nblocks, txn_csum, _ = fmt.read_commit(block, seed)
                except fmt.JournalFormatError as e:
                    return committed, f"transaction {tid}: {e}", max_tid
                if nblocks != count or txn_csum != chain:
                    return committed, f"transaction {tid}: commit block does not match its blocks", max_tid
                count += 1
                break
            chain = fmt.crc(chain, block)
            count += 1
            try:
                if blocktype == fmt.REVOKE:
                    t.revokes.extend(fmt.read_revoke(block, seed))
                elif blocktype == fmt.DESCRIPTOR:
                    tags = fmt.read_descriptor(block, seed)
                    if count + len(tags) > budget:
                        return committed, f"transaction {tid} runs past the end of the log", max_tid
                    for blocknr, flags, csum in tags:
                        data = log.read(pos + count)
                        chain = fmt.crc(chain, data)
                        count += 1
                        if flags & fmt.TAG_ESCAPED:
                            data[:4] = np.frombuffer(fmt.MAGIC_BYTES, np.uint8)
                        if fmt.data_checksum(seed, tid, data) != csum:
                            return committed, f"transaction {tid}: block {blocknr} fails its checksum", max_tid
                        t.tags.append((blocknr, flags, csum))
                        t.data.append(data)
                else:
                    return committed, f"transaction {tid}: unexpected block type {blocktype}", max_tid
            except fmt.JournalFormatError as e:
                return committed, f"transaction {tid}: {e}", max_tid
        committed.append(t)
        pos += count
        budget -= count
        tid += 1
    return committed, "scanned the whole log", max_tid
