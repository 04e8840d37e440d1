"""Repair an xv6 v2 image in place, in e2fsck's passes (``bento fsck -y``, ``-p``).

0. the journal: replayed for real (an unreadable one is formatted empty: its log is
   lost, as e2fsck clears a corrupt journal)
1. inodes: an unknown type, a broken symlink, a directory with no first block are
   cleared; pointers outside the data area or to a block already claimed are cut;
   an extended-attribute set that does not parse is dropped; sizes and block counts
   are set to what the inode maps
2. directories: an unreadable block is emptied (the first gets '.' and '..' again);
   entries naming free inodes, invalid or repeated names are removed; types fixed
3. connectivity: '.' and '..' set right; a directory's second name removed; what no
   directory reaches (a directory, a file with data) is reconnected in /lost+found
   as ``#INO``, made if missing; an unattached empty file is cleared
4. link counts: set to the entries that name the inode
5. bitmaps: rebuilt from what the inodes claim
plus the orphan list cut where it breaks, and the superblock's error record cleared
once the image checks clean.

Preen (``-p``) does only what needs no judgement: the journal, counts, sizes, the
orphan list and the bitmaps; anything else is left for ``-y`` (exit 4). Writes go
straight to the device (the journal is empty by then), as e2fsck's do; the checker
(``fsck.py``) then runs again on the result, and its verdict is the report's.
"""

from __future__ import annotations

import stat
import struct
import time

import numpy as np

from bento_user.api import FsckReport, FsError, Progress
from bento_user.blockdev import BlockDevice
from bento_user.ks_emul import Journal, JournalCorruptError, KernelServices

from . import _xattr as xattr
from ._dir import Directories, empty_block, parse_block
from ._format import (
    BLOCK_SIZE,
    DIRENT_HEADER_SIZE,
    FORMAT_KINDS,
    INODE_DTYPE,
    JOURNAL_START,
    MAX_FILE_SIZE,
    NDIRECT,
    ROOT_INODE,
    STATE_CLEAN,
    STATE_MOUNTED,
    SUPERBLOCK,
    SYMLINK_MAX,
    bit_array,
    dirent_size,
    kind_code,
    read_errors,
    read_geometry,
    seal_superblock,
    superblock_view,
    write_errors,
)
from .fsck import fsck

ROUNDS = 3                    # repair, check again; a fix may uncover another
_HEADER = struct.Struct("<IHBB")
LOST_FOUND = b"lost+found"


def repair(device: BlockDevice, progress: Progress | None = None,
           preen: bool = False) -> FsckReport:
    """Repair in place; the report lists what was fixed and what is left."""
    fixed = _journal(device, preen)
    report = fsck(device, progress)
    for _ in range(ROUNDS):
        if report.clean:
            break
        round_fixed = _Repair(device, preen).run()
        if not round_fixed:
            break
        fixed += round_fixed
        report = fsck(device, progress)
    if report.clean and _clear_errors(device):
        fixed.append("superblock: the record of errors met while mounted is cleared")
        report = fsck(device)  # its note about the record is gone now
    report.repaired = fixed
    return report


def _journal(device: BlockDevice, preen: bool) -> list[str]:
    ks = KernelServices(device, cache_blocks=1024, commit_interval=None)
    try:
        sb_block = np.frombuffer(device.read_block(SUPERBLOCK), np.uint8)
        geo = read_geometry(sb_block, device.nblocks, device.name)  # FsError: not repairable
        uuid = bytes(superblock_view(sb_block)["uuid"])
        try:
            _, report = ks.open_journal(JOURNAL_START, geo.journal_blocks, uuid)
        except JournalCorruptError as e:
            if preen:
                return []
            Journal.format(ks.cache, JOURNAL_START, geo.journal_blocks, uuid)
            return [f"journal: {e}; formatted empty (its log is lost)"]
        if report.needed and report.transactions:
            return [f"journal: replayed transactions {report.first_tid}..{report.last_tid} "
                    f"({report.blocks_replayed} blocks)"]
        return []
    finally:
        ks.close(keep_device=True)


def _clear_errors(device: BlockDevice) -> bool:
    block = np.frombuffer(device.read_block(SUPERBLOCK), np.uint8).copy()
    if read_errors(block) is None:
        return False
    write_errors(block, None)
    device.write_blocks(SUPERBLOCK, [block])
    device.flush()
    return True


class _Repair:
    """One round of fixes over the whole image, held in memory, then written."""

    def __init__(self, device: BlockDevice, preen: bool) -> None:
        self.device, self.preen = device, preen
        sb_block = self._read(SUPERBLOCK)
        self.geo = g = read_geometry(sb_block, device.nblocks, device.name)
        self.sb_block = sb_block
        self.table = np.concatenate([self._read(g.inode_start + i)
                                     for i in range(g.inode_blocks)]).view(INODE_DTYPE)
        self.read_table = self.table.copy()       # as read: what changed is written
        self.read_sb = sb_block.copy()
        self.blocks: dict[int, np.ndarray] = {}   # blocks this round read, changed in place
        self.read_blocks: dict[int, np.ndarray] = {}
        self.claimed = np.zeros(g.nblocks, dtype=bool)
        self.claimed[:g.data_start] = True
        self.fixed: list[str] = []

    def _read(self, n: int) -> np.ndarray:
        return np.frombuffer(self.device.read_block(n), np.uint8).copy()

    def block(self, n: int) -> np.ndarray:
        """Block ``n`` as this round has it (changes kept until the end)."""
        if n not in self.blocks:
            self.blocks[n] = self._read(n)
            self.read_blocks[n] = self.blocks[n].copy()
        return self.blocks[n]

    def fix(self, text: str) -> None:
        self.fixed.append(text)

    def run(self) -> list[str]:
        self.inodes()
        if self.whole_tree():   # else entries would be missed: names lost, files doubled
            self.directories()
            self.connectivity()
            self.link_counts()
        self.orphans()
        self.write()
        self.bitmaps()
        return self.fixed

    def whole_tree(self) -> bool:
        """Whether every directory fits what this repair reads of one (its direct and
        single-indirect blocks: 4 MiB of entries)."""
        dirs = (self.table["mode"] & 0o170000) == stat.S_IFDIR
        return not (self.table["size"][dirs] > (NDIRECT + 1024) * BLOCK_SIZE).any()

    # -- pass 1 ---------------------------------------------------------------------

    def used(self) -> np.ndarray:
        used = self.table["mode"] != 0
        used[0] = False
        return used

    def clear(self, ino: int, why: str) -> None:
        self.table[ino] = np.zeros(1, INODE_DTYPE)[0]
        self.fix(f"inode {ino}: {why}; cleared")

    def inodes(self) -> None:
        for ino in np.flatnonzero(self.used()).tolist():
            rec = self.table[ino]
            kind = stat.S_IFMT(int(rec["mode"]))
            if kind not in FORMAT_KINDS:
                if not self.preen:
                    self.clear(ino, f"unknown file type {kind:#o}")
                continue
            mapped = self.pointers(ino, rec)
            counted = len(mapped) + self.indirect_count + self.xattr(ino, rec)
            if counted != int(rec["blocks"]):
                self.fix(f"inode {ino}: block count {int(rec['blocks'])} set to {counted}")
                rec["blocks"] = counted
            self.sizes(ino, rec, kind, mapped)  # may clear the inode, or give the root a block

    def pointers(self, ino: int, rec: np.void) -> list[tuple[int, int]]:
        """Claim what the inode maps, cutting (with -y) pointers that are out of the
        data area or claimed already; (logical, physical) of its data blocks."""
        mapped: list[tuple[int, int]] = []
        self.indirect_count = 0
        addrs = rec["addrs"]
        bases = (NDIRECT, NDIRECT + 1024, NDIRECT + 1024 + 1024**2)
        for i in range(NDIRECT + 3):
            p = int(addrs[i])
            if not p or not self.take(ino, p, addrs, i):
                continue
            if i < NDIRECT:
                mapped.append((i, p))
            else:
                self.indirect_count += 1
                self.walk(ino, p, i - NDIRECT + 1, bases[i - NDIRECT], mapped)
        return mapped

    def take(self, ino: int, p: int, ptrs: np.ndarray, i: int) -> bool:
        """Claim block ``p`` (pointer ``ptrs[i]``); with -y, cut a pointer that cannot
        be claimed (``ptrs`` is a view of the inode or of a block of this round's)."""
        if 0 < p < self.geo.nblocks and not self.claimed[p]:
            self.claimed[p] = True
            return True
        if self.preen:
            return False
        why = "outside the device" if p >= self.geo.nblocks else (
            "inside the metadata area" if p < self.geo.data_start else "claimed already")
        ptrs[i] = 0
        self.fix(f"inode {ino}: block pointer {p} ({why}) cut")
        return False

    def walk(self, ino: int, p: int, level: int, base: int, mapped: list[tuple[int, int]]) -> None:
        ptrs = self.block(p).view("<u4")
        span = 1024 ** (level - 1)
        for i in np.flatnonzero(ptrs).tolist():
            q = int(ptrs[i])
            if not self.take(ino, q, ptrs, i):
                continue
            if level == 1:
                mapped.append((base + i, q))
            else:
                self.indirect_count += 1
                self.walk(ino, q, level - 1, base + i * span, mapped)

    def xattr(self, ino: int, rec: np.void) -> int:
        """Claim the extended-attribute blocks; drop a set that does not parse (-y)."""
        xb = int(rec["xattr_block"])
        if not xb:
            return 0
        holder = np.array([xb], dtype="<u4")
        if not self.take(ino, xb, holder, 0):
            rec["xattr_block"] = holder[0]
            return 0
        head = self.block(xb).tobytes()
        try:
            if head[:4] != xattr.INDEX_MAGIC:
                xattr.decode(head, ino)
                return 1
            blocks, length = xattr.parse_index(head, ino, lambda b: b)
            if all(0 < b < self.geo.nblocks and not self.claimed[b] for b in blocks):
                xattr.decode(b"".join(self.block(b).tobytes() for b in blocks)[:length], ino)
                self.claimed[blocks] = True
                return 1 + len(blocks)
            reason = "its blocks are out of range or claimed already"
        except FsError as e:
            reason = e.strerror or "unreadable"
        if self.preen:
            return 1
        self.claimed[xb] = False
        rec["xattr_block"] = 0
        self.fix(f"inode {ino}: extended attributes dropped ({reason})")
        return 0

    def sizes(self, ino: int, rec: np.void, kind: int, mapped: list[tuple[int, int]]) -> None:
        size = int(rec["size"])
        last = max((lblk for lblk, _ in mapped), default=-1)
        if kind == stat.S_IFREG and (last * BLOCK_SIZE >= size or size > MAX_FILE_SIZE):
            rec["size"] = min(max(size, (last + 1) * BLOCK_SIZE), MAX_FILE_SIZE)
            self.fix(f"inode {ino}: size {size} set to {int(rec['size'])}")
        elif kind == stat.S_IFDIR:
            lblks = [lblk for lblk, _ in mapped]
            run = next((n for n, lblk in enumerate(lblks) if lblk != n), len(lblks))
            if run != len(lblks) or size != run * BLOCK_SIZE:
                if self.preen and run != len(lblks):
                    return
                if run == 0:
                    if ino == ROOT_INODE and not self.preen:
                        self.new_root(rec)
                    elif not self.preen:
                        self.clear(ino, "a directory with no first block")
                    return
                for lblk, p in mapped[run:]:  # past a hole: cut off, freed by pass 5
                    self.unmap(ino, rec, lblk)
                rec["size"] = run * BLOCK_SIZE
                self.fix(f"directory {ino}: size {size} set to {run * BLOCK_SIZE}")
        elif kind == stat.S_IFLNK and (not 0 < size <= SYMLINK_MAX
                                       or [lblk for lblk, _ in mapped] != [0]):
            if not self.preen:
                self.clear(ino, f"a symlink whose size {size} does not match its target block")
        elif kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK) and mapped and not self.preen:
            for lblk, _ in mapped:
                self.unmap(ino, rec, lblk)
            self.fix(f"inode {ino}: a special file's data blocks cut")

    def new_root(self, rec: np.void) -> None:
        """The root lost its first block: a new one with '.' and '..' (what the root
        named is unreachable now, and goes to /lost+found)."""
        free = np.flatnonzero(~self.claimed)
        if not len(free):
            return
        b = int(free[0])
        self.claimed[b] = True
        self.block(b)[:] = np.frombuffer(Directories.init_block(ROOT_INODE, ROOT_INODE,
                                                                kind_code(stat.S_IFDIR)), np.uint8)
        rec["addrs"][:] = 0
        rec["addrs"][0], rec["size"], rec["blocks"] = b, BLOCK_SIZE, 1
        self.fix(f"the root directory had no first block; a new one is block {b} (what it "
                 "named is reconnected in /lost+found)")

    def unmap(self, ino: int, rec: np.void, lblk: int) -> None:
        """Cut a directory's or special file's pointer to logical block ``lblk``
        (direct, or in its single-indirect block)."""
        if lblk < NDIRECT:
            rec["addrs"][lblk] = 0
        elif lblk < NDIRECT + 1024 and rec["addrs"][NDIRECT]:
            self.block(int(rec["addrs"][NDIRECT])).view("<u4")[lblk - NDIRECT] = 0

    # -- pass 2 ---------------------------------------------------------------------

    def dir_blocks(self, ino: int) -> list[int]:
        rec = self.table[ino]
        out = [int(p) for p in rec["addrs"][:NDIRECT] if p]
        if rec["addrs"][NDIRECT]:
            ptrs = self.block(int(rec["addrs"][NDIRECT])).view("<u4")
            out += [int(p) for p in ptrs if p]
        return out[: int(rec["size"]) // BLOCK_SIZE]

    def directories(self) -> None:
        # directory -> its entries: (block, offset, name, inode)
        self.entries: dict[int, list[tuple[int, int, bytes, int]]] = {}
        used = self.used()
        for d in np.flatnonzero(used).tolist():
            if not stat.S_ISDIR(int(self.table[d]["mode"])):
                continue
            found: list[tuple[int, int, bytes, int]] = []
            names: set[bytes] = set()
            for lblk, p in enumerate(self.dir_blocks(d)):
                try:
                    records = parse_block(self.block(p).tobytes(), d, lblk, self.geo.ninodes)
                except FsError as e:
                    if self.preen:
                        continue
                    self.block(p)[:] = np.frombuffer(
                        Directories.init_block(d, ROOT_INODE, kind_code(stat.S_IFDIR)) if lblk == 0
                        else empty_block(), np.uint8)
                    self.fix(f"{e.strerror}: the block is emptied (its entries are lost)")
                    records = parse_block(self.block(p).tobytes(), d, lblk, self.geo.ninodes)
                for r in records:
                    if not r.ino:
                        continue
                    bad = ("names free inode" if not used[r.ino]
                           else "is repeated" if r.name in names
                           else "is not a valid name" if b"/" in r.name or b"\0" in r.name
                           else None)
                    if bad and not self.preen:
                        self.set_ino(p, r.offset, 0)
                        self.fix(f"directory {d}: entry {r.name!r} {bad}; removed")
                        continue
                    want = kind_code(int(self.table[r.ino]["mode"]))
                    if used[r.ino] and r.kind != want and not self.preen:
                        self.block(p)[r.offset + 7] = want
                        self.fix(f"directory {d}: entry {r.name!r} given inode {r.ino}'s type")
                    names.add(r.name)
                    found.append((p, r.offset, r.name, r.ino))
            self.entries[d] = found

    def set_ino(self, block: int, offset: int, ino: int) -> None:
        self.block(block)[offset:offset + 4] = np.frombuffer(struct.pack("<I", ino), np.uint8)

    # -- pass 3 ---------------------------------------------------------------------

    def connectivity(self) -> None:
        if self.preen or ROOT_INODE not in self.entries:
            return
        parent = {ROOT_INODE: ROOT_INODE}
        self.reach(ROOT_INODE, parent)
        for d in list(self.entries):
            if d in parent:
                continue
            lf = self.reconnect(d)
            if lf:
                parent.setdefault(lf, ROOT_INODE)
                parent[d] = lf
                self.reach(d, parent)      # its subtree comes along, named as it was
        for d, p in parent.items():
            self.dots(d, p)
        named = {t for found in self.entries.values() for _, _, n, t in found
                 if n not in (b".", b"..")}
        orphans = self.orphan_set()
        hidden = int(superblock_view(self.sb_block)["hidden_ino"])
        for ino in np.flatnonzero(self.used()).tolist():
            if ino in named or ino in self.entries or ino in orphans or ino in (ROOT_INODE, hidden):
                continue
            rec = self.table[ino]
            if stat.S_ISREG(int(rec["mode"])) and not rec["size"] and not rec["addrs"].any():
                self.clear(ino, "an empty file no directory names")
            else:
                self.reconnect(ino)

    def reach(self, top: int, parent: dict[int, int]) -> None:
        """Every directory under ``top``, with its parent; a directory's second name
        (a loop, or a hard link) is removed."""
        todo = [top]
        while todo:
            d = todo.pop()
            for block, offset, name, target in list(self.entries[d]):
                if name in (b".", b"..") or target not in self.entries:
                    continue
                if target in parent:
                    self.set_ino(block, offset, 0)
                    self.entries[d].remove((block, offset, name, target))
                    self.fix(f"directory {d}: entry {name!r}, a second name of directory "
                             f"{target}; removed")
                    continue
                parent[target] = d
                todo.append(target)

    def dots(self, d: int, parent: int) -> None:
        """'.' and '..' as the first two entries of ``d``'s first block."""
        found = self.entries[d]
        for name, want in ((b".", d), (b"..", parent)):
            hit = next((e for e in found if e[2] == name), None)
            if hit is None and not self.dir_blocks(d):
                return   # no block to hold them (the check says so; nothing to build on)
            if hit is None:
                first = self.dir_blocks(d)[0]
                self.block(first)[:] = np.frombuffer(
                    Directories.init_block(d, parent, kind_code(stat.S_IFDIR)), np.uint8)
                self.fix(f"directory {d}: no {name.decode()!r}; its first block is made again "
                         "(the entries in it are lost)")
                self.entries[d] = [(first, 0, b".", d), (first, 12, b"..", parent)]
                return
            if hit[3] != want:
                self.set_ino(hit[0], hit[1], want)
                self.entries[d][found.index(hit)] = (hit[0], hit[1], name, want)
                self.fix(f"directory {d}: {name.decode()!r} named {hit[3]}, set to {want}")

    def reconnect(self, ino: int) -> int:
        """Name ``ino`` ``#INO`` in /lost+found (made if missing); its new parent, or 0."""
        lf = self.lost_found()
        if not lf:
            return 0
        name = f"#{ino}".encode()
        kind = kind_code(int(self.table[ino]["mode"]))
        if not self.add_entry(lf, name, ino, kind):
            return 0
        self.fix(f"inode {ino}: no directory names it; reconnected as /lost+found/{name.decode()}")
        return lf

    def lost_found(self) -> int:
        hit = next((t for _, _, n, t in self.entries.get(ROOT_INODE, []) if n == LOST_FOUND), 0)
        if hit and hit in self.entries:
            return hit
        free_ino = np.flatnonzero(~self.used())[1:]      # inode 0 is never used
        free_blk = np.flatnonzero(~self.claimed)
        if not len(free_ino) or not len(free_blk):
            return 0
        lf, b = int(free_ino[0]), int(free_blk[0])
        if not self.add_entry(ROOT_INODE, LOST_FOUND, lf, kind_code(stat.S_IFDIR)):
            return 0
        self.claimed[b] = True
        self.block(b)[:] = np.frombuffer(Directories.init_block(lf, ROOT_INODE,
                                                                kind_code(stat.S_IFDIR)), np.uint8)
        self.table[lf] = np.zeros(1, INODE_DTYPE)[0]      # a free slot may hold old bytes
        rec = self.table[lf]
        rec["atime_ns"] = rec["mtime_ns"] = rec["ctime_ns"] = rec["crtime_ns"] = time.time_ns()
        rec["mode"], rec["nlink"] = stat.S_IFDIR | 0o700, 2
        rec["size"], rec["blocks"] = BLOCK_SIZE, 1
        rec["generation"] = 1
        rec["addrs"][0] = b
        self.entries[lf] = [(b, 0, b".", lf), (b, 12, b"..", ROOT_INODE)]
        self.fix("/lost+found made")
        return lf

    def add_entry(self, d: int, name: bytes, ino: int, kind: int) -> bool:
        """Split a record of ``d`` that has room for ``name`` (no new block)."""
        need = dirent_size(len(name))
        for p in self.dir_blocks(d):
            for r in parse_block(self.block(p).tobytes(), d, 0, self.geo.ninodes):
                used = dirent_size(len(r.name)) if r.ino else 0
                if r.rec_len - used < need:
                    continue
                data = memoryview(self.block(p)).cast("B")
                if r.ino:
                    _HEADER.pack_into(data, r.offset, r.ino, used, len(r.name), r.kind)
                at = r.offset + used
                _HEADER.pack_into(data, at, ino, r.rec_len - used, len(name), kind)
                data[at + DIRENT_HEADER_SIZE: at + DIRENT_HEADER_SIZE + len(name)] = name
                self.entries.setdefault(d, []).append((p, at, name, ino))
                return True
        return False

    # -- passes 4 and 5, the orphan list ----------------------------------------------

    def link_counts(self) -> None:
        refs = np.zeros(self.geo.ninodes, dtype=np.int64)
        for found in self.entries.values():
            for _, _, _, target in found:
                refs[target] += 1
        hidden = int(superblock_view(self.sb_block)["hidden_ino"])
        for ino in np.flatnonzero(self.used()).tolist():
            nlink = int(self.table[ino]["nlink"])
            if refs[ino] and nlink != refs[ino] and ino != hidden:
                self.table[ino]["nlink"] = refs[ino]
                self.fix(f"inode {ino}: link count {nlink} set to {int(refs[ino])}")

    def orphan_set(self) -> set[int]:
        seen: set[int] = set()
        ino = int(superblock_view(self.sb_block)["orphan_head"])
        while ino and ino not in seen and 0 < ino < self.geo.ninodes and self.table[ino]["mode"]:
            seen.add(ino)
            ino = int(self.table[ino]["next_orphan"])
        return seen

    def orphans(self) -> None:
        sb = superblock_view(self.sb_block)
        prev, ino, seen = 0, int(sb["orphan_head"]), set()
        while ino:
            if ino in seen or not 0 < ino < self.geo.ninodes or not self.table[ino]["mode"]:
                if prev:
                    self.table[prev]["next_orphan"] = 0
                else:
                    sb["orphan_head"] = 0
                self.fix(f"the orphan list is cut where it breaks (at inode {ino})")
                break
            seen.add(ino)
            prev, ino = ino, int(self.table[ino]["next_orphan"])
        if seen and int(sb["state"]) == STATE_CLEAN:
            sb["state"] = STATE_MOUNTED
            self.fix(f"{len(seen)} inodes on the orphan list: the next mount reclaims them")

    def write(self) -> None:
        """Every block that differs from what this round read, in block order."""
        g = self.geo
        seal_superblock(self.sb_block)
        changed = {n: data for n, data in self.blocks.items()
                   if not np.array_equal(data, self.read_blocks[n])}
        raw = self.table.view(np.uint8).reshape(g.inode_blocks, BLOCK_SIZE)
        was = self.read_table.view(np.uint8).reshape(g.inode_blocks, BLOCK_SIZE)
        for i in np.flatnonzero((raw != was).any(axis=1)).tolist():
            changed[g.inode_start + i] = raw[i].copy()
        if not np.array_equal(self.sb_block, self.read_sb):
            changed[SUPERBLOCK] = self.sb_block
        for n, data in sorted(changed.items()):
            self.device.write_blocks(n, [data])
        self.device.flush()

    def bitmaps(self) -> None:
        """Both bitmaps from the inodes as written (a fresh claim of every block)."""
        again = _Repair(self.device, preen=True)
        for ino in np.flatnonzero(again.used()).tolist():
            again.pointers(ino, again.table[ino])
            again.xattr(ino, again.table[ino])
        g = self.geo
        for start, count, bits, what in (
                (g.bbitmap_start, g.bbitmap_blocks, again.claimed, "block"),
                (g.ibitmap_start, g.ibitmap_blocks, again.used() | (np.arange(g.ninodes) == 0),
                 "inode")):
            old = [self._read(start + i) for i in range(count)]
            want = np.ones(count * BLOCK_SIZE * 8, dtype=bool)  # bits past the end: set
            want[:len(bits)] = bits
            if np.array_equal(bit_array(old, len(want)), want):
                continue
            packed = np.packbits(want, bitorder="little").reshape(count, BLOCK_SIZE)
            for i in range(count):
                self.device.write_blocks(start + i, [packed[i].copy()])
            self.fix(f"{what} bitmap: rebuilt from what the inodes hold")
        self.device.flush()
