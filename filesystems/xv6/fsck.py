"""fsck: check every invariant of an xv6 v2 image, in e2fsck's passes. Read-only.

0. superblock; journal (replayed into a memory overlay, never onto the image)
1. inodes: legal types; block pointers in range and claimed once; block counts; sizes
2. directories: record structure, '.' and '..', names, targets in use, entry types
3. connectivity: every directory reachable from the root exactly once, no loops
4. link counts: nlink equals the entries naming the inode
5. bitmaps: on-disk inode and block bitmaps equal what the tree uses
plus the orphan list (inodes waiting to be reclaimed at the next mount).

Every size and count is bounded before use and every walk carries a budget, so a
corrupt image ends in a report, never a hang.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence

import numpy as np

from bento_user.api import FsckReport, FsError, Progress, acl
from bento_user.blockdev import BlockDevice, OverlayDevice
from bento_user.ks_emul import JournalCorruptError, KernelServices

from . import _xattr as xattr
from ._dir import parse_block
from ._format import (
    MAX_FILE_SIZE,
    BLOCK_SIZE,
    FORMAT_KINDS,
    INODE_DTYPE,
    INODES_PER_BLOCK,
    JOURNAL_START,
    NDIRECT,
    ROOT_INODE,
    STATE_CLEAN,
    SUPERBLOCK,
    SYMLINK_MAX,
    Geometry,
    bit_array,
    kind_code,
    read_errors,
    read_geometry,
    superblock_view,
)

COUNTS = ("inodes", "directories", "data blocks")  # the summary line's, in this order


class _Checker:
    MAX_PROBLEMS = 1000

    def __init__(self, device: BlockDevice, progress: Progress | None) -> None:
        self.overlay = OverlayDevice(device, close_inner=False)  # the caller's
        self.ks = KernelServices(self.overlay, cache_blocks=1024, commit_interval=None)
        self.report = FsckReport(counts=dict.fromkeys(COUNTS, 0))
        self.progress = progress or (lambda step, fraction: None)
        self.kinds: dict[int, str] = {}  # block -> what it is, file data left out
        self.leaf = "data"  # what the inode being walked keeps in its blocks

    def problem(self, message: str) -> None:
        if len(self.report.problems) < self.MAX_PROBLEMS:
            self.report.problems.append(message)

    def block(self, n: int) -> np.ndarray:
        with self.ks.bread(n) as bh:
            return bh.data.copy()

    # -- pass 0 ------------------------------------------------------------------

    def superblock_and_journal(self, name: str) -> None:
        sb_block = self.block(SUPERBLOCK)
        geo = read_geometry(sb_block, self.overlay.nblocks, name)  # FsError: operational
        self.uuid = bytes(superblock_view(sb_block)["uuid"])
        try:
            _, report = self.ks.open_journal(JOURNAL_START, geo.journal_blocks, self.uuid)
        except JournalCorruptError as e:
            self.problem(f"journal: {e}")
            report = None
        if report is not None and report.needed:
            self.report.notes.append(
                f"journal: replayed transactions {report.first_tid}..{report.last_tid} "
                f"({report.blocks_replayed} blocks) in memory; mounting replays them for real")
            sb_block = self.block(SUPERBLOCK)
            geo = read_geometry(sb_block, self.overlay.nblocks, name)
        self.geo = geo
        sb = superblock_view(sb_block)
        self.orphan_head = int(sb["orphan_head"])
        self.hidden = int(sb["hidden_ino"])  # named by the superblock, by no directory
        self.clean_state = int(sb["state"]) == STATE_CLEAN
        if not self.clean_state:
            self.report.notes.append("the file system was not unmounted cleanly")
        if (errors := read_errors(sb_block)) is not None:
            first = f" (the first: {errors.first})" if errors.count > 1 else ""
            self.report.notes.append(f"the file system {errors.summary()}{first}")

    # -- pass 1 ------------------------------------------------------------------

    def inodes(self) -> None:
        g = self.geo
        table = np.empty(g.ninodes, dtype=INODE_DTYPE)
        for i in range(g.inode_blocks):
            table[i * INODES_PER_BLOCK:(i + 1) * INODES_PER_BLOCK] = self.block(g.inode_start + i).view(INODE_DTYPE)
            if i % 256 == 0:
                self.progress("pass 1: inodes", i / g.inode_blocks)
        self.table = table
        self.used = table["mode"] != 0
        self.used[0] = False
        self.owner = np.full(g.nblocks, -1, dtype=np.int64)
        self.owner[: g.data_start] = 0
        self.data_blocks: dict[int, list[int]] = {}  # dirs and symlinks: logical order
        used = np.flatnonzero(self.used)
        for n, ino in enumerate(used.tolist()):
            if n % 1024 == 0:
                self.progress("pass 1: inodes", n / max(1, len(used)))
            self.inode(ino, table[ino])
        self.report.counts["inodes"] = len(used)

    def inode(self, ino: int, rec: np.void) -> None:
        mode, size = int(rec["mode"]), int(rec["size"])
        kind = stat.S_IFMT(mode)
        if kind not in FORMAT_KINDS:
            self.problem(f"inode {ino}: unknown file type {kind:#o}")
            self.used[ino] = False
            return
        counted = 0
        mapped: list[tuple[int, int]] = []
        budget = [self.geo.nblocks]
        addrs = [int(a) for a in rec["addrs"]]
        self.leaf = {stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink"}.get(kind, "data")
        for lblk in range(NDIRECT):
            if addrs[lblk] and self.claim(ino, addrs[lblk]):
                mapped.append((lblk, addrs[lblk]))
        bases = (NDIRECT, NDIRECT + 1024, NDIRECT + 1024 + 1024**2)
        for level in (1, 2, 3):
            p = addrs[NDIRECT + level - 1]
            if p:
                counted += self.walk(ino, p, level, bases[level - 1], mapped, budget)
        xb = int(rec["xattr_block"])
        if xb and self.claim(ino, xb, "xattr"):
            counted += 1 + self.xattrs(ino, xb)
        counted += len(mapped)
        if counted != int(rec["blocks"]):
            self.problem(f"inode {ino}: block count {int(rec['blocks'])}, but it holds {counted}")
        last = max((lblk for lblk, _ in mapped), default=-1)
        if size > MAX_FILE_SIZE:
            self.problem(f"inode {ino}: size {size} beyond the largest file")
        if kind == stat.S_IFREG and last >= 0 and last * BLOCK_SIZE >= size:
            self.problem(f"inode {ino}: block {last} lies past its size {size}")
        if kind == stat.S_IFDIR:
            self.report.counts["directories"] += 1
            lblks = [lblk for lblk, _ in mapped]
            if size % BLOCK_SIZE or size // BLOCK_SIZE != len(lblks) or lblks != list(range(len(lblks))):
                self.problem(f"directory {ino}: size {size} does not match its blocks")
            self.data_blocks[ino] = [p for _, p in mapped]
        elif kind == stat.S_IFLNK:
            if not 0 < size <= SYMLINK_MAX or [l for l, _ in mapped] != [0]:
                self.problem(f"symlink {ino}: size {size} does not match its target block")
        elif kind not in (stat.S_IFREG,) and mapped:
            self.problem(f"inode {ino}: a special file with data blocks")

    def claim(self, ino: int, p: int, kind: str | None = None) -> bool:
        if not self.geo.data_start <= p < self.geo.nblocks:
            where = "outside the device" if p >= self.geo.nblocks else "inside the metadata area"
            self.problem(f"inode {ino}: block pointer {p} {where}")
            return False
        if self.owner[p] != -1:
            self.problem(f"block {p} is claimed by inode {self.owner[p]} and inode {ino}")
            return False
        self.owner[p] = ino
        if (kind := kind or self.leaf) != "data":
            self.kinds[p] = kind
        return True

    def xattrs(self, ino: int, xb: int) -> int:
        """Check an inode's extended attributes (one block, or an index and the blocks
        it names); returns the blocks claimed besides ``xb``."""
        head = self.block(xb).tobytes()
        if head[:4] != xattr.INDEX_MAGIC:
            self.decode_xattrs(ino, [xb], BLOCK_SIZE)
            return 0
        self.kinds[xb] = "xattr index"
        try:
            blocks, length = xattr.parse_index(head, ino, lambda b: b)
        except FsError as e:
            self.problem(e.strerror or f"inode {ino}: extended-attribute index unreadable")
            return 0
        claimed = [b for b in blocks if self.claim(ino, b, "xattr")]
        if len(claimed) == len(blocks):
            self.decode_xattrs(ino, blocks, length)
        return len(claimed)

    def decode_xattrs(self, ino: int, blocks: list[int], length: int) -> None:
        """The stream parses, and the ACLs in it are ACLs (the kernel would refuse
        to enforce a broken one, and answer EIO for the file)."""
        try:
            attrs = xattr.decode(b"".join(self.block(b).tobytes() for b in blocks)[:length], ino)
        except FsError as e:
            self.problem(e.strerror or f"inode {ino}: extended attributes unreadable")
            return
        for name in acl.NAMES:
            try:
                if name in attrs:
                    acl.parse(attrs[name])
            except FsError as e:
                self.problem(f"inode {ino}: {name.decode()} is {e.strerror}")

    def walk(self, ino: int, p: int, level: int, base: int, mapped: list[tuple[int, int]],
             budget: list[int]) -> int:
        """Claim an indirect block and what it points to; returns indirect blocks claimed."""
        if not self.claim(ino, p, f"indirect-{level}"):
            return 0
        ptrs = self.block(p).view("<u4")
        nz = np.flatnonzero(ptrs)
        budget[0] -= len(nz)
        if budget[0] < 0:
            self.problem(f"inode {ino}: maps more blocks than the device has")
            return 1
        span = 1024 ** (level - 1)
        count = 1
        for i in nz.tolist():
            q = int(ptrs[i])
            if level == 1:
                if self.claim(ino, q):
                    mapped.append((base + i, q))
            else:
                count += self.walk(ino, q, level - 1, base + i * span, mapped, budget)
        return count

    # -- passes 2 and 3 ----------------------------------------------------------

    def directories(self) -> None:
        self.refs = np.zeros(self.geo.ninodes, dtype=np.int64)
        self.entries: dict[int, list[tuple[bytes, int, int]]] = {}
        total = max(1, len(self.data_blocks))
        for n, (ino, blocks) in enumerate(self.data_blocks.items()):
            if n % 256 == 0:
                self.progress("pass 2: directories", n / total)
            self.directory(ino, blocks)

    def directory(self, ino: int, blocks: list[int]) -> None:
        found: list[tuple[bytes, int, int]] = []
        for lblk, p in enumerate(blocks):
            try:
                records = parse_block(self.block(p).tobytes(), ino, lblk, self.geo.ninodes)
            except FsError as e:
                self.problem(str(e.strerror))
                continue
            found.extend((r.name, r.ino, r.kind) for r in records if r.ino)
        names = [f[0] for f in found]
        if names[:2] != [b".", b".."]:
            self.problem(f"directory {ino}: does not start with '.' and '..'")
        elif found[0][1] != ino:
            self.problem(f"directory {ino}: '.' names inode {found[0][1]}")
        if len(set(names)) != len(names):
            self.problem(f"directory {ino}: a name appears twice")
        for name, target, kind in found:
            if b"/" in name or b"\0" in name:
                self.problem(f"directory {ino}: invalid name {name!r}")
            if not self.used[target]:
                self.problem(f"directory {ino}: {name!r} names free inode {target}")
                continue
            if kind != kind_code(int(self.table[target]["mode"])):
                self.problem(f"directory {ino}: {name!r} has the wrong type for inode {target}")
            self.refs[target] += 1
        self.entries[ino] = found

    def connectivity(self) -> None:
        self.progress("pass 3: connectivity", 0)
        if ROOT_INODE not in self.entries:
            self.problem("the root inode is not a directory")
            return
        parent = {ROOT_INODE: ROOT_INODE}
        todo = [ROOT_INODE]
        while todo:
            d = todo.pop()
            for name, target, _ in self.entries.get(d, []):
                if name in (b".", b"..") or target not in self.entries:
                    continue
                if target in parent:
                    self.problem(f"directory {target} has a second name {name!r} in {d} (a loop)")
                    continue
                parent[target] = d
                todo.append(target)
        for d, found in self.entries.items():
            if d not in parent:
                if not self.orphan(d):
                    self.problem(f"directory {d} is not reachable from the root")
                continue
            dotdot = next((t for n, t, _ in found if n == b".."), None)
            if dotdot is not None and dotdot != parent[d]:
                self.problem(f"directory {d}: '..' names {dotdot}, its parent is {parent[d]}")

    # -- passes 4 and 5 ------------------------------------------------------------

    def orphans(self) -> None:
        self.orphan_set: set[int] = set()
        ino = self.orphan_head
        while ino:
            if ino in self.orphan_set or len(self.orphan_set) > self.geo.ninodes:
                self.problem(f"the orphan list loops at inode {ino}")
                break
            if not 0 < ino < self.geo.ninodes or not self.used[ino]:
                self.problem(f"the orphan list names free inode {ino}")
                break
            self.orphan_set.add(ino)
            ino = int(self.table[ino]["next_orphan"])
        if self.orphan_set and self.clean_state:
            # an unmount closes every file first, and a mount reclaims what a crash left
            self.problem(f"{len(self.orphan_set)} inodes on the orphan list of a cleanly "
                         "unmounted file system (a mount did not reclaim them)")
        elif self.orphan_set:
            self.report.notes.append(f"{len(self.orphan_set)} inodes on the orphan list "
                                     "(reclaimed at the next mount)")

    def orphan(self, ino: int) -> bool:
        return ino in self.orphan_set

    def link_counts(self) -> None:
        self.progress("pass 4: link counts", 0)
        if self.hidden:
            rec = self.table[self.hidden]
            if not self.used[self.hidden] or not stat.S_ISREG(int(rec["mode"])):
                self.problem(f"the hidden inode {self.hidden} is not a regular file in use")
            elif int(rec["nlink"]) != 1 or self.refs[self.hidden]:
                self.problem(f"the hidden inode {self.hidden}: link count {int(rec['nlink'])} "
                             f"and {int(self.refs[self.hidden])} entries (1 and none expected)")
            else:
                self.report.notes.append(f"hidden inode {self.hidden}: {int(rec['size']):,} "
                                         "bytes (provenance records)")
        for ino in np.flatnonzero(self.used).tolist():
            nlink, refs = int(self.table[ino]["nlink"]), int(self.refs[ino])
            if ino == self.hidden:
                continue
            if nlink == 0 and refs == 0 and self.orphan(ino):
                continue
            if refs == 0 and not self.orphan(ino):
                self.problem(f"inode {ino} is in use but no directory names it")
            elif nlink != refs:
                self.problem(f"inode {ino}: link count {nlink}, but {refs} entries name it")

    def bitmaps(self) -> None:
        self.progress("pass 5: bitmaps", 0)
        g = self.geo
        blocks = [self.block(g.bbitmap_start + i) for i in range(g.bbitmap_blocks)]
        on_disk = bit_array(blocks, g.bbitmap_blocks * BLOCK_SIZE * 8)
        in_use = self.owner != -1
        self.report.counts["data blocks"] = int(np.count_nonzero(in_use[g.data_start:]))
        for what, bad in (("used but marked free", in_use & ~on_disk[: g.nblocks]),
                          ("marked used but not in use", ~in_use & on_disk[: g.nblocks])):
            n = np.flatnonzero(bad)
            if len(n):
                self.problem(f"block bitmap: {len(n)} blocks {what} (first {int(n[0])})")
        if not on_disk[g.nblocks:].all():
            self.problem("block bitmap: bits past the end of the device are not set")
        iblocks = [self.block(g.ibitmap_start + i) for i in range(g.ibitmap_blocks)]
        ion_disk = bit_array(iblocks, g.ninodes)
        iused = self.used.copy()
        iused[0] = True
        for what, bad in (("used but marked free", iused & ~ion_disk),
                          ("marked used but free", ~iused & ion_disk)):
            n = np.flatnonzero(bad)
            if len(n):
                self.problem(f"inode bitmap: {len(n)} inodes {what} (first {int(n[0])})")


def fsck(device: BlockDevice, progress: Progress | None = None) -> FsckReport:
    """Check the file system on ``device`` without changing it.

    Raises FsError (EUCLEAN) when the device does not hold an xv6 v2 file system at
    all (a bad superblock); every other finding is in the report.
    """
    c = _Checker(device, progress)
    try:
        c.superblock_and_journal(device.name)
        c.inodes()
        c.orphans()
        c.directories()
        c.connectivity()
        c.link_counts()
        c.bitmaps()
    finally:
        c.ks.discard()  # the overlay took every write: nothing reaches the image
    return c.report


def block_kinds(device: BlockDevice, blocks: Sequence[int]) -> dict[int, str]:
    """What each of ``blocks`` is, by the layout and pass 1's walk of the inodes."""
    c = _Checker(device, None)
    try:
        c.superblock_and_journal(device.name)
        c.inodes()
    finally:
        c.ks.discard()  # the overlay took every write: nothing reaches the image
    g = c.geo
    areas = [(0, "boot block"), (SUPERBLOCK, "superblock"), (JOURNAL_START, "journal"),
             (g.inode_start, "inodes"), (g.ibitmap_start, "inode bitmap"),
             (g.bbitmap_start, "block bitmap"), (g.data_start, None)]
    out = {}
    for b in blocks:
        area = next((what for start, what in reversed(areas) if b >= start), None)
        if area is None and b < g.nblocks:
            area = c.kinds.get(b, "file data" if c.owner[b] != -1 else "free")
        if area is not None:
            out[b] = area
    return out


def geometry(device: BlockDevice) -> Geometry:
    """The layout of the file system on ``device`` (validated)."""
    return read_geometry(np.frombuffer(device.read_block(SUPERBLOCK), np.uint8), device.nblocks,
                         device.name)
