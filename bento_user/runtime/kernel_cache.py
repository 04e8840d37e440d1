"""What the kernel keeps of the file system's answers beyond a request, and how a
live upgrade makes it forget them.

Two caches that spare round trips on every walk of a tree:

- Negative dentries. A lookup that finds nothing is answered with inode 0 and a
  timeout, and the kernel keeps that answer: a compiler probing an include path,
  Python probing sys.path or git probing for config files asks once, not at every
  probe.
- Directory entries. A directory opened with ``cache_readdir`` and ``keep_cache``
  keeps its entries in the kernel's page cache across opens (third_party/pyfuse3's
  cache-readdir.patch): ``git status``, ``find`` or ``ls`` of an unchanged
  directory sends no READDIRPLUS and none of the lookups each entry costs.

Both are safe because every name is made and removed through this kernel, which
turns a negative dentry positive when it makes the name and drops a directory's
cached entries when it changes the directory. What the kernel cannot know is a
live upgrade: new code may find a name the old code missed, or list a directory
otherwise (a fixed lookup, a fixed readdir). So the runtime records what it let
the kernel keep and, after each upgrade, makes it forget all of it.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyfuse3

log = logging.getLogger("bento.fuse")


@dataclass
class Stale:
    """What the kernel may still hold from the old code, taken at an upgrade."""

    negatives: dict[tuple[int, bytes], float]  # (parent, name) -> until when
    dirs: set[int]

    def drop(self) -> None:
        """Make the kernel forget it. Blocks on the kernel: call from a thread,
        never from a request handler."""
        now = time.monotonic()
        for (parent, name), until in self.negatives.items():
            if until >= now:
                _quietly(pyfuse3.invalidate_entry, parent, name)
        for ino in self.dirs:
            _quietly(pyfuse3.invalidate_inode, ino, False)


def _quietly(invalidate: Callable[..., object], *args: object) -> None:
    try:
        invalidate(*args)
    except OSError as e:  # ENOENT: the kernel no longer holds the inode, nor its cache
        if e.errno != errno.ENOENT:
            log.warning("the kernel kept what %r said: %s", args, e)


class KernelCache:
    """The record. Bounded: when ``KEPT`` missing names are still remembered, a
    further one is answered without letting the kernel keep it, so every negative
    dentry the kernel holds is one this record knows. Directories are recorded
    while the kernel holds their inodes (a forget drops the inode's pages too).
    Used from the thread that answers requests (trio's) only."""

    KEPT = 65536

    def __init__(self, negative_timeout: float, cache_dirs: bool) -> None:
        self.negative_timeout = negative_timeout
        self.cache_dirs = cache_dirs
        self._until: dict[tuple[int, bytes], float] = {}  # oldest first: one timeout
        self._dirs: set[int] = set()

    def missing(self, parent: int, name: bytes) -> bool:
        """Whether the kernel may keep this missing name (then it is recorded)."""
        if not self.negative_timeout:
            return False
        now, until = time.monotonic(), self._until
        while until and next(iter(until.values())) < now:
            del until[next(iter(until))]
        if len(until) >= self.KEPT:
            return False
        until.pop((parent, name), None)  # again: to the young end
        until[parent, name] = now + self.negative_timeout
        return True

    def made(self, parent: int, name: bytes) -> None:
        """The kernel made this name: its dentry is no longer negative, and dropping
        it at an upgrade would only cost a lookup."""
        if self._until:
            self._until.pop((parent, name), None)

    def opened_dir(self, ino: int) -> bool:
        """Whether the kernel may cache this directory's entries (then recorded)."""
        if self.cache_dirs:
            self._dirs.add(ino)
        return self.cache_dirs

    def forgotten(self, inos: Iterable[int]) -> None:
        if self._dirs:
            self._dirs.difference_update(inos)

    def take(self) -> Stale:
        """What the kernel may hold now, for ``Stale.drop``; the record starts afresh."""
        stale = Stale(self._until, self._dirs)
        self._until, self._dirs = {}, set()
        return stale
