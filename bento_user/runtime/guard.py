"""A call that fails leaves no trace: the runtime undoes what a failed operation
changed and reloads the file system from the blocks as they were.

A file system's operation that raises anything but a plain ``FsError`` — a bug, an
unexpected error below it, a corrupt block (``FsError`` EUCLEAN or EIO) — may have
changed blocks and memory half-way. ``Guard.call`` wraps every runtime call (FUSE
and direct) in an undo scope of the journal (ks_emul/_undo.py): if the call fails
so, its journaled blocks are put back as they were before it, and the file system
instance is replaced by a fresh one built from those blocks and the old one's
runtime state — the live upgrade's path (upgrade.py), to the same class. The next
call sees the file system as if the failed one had never been made. The error still
reaches the caller (EIO through FUSE).

Where that cannot be done — no journal, no live upgrade, or the undo itself fails —
the guard stops trusting the file system's memory for changes: every later change
answers EROFS, with the reason logged and shown by ``bento stat``. Plain ``FsError``s
are the file system's own answers and must leave no trace by its contract
(api/_filesystem.py): the guard does not touch them.

A corrupt block met (EUCLEAN) is also recorded, as ext4 records it: a log line
naming what was met, the file system's ``record_error`` (a count on its disk that the
next mount, ``bento stat`` and fsck report; not on a read-only mount), and the mount's
``errors=`` policy: ``continue`` (the default, as ext4's) or ``remount-ro``, after
which every change answers EROFS.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import time
from typing import Any

from ..api import FsError
from ..ks_emul import KernelServices
from . import upgrade
from ._dispatch import Dispatcher

log = logging.getLogger("bento.guard")

UNTRUSTED = frozenset({errno.EUCLEAN, errno.EIO})  # FsErrors that mean "I broke"
CHANGES = frozenset({"mknod", "mkdir", "symlink", "link", "unlink", "rmdir", "rename",
                     "setattr", "create", "write", "fallocate", "setxattr", "removexattr"})
_ACCMODE = os.O_RDONLY | os.O_WRONLY | os.O_RDWR
ON_ERRORS = ("continue", "remount-ro")  # the errors= mount option's values


class Guard:
    """Calls the dispatcher's file system; undoes and reloads after a failure."""

    def __init__(self, dispatch: Dispatcher, ks: KernelServices, *,
                 on_errors: str = "continue", record_errors: bool = True) -> None:
        assert on_errors in ON_ERRORS
        self.dispatch = dispatch
        self.ks = ks
        self.undone = 0  # failed operations undone
        self.read_only: str | None = None  # why changes are refused, once they are
        self.remounted_read_only = False  # mount -o remount,ro; remount,rw clears it
        self.on_errors = on_errors
        self.record_errors = record_errors  # False on a read-only mount
        self.met = 0  # corrupt blocks met (EUCLEAN) since the mount
        self.last_met: str | None = None

    def call(self, op: str, *args: Any) -> Any:
        if (self.read_only is not None or self.remounted_read_only) and _changes(op, args):
            raise FsError(errno.EROFS, f"read-only since {self.read_only or 'a remount'}")
        journal = self.ks.journal
        if journal is None:
            return self._call_unguarded(op, args)
        journal.undo_begin(data=_changes_data(op, args))
        met: FsError | None = None
        try:
            return self.dispatch.call(op, *args)
        except Exception as e:
            if _untrusted(e):
                self._abort(op, args, e)
                if isinstance(e, FsError) and e.errno == errno.EUCLEAN:
                    met = e
            raise
        finally:
            journal.undo_end()
            if met is not None:
                self._met(op, met)

    def _met(self, op: str, error: FsError) -> None:
        """Record a corrupt block met by ``op`` (after its undo), then apply errors=."""
        what = f"{op}: {error.strerror}"
        self.met += 1
        self.last_met = what
        log.error("inconsistency met: %s", what)
        if self.record_errors and not self.remounted_read_only and self.read_only is None:
            try:
                self.dispatch.fs.record_error(time.time_ns(), what)  # the next commit's
            except Exception as e:  # noqa: BLE001 — the error stands; its record failed
                log.error("could not record the error on disk: %s: %s", type(e).__name__, e)
        if self.on_errors == "remount-ro" and self.read_only is None:
            self.read_only = f"errors=remount-ro: {what}"
            log.error("serving read-only: %s", self.read_only)

    def _call_unguarded(self, op: str, args: tuple[Any, ...]) -> Any:
        try:
            return self.dispatch.call(op, *args)
        except Exception as e:
            if _untrusted(e) and _changes(op, args):
                self._distrust(op, e, "the file system has no journal to undo it with")
            if isinstance(e, FsError) and e.errno == errno.EUCLEAN:
                self._met(op, e)
            raise

    def _abort(self, op: str, args: tuple[Any, ...], error: BaseException) -> None:
        journal = self.ks.journal
        assert journal is not None
        undo = journal.undo_end()
        if not undo and not _changes(op, args):
            return  # a read that failed: nothing to undo, no memory it changed
        name = type(self.dispatch.fs).__name__
        try:
            restored = journal.undo(undo) if undo else 0
            upgrade.swap(self.dispatch, self.ks, type(self.dispatch.fs), recovery=True)
        except Exception as e:  # noqa: BLE001 — whatever it was, stop trusting memory
            self._distrust(op, error, f"undoing it failed: {e}")
            return
        self.undone += 1
        log.warning("%s failed (%s: %s): %d blocks put back, %s reloaded from them",
                    op, type(error).__name__, error, restored, name)

    def _distrust(self, op: str, error: BaseException, why: str) -> None:
        self.read_only = f"{op} failed ({type(error).__name__}: {error}) and {why}"
        log.error("serving read-only: %s", self.read_only)

    def status(self) -> dict[str, Any]:
        return {"undone": self.undone, "read_only": self.read_only,
                "remounted_read_only": self.remounted_read_only}

    def errors(self) -> dict[str, Any]:
        """Corruption met since the mount, the policy, and the disk's own record."""
        try:
            recorded = self.dispatch.fs.recorded_errors()
        except Exception as e:  # noqa: BLE001 — a status must answer
            log.warning("reading the recorded errors: %s: %s", type(e).__name__, e)
            recorded = None
        return {"met": self.met, "last_met": self.last_met, "policy": self.on_errors,
                "recorded": None if recorded is None else dataclasses.asdict(recorded)}


def _untrusted(e: Exception) -> bool:
    """A failure that may have left changes half-made: anything but the file
    system's own FsError answers, and those that mean it broke."""
    return not isinstance(e, FsError) or e.errno in UNTRUSTED


def _changes_data(op: str, args: tuple[Any, ...]) -> bool:
    """Whether the call may change file data in place, outside the journal, other
    than by writing it: a truncate (its last block's tail is zeroed), fallocate. Only
    these pay for saving every block they read; a write may leave part of its data."""
    if op == "setattr":
        return args[2].size is not None
    if op == "open":
        return bool(args[2] & os.O_TRUNC)
    return op == "fallocate"


def _changes(op: str, args: tuple[Any, ...]) -> bool:
    """Whether the call may change the file system (an open: for writing or O_TRUNC)."""
    if op == "open":
        return bool(args[2] & _ACCMODE != os.O_RDONLY or args[2] & os.O_TRUNC)
    return op in CHANGES
