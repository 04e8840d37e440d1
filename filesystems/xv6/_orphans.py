"""The orphan list: inodes whose freeing (or shrinking) a crash must not interrupt.

An inode goes on the list in the same transaction that takes its last name, or that
starts a truncate; it comes off when it has been freed or the truncate is done. The
list lives on disk as a chain — the superblock's ``orphan_head``, then each inode's
``next_orphan`` — and in memory linked both ways (``_next``, ``_prev``), so that
adding and removing one anywhere costs the same however long the list is (an unmount
that frees 50,000 unlinked inodes used to spend most of a minute finding each one in
a Python list). Mount finishes whatever the list still holds (the file layer's
``recover_orphans``).

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
        self.head = 0
        self._next: dict[int, int] = {}  # ino -> the one after it on the chain (0: none)
        self._prev: dict[int, int] = {}  # ino -> the one before it (0: it is the head)

    def __contains__(self, ino: int) -> bool:
        return ino in self._next

    @property
    def inos(self) -> list[int]:
        """The chain, head first (a live upgrade hands it over)."""
        out, ino = [], self.head
        while ino:
            out.append(ino)
            ino = self._next[ino]
        return out

    @inos.setter
    def inos(self, chain: list[int]) -> None:
        self.head = chain[0] if chain else 0
        self._next = dict(zip(chain, [*chain[1:], 0]))
        self._prev = dict(zip(chain, [0, *chain[:-1]]))

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
            ip.next_orphan = old = self.head
            self._next[ip.ino], self._prev[ip.ino] = old, 0
            if old:
                self._prev[old] = ip.ino
            self.head = ip.ino
            ip.orphan = True
            update_superblock(self.ks, h, orphan_head=ip.ino)
        self.icache.iupdate(h, ip)

    def remove(self, h: Handle, ip: Inode) -> None:
        """Take ``ip`` off the list, inside ``h``: its predecessor (or the
        superblock) points past it."""
        with self.lock:
            if not ip.orphan:
                return
            prev, nxt = self._prev.pop(ip.ino), self._next.pop(ip.ino)
            if nxt:
                self._prev[nxt] = prev
            ip.orphan = False
            ip.next_orphan = 0
            if not prev:
                self.head = nxt
                update_superblock(self.ks, h, orphan_head=nxt)
            else:
                self._next[prev] = nxt
                before = self.icache.iget(prev)
                before.next_orphan = nxt
                self.icache.iupdate(h, before)
        self.icache.iupdate(h, ip)
