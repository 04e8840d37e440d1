"""Directories: ext2-style variable-length entries on disk, a name index in memory.

On disk a directory is a sequence of blocks (no holes), each a chain of records
``ino u32, rec_len u16, name_len u8, kind u8, name`` (see ``_format``). Removing an
entry merges its record into the previous one (or zeroes ``ino`` when it is the
first of its block); adding one splits a record with room to spare. Entries never
move while they exist, so a readdir offset — the byte position of the next record —
stays valid while other names come and go: names not changed during a scan are
returned exactly once.

In memory, ``DirIndex`` maps every name to its position, and keeps for each block
a bound on its largest record slack (NumPy), so lookup and insert never scan the
directory; inside a block an insert looks from the last record back, where a
growing directory's room is, so filling a block costs one step an entry.
It is built on first use (one pass over the blocks) and kept in step by every change.
The caller holds the directory's inode lock (and the namespace lock) for changes.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

import numpy as np

from bento_user.api import corrupt
from bento_user.ks_emul import Handle, KernelServices

from ._bmap import BlockMap
from ._format import BLOCK_SIZE, DIRENT_HEADER_SIZE, dirent_size
from ._inode import Inode

_HEADER = struct.Struct("<IHBB")
_INO = struct.Struct("<I")
_REC_LEN = struct.Struct("<H")


@dataclass
class Record:
    offset: int      # in its block
    ino: int
    rec_len: int
    kind: int
    name: bytes

    @property
    def slack(self) -> int:
        return self.rec_len - (dirent_size(len(self.name)) if self.ino else 0)


def parse_block(data: bytes, dir_ino: int, lblk: int, ninodes: int) -> list[Record]:
    """Every record of one directory block, validated (fsck uses this too)."""
    out = []
    off = 0
    while off < BLOCK_SIZE:
        if off + DIRENT_HEADER_SIZE > BLOCK_SIZE:
            raise corrupt(f"directory {dir_ino}: block {lblk}: record at {off} runs off the block")
        ino, rec_len, name_len, kind = _HEADER.unpack_from(data, off)
        if rec_len < DIRENT_HEADER_SIZE or rec_len % 4 or off + rec_len > BLOCK_SIZE:
            raise corrupt(f"directory {dir_ino}: block {lblk}: bad record length {rec_len} at {off}")
        if ino and (DIRENT_HEADER_SIZE + name_len > rec_len or name_len == 0):
            raise corrupt(f"directory {dir_ino}: block {lblk}: bad name length {name_len} at {off}")
        if ino >= ninodes:
            raise corrupt(f"directory {dir_ino}: block {lblk}: entry at {off} names inode {ino}, "
                          f"beyond the {ninodes} inodes")
        name = data[off + DIRENT_HEADER_SIZE: off + DIRENT_HEADER_SIZE + name_len] if ino else b""
        out.append(Record(off, ino, rec_len, kind, name))
        off += rec_len
    return out


def empty_block() -> bytes:
    return _HEADER.pack(0, BLOCK_SIZE, 0, 0) + bytes(BLOCK_SIZE - DIRENT_HEADER_SIZE)


class DirIndex:
    """The names of one directory: name -> (position, inode, kind); and, per block,
    its records' layout as ``[offset, rec_len, used]`` lists in offset order (used:
    bytes the entry needs, 0 for a free record), so changes never re-parse a block.

    ``slack[lblk]`` is at least the room of the block's roomiest record: exact when
    built, raised when a removal makes room, left as it is by an insert (which only
    takes room), and made exact when an insert found less room than it promised.
    Recounting after every insert would walk the block's records each time."""

    def __init__(self) -> None:
        self.names: dict[bytes, tuple[int, int, int]] = {}
        self.layout: list[list[list[int]]] = []
        self.slack = np.zeros(0, dtype=np.int32)

    def room_at_least(self, lblk: int, room: int) -> None:
        if room > self.slack[lblk]:
            self.slack[lblk] = room

    def recount(self, lblk: int) -> None:
        self.slack[lblk] = max(r[1] - r[2] for r in self.layout[lblk])

    def record_with_room(self, need: int) -> tuple[int, int] | None:
        """(block, record index) of a record with ``need`` bytes to spare, the
        blocks in order and each from its last record back; None if none has."""
        for lblk in np.flatnonzero(self.slack >= need).tolist():
            records = self.layout[lblk]
            for i in range(len(records) - 1, -1, -1):
                if records[i][1] - records[i][2] >= need:
                    return lblk, i
            self.recount(lblk)  # it promised more than it has
        return None


class Directories:
    """Directory operations over the buffer cache, for one file system."""

    def __init__(self, ks: KernelServices, bmap: BlockMap, ninodes: int) -> None:
        self.ks = ks
        self.bmap = bmap
        self.ninodes = ninodes

    def index(self, dp: Inode) -> DirIndex:
        if dp.dir is None:
            dp.dir = self._build(dp)
        return dp.dir

    def _build(self, dp: Inode) -> DirIndex:
        nblocks = self.nblocks(dp)
        index = DirIndex()
        index.slack = np.zeros(nblocks, dtype=np.int32)
        for lblk, pblk in enumerate(self.bmap.lookup_range(dp, 0, nblocks).tolist()):
            if not pblk:
                raise corrupt(f"directory {dp.ino}: hole at block {lblk}")
            records = self._records(dp, lblk, pblk)
            for r in records:
                if r.ino:
                    if r.name in index.names:
                        raise corrupt(f"directory {dp.ino}: name {r.name!r} appears twice")
                    index.names[r.name] = (lblk * BLOCK_SIZE + r.offset, r.ino, r.kind)
            index.layout.append([[r.offset, r.rec_len, r.rec_len - r.slack] for r in records])
            index.slack[lblk] = max(r.slack for r in records)
        return index

    @staticmethod
    def nblocks(dp: Inode) -> int:
        """Blocks of a directory, checked against what it holds (no holes allowed)."""
        if dp.size % BLOCK_SIZE or not 0 < dp.size // BLOCK_SIZE <= dp.blocks:
            raise corrupt(f"directory {dp.ino}: size {dp.size} does not match its "
                          f"{dp.blocks} blocks")
        return dp.size // BLOCK_SIZE

    def _records(self, dp: Inode, lblk: int, pblk: int) -> list[Record]:
        with self.ks.bread(pblk) as bh:
            data = bh.data.tobytes()
        return parse_block(data, dp.ino, lblk, self.ninodes)

    # -- reading -----------------------------------------------------------------

    def lookup(self, dp: Inode, name: bytes) -> tuple[int, int] | None:
        """(inode, kind) of ``name``, or None."""
        hit = self.index(dp).names.get(name)
        return None if hit is None else (hit[1], hit[2])

    def scan(self, dp: Inode, offset: int, want: int) -> list[tuple[Record, int]]:
        """Live records at byte position >= ``offset``, whole blocks at a time, until at
        least ``want`` were found; each with the position just after it."""
        out: list[tuple[Record, int]] = []
        nblocks = self.nblocks(dp)
        lblk = offset // BLOCK_SIZE
        while lblk < nblocks and len(out) < want:
            pblk = self.bmap.lookup(dp, lblk)
            if not pblk:
                raise corrupt(f"directory {dp.ino}: hole at block {lblk}")
            base = lblk * BLOCK_SIZE
            for r in self._records(dp, lblk, pblk):
                if r.ino and base + r.offset >= offset:
                    out.append((r, base + r.offset + r.rec_len))
            lblk += 1
        return out

    def is_empty(self, dp: Inode) -> bool:
        return not (self.index(dp).names.keys() - {b".", b".."})

    # -- changing ----------------------------------------------------------------

    def add(self, h: Handle, dp: Inode, name: bytes, ino: int, kind: int) -> None:
        """Insert an entry (the name must be absent). Grows the directory by a block
        when no record has room. Caller stores ``dp`` afterwards (size may change)."""
        index = self.index(dp)
        need = dirent_size(len(name))
        found = index.record_with_room(need)
        if found:
            lblk, i = found
            pblk = self.bmap.lookup(dp, lblk)
        else:
            lblk, i = len(index.slack), 0
            pblk, _ = self.bmap.map_alloc(h, dp, lblk, metadata=True)
            with self.ks.getblk(pblk) as bh:
                h.get_create_access(bh)
                bh.data[:] = np.frombuffer(empty_block(), np.uint8)
                h.dirty_metadata(bh)
            dp.size += BLOCK_SIZE
            index.slack = np.append(index.slack, BLOCK_SIZE)
            index.layout.append([[0, BLOCK_SIZE, 0]])
        records = index.layout[lblk]
        off, rec_len, used = records[i]
        with self.ks.bread(pblk) as bh:
            h.get_write_access(bh)
            view = _bytes_view(bh.data)
            if used:  # split: the old entry keeps what it needs, the new one the rest
                _REC_LEN.pack_into(view, off + 4, used)
                at, length = off + used, rec_len - used
                records[i][1] = used
                records.insert(i + 1, [at, length, need])
            else:
                at, length = off, rec_len
                records[i][2] = need
            self._put(view, at, ino, length, kind, name)
            h.dirty_metadata(bh)
        index.names[name] = (lblk * BLOCK_SIZE + at, ino, kind)

    def remove(self, h: Handle, dp: Inode, name: bytes) -> None:
        index = self.index(dp)
        pos, _, _ = index.names.pop(name)
        lblk, off = divmod(pos, BLOCK_SIZE)
        records = index.layout[lblk]
        i = bisect.bisect_left(records, [off])  # in offset order; [off] sorts first
        if i == len(records) or records[i][0] != off:
            raise corrupt(f"directory {dp.ino}: no record at {pos} for {name!r}")
        with self.ks.bread(self.bmap.lookup(dp, lblk)) as bh:
            h.get_write_access(bh)
            view = _bytes_view(bh.data)
            if i == 0:  # the first record of a block stays, marked free
                _INO.pack_into(view, off, 0)
                records[0][2] = 0
                freed = records[0]
            else:       # others merge into the record before them
                freed = records[i - 1]
                freed[1] += records[i][1]
                _REC_LEN.pack_into(view, freed[0] + 4, freed[1])
                del records[i]
            h.dirty_metadata(bh)
        index.room_at_least(lblk, freed[1] - freed[2])

    def retarget(self, h: Handle, dp: Inode, name: bytes, ino: int, kind: int) -> None:
        """Point an existing entry at another inode (rename over it, or '..')."""
        index = self.index(dp)
        pos, _, _ = index.names[name]
        lblk, off = divmod(pos, BLOCK_SIZE)
        with self.ks.bread(self.bmap.lookup(dp, lblk)) as bh:
            h.get_write_access(bh)
            view = _bytes_view(bh.data)
            _, rec_len, name_len, _ = _HEADER.unpack_from(view, off)
            _HEADER.pack_into(view, off, ino, rec_len, name_len, kind)
            h.dirty_metadata(bh)
        index.names[name] = (pos, ino, kind)

    def _put(self, view: memoryview, off: int, ino: int, rec_len: int, kind: int, name: bytes) -> None:
        _HEADER.pack_into(view, off, ino, rec_len, len(name), kind)
        view[off + DIRENT_HEADER_SIZE: off + DIRENT_HEADER_SIZE + len(name)] = name

    @staticmethod
    def init_block(dir_ino: int, parent_ino: int, kind: int) -> bytes:
        """The first block of a new directory: '.' and '..'."""
        dot = dirent_size(1)
        return (_HEADER.pack(dir_ino, dot, 1, kind) + b".\0\0\0"
                + _HEADER.pack(parent_ino, BLOCK_SIZE - dot, 2, kind) + b"..\0\0"
                + bytes(BLOCK_SIZE - dot - dirent_size(2)))


def _bytes_view(data: np.ndarray) -> memoryview:
    """A writable bytes view of a block (struct packs into it in place)."""
    return memoryview(data).cast("B")
