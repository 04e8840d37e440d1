"""Negative dentries: the names the kernel may remember as missing.

A lookup that finds nothing is answered with inode 0 and a timeout, and the kernel
keeps that answer (a negative dentry) for so long: a compiler probing an include
path, Python probing sys.path or git probing for config files asks once, not at
every probe. Safe because every name is made through this kernel, which turns the
negative dentry positive when it makes the name. What the kernel cannot know is a
live upgrade: new code may find a name the old code missed (a fixed lookup), so
the runtime records what it let the kernel keep and makes it forget all of it.
"""

from __future__ import annotations

import errno
import logging
import time

import pyfuse3

log = logging.getLogger("bento.fuse")


class NegativeEntries:
    """The names the kernel may remember as missing, and until when: after a live
    upgrade the new code may find a name the old one did not (a fixed lookup), so
    the runtime makes the kernel forget them all. Bounded: when ``KEPT`` are still
    remembered, a further missing name is answered without letting the kernel keep
    it, so every negative dentry the kernel holds is one this record knows."""

    KEPT = 65536

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._until: dict[tuple[int, bytes], float] = {}  # oldest first: one timeout

    def add(self, parent: int, name: bytes) -> bool:
        """Whether the kernel may keep this missing name (then it is recorded)."""
        if not self.timeout:
            return False
        now, until = time.monotonic(), self._until
        while until and next(iter(until.values())) < now:
            del until[next(iter(until))]
        if len(until) >= self.KEPT:
            return False
        until.pop((parent, name), None)  # again: to the young end
        until[parent, name] = now + self.timeout
        return True

    def made(self, parent: int, name: bytes) -> None:
        """The kernel made this name: its dentry is no longer negative, and dropping
        it at an upgrade would only cost a lookup."""
        if self._until:
            self._until.pop((parent, name), None)

    def take(self) -> dict[tuple[int, bytes], float]:
        """What the kernel may remember now, for ``drop``; the record starts afresh.
        In the thread that answers lookups (trio's), so none is added meanwhile."""
        taken, self._until = self._until, {}
        return taken

    @staticmethod
    def drop(entries: dict[tuple[int, bytes], float]) -> int:
        """Make the kernel forget these negative dentries; how many it still had.
        Blocks on the kernel: from a thread, never from a request handler."""
        now, dropped = time.monotonic(), 0
        for (parent, name), until in entries.items():
            if until >= now:
                try:
                    pyfuse3.invalidate_entry(parent, name)
                    dropped += 1
                except OSError as e:  # the directory is gone from the kernel: so is the name
                    if e.errno != errno.ENOENT:
                        log.warning("the kernel kept a negative entry %r: %s", name, e)
        return dropped
