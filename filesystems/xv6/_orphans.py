"""The orphan list: inodes whose freeing (or shrinking) a crash must not interrupt.

An inode goes on the list in the same transaction that takes its last name, or that
starts a truncate; it comes off when it has been freed or the truncate is done. The
list lives on disk as a chain — the superblock's ``orphan_head``, then each inode's
``next_orphan`` — and in memory as ``inos`` (head first), so that removing one from
the middle needs no walk of the disk. Mount finishes whatever the list still holds
(the file layer's ``recover_orphans``).

``lock`` (the ``xv6.orphans`` mutex) is a leaf: taken inside a journal handle.
"""

from __future__ import annotations

from bento_user.api import corrupt
from bento_user.ks_emul import Handle, KernelServices

from ._format import SUPERBLOCK, superblock_view, update_superblock
from ._icache import InodeCache
from ._inode import Inode


class OrphanList:
    def __init__(self, ks: KernelServices, icache: InodeCache) -> None:
        self.ks, self.icache = ks, icache
        self.lock = ks.mutex("xv6.orphans")
        self.inos: list[int] = []  # the on-disk chain, head first

    def __contains__(self, ino: int) -> bool:
        return ino in self.inos

    def load(self) -> list[Inode]:
        """Read the chain from disk (mount), marking each inode an orphan."""
        with self.ks.bread(SUPERBLOCK) as bh:
            ino = int(superblock_view(bh.data)["orphan_head"])
        chain: list[Inode] = []
        seen: set[int] = set()
        while ino:
            if len(chain) >= self.icache.geo.ninodes or ino in seen:
                raise corrupt(f"{self.ks.device.name}: the orphan list loops at inode {ino}")
            ip = self.icache.iget(ino)
            ip.orphan = True
            chain.append(ip)
            seen.add(ino)
            ino = ip.next_orphan
        self.inos = [ip.ino for ip in chain]
        return chain

    def add(self, h: Handle, ip: Inode) -> None:
        """Put ``ip`` at the head of the list, inside ``h``."""
        with self.lock:
            if ip.orphan:
                return
            ip.next_orphan = self.inos[0] if self.inos else 0
            self.inos.insert(0, ip.ino)
            ip.orphan = True
            update_superblock(self.ks, h, orphan_head=ip.ino)
        self.icache.iupdate(h, ip)

    def remove(self, h: Handle, ip: Inode) -> None:
        """Take ``ip`` off the list, inside ``h``: its predecessor (or the
        superblock) points past it."""
        with self.lock:
            if not ip.orphan:
                return
            i = self.inos.index(ip.ino)
            nxt = self.inos[i + 1] if i + 1 < len(self.inos) else 0
            del self.inos[i]
            ip.orphan = False
            ip.next_orphan = 0
            if i == 0:
                update_superblock(self.ks, h, orphan_head=nxt)
            else:
                prev = self.icache.iget(self.inos[i - 1])
                prev.next_orphan = nxt
                self.icache.iupdate(h, prev)
        self.icache.iupdate(h, ip)
