"""The kernel's references to inodes, counted by the runtime for a file system that
asks for it by overriding ``Filesystem.evict`` — as Linux's VFS counts them for its
file systems, which only hear ``evict_inode`` when the last reference is gone.

The kernel holds an inode through lookups and through open handles:

- each ``Attr`` returned by lookup, lookup_inode, create, mknod, mkdir, symlink and
  link is one lookup; ``forget`` gives lookups back;
- each handle returned by open, create or opendir is one reference until its
  release or releasedir.

When both are gone, ``evict(ino)`` is called (after the forget or release that
dropped the last one, under the same gate, lock and undo scope): there a file system
frees an inode whose links are gone, and needs no count of its own. xv6 keeps its
own, which its inode cache needs anyway, and so does not override ``evict``.

The counts are the runtime's, so a live upgrade or the guard's reload keeps them;
they start at mount, so an upgrade cannot bring ``evict`` to a mount that did not
count (upgrade.py refuses it). A handle must be unique among the open ones of its
kind (files, directories), which the FUSE runtime requires anyway.
"""

from __future__ import annotations

import threading
from typing import Any

from ..api import Filesystem

LOOKUPS = frozenset({"lookup", "lookup_inode", "mknod", "mkdir", "symlink", "link"})
COUNTED = LOOKUPS | {"create", "open", "opendir", "forget", "release", "releasedir"}


def wanted(cls: type[Filesystem]) -> bool:
    """Whether ``cls`` asks the runtime to count (it overrides ``evict``)."""
    return cls.evict is not Filesystem.evict


class References:
    """Lookups and open handles per inode; ``after`` says which inodes just lost
    their last one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # calls of a file system that is not serial overlap
        self._counts: dict[int, int] = {}
        self._handles: dict[tuple[bool, int], int] = {}  # (directory?, handle) -> inode

    def held(self, ino: int) -> int:
        """The references the kernel holds to ``ino`` (0: none)."""
        return self._counts.get(ino, 0)

    def after(self, op: str, args: tuple[Any, ...], result: Any) -> list[int]:
        """Count what the successful call ``op(*args)`` returned or gave back; the
        inodes it left with no reference."""
        with self._lock:
            if op in LOOKUPS:
                self._add(result.ino, 1)
            elif op == "create":
                attr, fh = result
                self._add(attr.ino, 2)
                self._handles[False, int(fh)] = attr.ino
            elif op in ("open", "opendir"):
                self._add(args[1], 1)
                self._handles[op == "opendir", int(result)] = args[1]
            elif op == "forget":
                return [ino for ino, n in args[0] if self._drop(ino, n)]
            elif op in ("release", "releasedir"):
                ino = self._handles.pop((op == "releasedir", int(args[0])), None)
                if ino is not None and self._drop(ino, 1):
                    return [ino]
        return []

    def _add(self, ino: int, n: int) -> None:
        self._counts[ino] = self._counts.get(ino, 0) + n

    def _drop(self, ino: int, n: int) -> bool:
        """Take ``n`` away; True if that was the last. A count the kernel gives back
        beyond what was counted is ignored: only what was counted ends in an evict."""
        left = self._counts.get(ino, 0) - n
        if left > 0:
            self._counts[ino] = left
            return False
        return self._counts.pop(ino, None) is not None
