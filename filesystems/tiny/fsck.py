"""tiny's checker, read-only: the journal is replayed into a memory overlay, then

1. every inode in use: a known kind, block pointers inside the data area, each block
   claimed once, nothing mapped past the size;
2. the tree from the root: entries name inodes in use, each directory reached once
   and naming its parent, link counts as the entries say;
3. the bitmap: exactly the blocks the inodes claim (and the metadata areas).

Inodes in use that no entry names and with no links are the unlinked-while-open kind
a crash leaves: mount frees them, so they are a note, not a problem.
"""

from __future__ import annotations

import errno
import stat

import numpy as np

from bento_user.api import FsckReport, FsError
from bento_user.blockdev import BlockDevice, OverlayDevice
from bento_user.ks_emul import JournalCorruptError, KernelServices

from . import BS, INODE, MAGIC, NDIRECT, PER, ROOT, SUPER, entries, is_dir, layout


def fsck(device: BlockDevice) -> FsckReport:
    ks = KernelServices(OverlayDevice(device, close_inner=False), cache_blocks=256,
                        commit_interval=None)
    try:
        sb = np.frombuffer(device.read_block(0)[:SUPER.itemsize], SUPER)[0]
        if bytes(sb["magic"]) != MAGIC or {k: int(sb[k]) for k in SUPER.names[1:7]} != layout(device.nblocks):
            raise FsError(errno.EINVAL, f"{device.name}: not a tiny file system")
        try:
            ks.open_journal(1, int(sb["journal"]), bytes(sb["uuid"]))
        except JournalCorruptError as e:  # nothing after it can be trusted
            return FsckReport(problems=[f"journal: {e}"])
        return _Check(ks, {k: int(sb[k]) for k in SUPER.names[1:7]}).run()
    finally:
        ks.discard()


class _Check:
    def __init__(self, ks: KernelServices, g: dict[str, int]) -> None:
        self.ks, self.g, self.report = ks, g, FsckReport(counts={"inodes": 0, "directories": 0})
        self.owner = np.zeros(g["nblocks"], np.int64)   # block -> inode claiming it
        self.owner[:g["data"]] = -1                     # the metadata areas

    def block(self, b: int) -> np.ndarray:
        with self.ks.bread(b) as bh:
            return bh.data.copy()

    def problem(self, text: str) -> None:
        self.report.problems.append(text)

    def run(self) -> FsckReport:
        g = self.g
        self.table = np.concatenate([self.block(b) for b in range(g["itable"], g["bitmap"])]).view(INODE)
        self.maps = {ino: self.blocks(ino) for ino in np.flatnonzero(self.table["mode"]).tolist() if ino}
        self.report.counts["inodes"] = len(self.maps)
        names, seen, todo = {ROOT: 1}, {ROOT}, [ROOT]
        while todo:
            d = todo.pop()
            self.report.counts["directories"] += 1
            subdirs = 0
            for b in self.maps.get(d, []):
                for e in (es := entries(self.block(b)))[es["ino"] != 0]:
                    ino = int(e["ino"])
                    if ino not in self.maps:
                        self.problem(f"directory {d}: entry {bytes(e['name'])[:e['len']]!r} names free inode {ino}")
                    elif is_dir(self.table[ino]):
                        subdirs += 1
                        if ino in seen or self.table[ino]["parent"] != d:
                            self.problem(f"directory {ino}: reached twice or its parent is not {d}")
                        if ino not in seen:  # a cycle is walked once
                            seen.add(ino)
                            todo.append(ino)
                    names[ino] = names.get(ino, 0) + 1
            if self.table[d]["nlink"] != 2 + subdirs:
                self.problem(f"directory {d}: link count {self.table[d]['nlink']}, should be {2 + subdirs}")
        for ino in self.maps:
            nlink = int(self.table[ino]["nlink"])
            if ino not in names and nlink == 0:
                self.report.notes.append(f"inode {ino} has no name or link: mount frees it")
            elif not is_dir(self.table[ino]) and nlink != names.get(ino, 0):
                self.problem(f"inode {ino}: link count {nlink}, named {names.get(ino, 0)} times")
        bits = np.concatenate([self.block(b) for b in range(g["bitmap"], g["data"])])
        on_disk = np.unpackbits(bits, bitorder="little")[:g["nblocks"]].astype(bool)
        for b in np.flatnonzero(on_disk != (self.owner != 0))[:20].tolist():
            self.problem(f"block {b}: the bitmap says {'used' if on_disk[b] else 'free'}, the inodes disagree")
        return self.report

    def blocks(self, ino: int) -> list[int]:
        """Claim inode ``ino``'s blocks; its directory blocks in order (for pass 2)."""
        r, out = self.table[ino], []
        if stat.S_IFMT(int(r["mode"])) not in (stat.S_IFREG, stat.S_IFDIR):
            self.problem(f"inode {ino}: unknown kind {int(r['mode']):o}")
            return out
        todo = [(int(p), lblk, 0) for lblk, p in enumerate(r["addrs"][:NDIRECT])]
        todo += [(int(r["addrs"][NDIRECT + k]), NDIRECT + k * PER, 1) for k in (0, 1)]
        while todo:
            p, first, depth = todo.pop(0)
            if not p:
                continue
            if not self.g["data"] <= p < self.g["nblocks"] or self.owner[p]:
                self.problem(f"inode {ino}: block {p} outside the data area or claimed twice")
                continue
            self.owner[p] = ino
            if first * BS >= int(r["size"]):
                self.problem(f"inode {ino}: block {p} maps past the size {int(r['size'])}")
            if depth:
                todo += [(int(c), first + j * PER ** (depth - 1), depth - 1)
                         for j, c in enumerate(self.block(p).view("<u4")) if c]
            elif is_dir(r):
                out.append(p)
        return out
