"""A transaction and the handles on it: what a file system holds while it changes
metadata (``journal.start`` returns a ``Handle``; the journal commits the
``Transaction`` the handles joined); and what the journal counts of them.

The transaction's lifecycle:

    RUNNING    handles join it and add buffers; its buffers are *pinned* (jtrans):
               write-back leaves them alone, their home may only see committed data.
    LOCKED     commit began: new handles wait; the commit waits for handles to stop.
    COMMITTING buffers were copied into a private staging area and the transaction
               got its id and log space; a new RUNNING transaction may start now.
               Ordered data goes home, then descriptors, copies and revokes go to the
               log; flush; the commit block; flush. Only then is it committed.
    COMMITTED  buffers are unpinned and sit on its checkpoint list, dirty.
    FINISHED   checkpoint wrote them home and flushed; the log tail moved past it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from ._buffer_head import BufferHead
from ._faults import FAULTS

if TYPE_CHECKING:
    from ._journal import Journal


@dataclass(frozen=True)
class JournalStatistics:
    """Attributes:
    commits: transactions committed (forced / by the timer / by space or size).
    blocks_logged: metadata block copies written to the log.
    log_blocks: all log blocks written (copies, descriptors, revokes, commits).
    revokes: revoke records written.
    checkpoints: transactions checkpointed.
    commit_seconds: total time spent committing.
    log_used / log_size: log blocks in use now / in all.
    running_credits: credits reserved by the running transaction.
    """

    commits: int
    forced_commits: int
    timer_commits: int
    blocks_logged: int
    log_blocks: int
    revokes: int
    checkpoints: int
    commit_seconds: float
    log_used: int
    log_size: int
    running_credits: int


class JournalError(RuntimeError):
    """The journal was used against its rules (a file-system bug)."""


class JournalAbortedError(OSError):
    """The journal stopped after an I/O error; the file system is read-only now."""


class State(Enum):
    RUNNING = "running"
    LOCKED = "locked"
    COMMITTING = "committing"
    COMMITTED = "committed"
    FINISHED = "finished"


class Transaction:
    """A group of handles whose changes commit together.

    Attributes:
        tid: its id, given when its commit begins (ids are dense over the log).
        buffers: metadata buffers it pins, by block number.
        dirtied: block numbers of those actually changed (only these are logged).
        data: ordered-data buffers to write home before the commit block.
        revokes: freed metadata blocks whose older log copies must not replay.
        updates: handles still running.
        credits: credits reserved by its handles (unused ones come back at stop).
        checkpoint: after commit, buffers still to be written home, by block number.
    """

    def __init__(self, created_ns: int) -> None:
        self.tid: int | None = None
        self.state = State.RUNNING
        self.buffers: dict[int, BufferHead] = {}
        self.dirtied: set[int] = set()
        self.data: dict[int, BufferHead] = {}
        self.revokes: set[int] = set()
        self.updates = 0
        self.credits = 0
        self.created_ns = created_ns
        self.log_start = 0
        self.log_len = 0
        self.checkpoint: dict[int, BufferHead] = {}

    def empty(self) -> bool:
        return not (self.dirtied or self.revokes or self.data)

    @property
    def committed(self) -> bool:
        """Durable: its commit block is on disk (blocks it freed may be reused)."""
        return self.state in (State.COMMITTED, State.FINISHED)

    def __repr__(self) -> str:
        return f"<Transaction {self.tid} {self.state.value} {len(self.dirtied)} blocks>"


class Handle:
    """One atomic operation's part of the running transaction. See the module doc."""

    def __init__(self, journal: Journal, transaction: Transaction, credits: int) -> None:
        self.journal = journal
        self.transaction = transaction
        self.credits = credits
        self.sync = False  # commit (and wait) when the handle stops, like O_SYNC
        self._active = True

    def get_write_access(self, bh: BufferHead) -> None:
        """Declare that ``bh`` is about to change; call before touching its data."""
        if FAULTS.countdown:
            FAULTS.point("get_write_access")
        self._check()
        self.journal._join_buffer(self, bh)

    get_create_access = get_write_access  # a new block: same bookkeeping here

    def dirty_metadata(self, bh: BufferHead) -> None:
        """Record that ``bh`` changed; it will be logged with this transaction."""
        if FAULTS.countdown:
            FAULTS.point("dirty_metadata")
        self._check()
        self.journal._dirty_buffer(self, bh)

    def ordered_data(self, bh: BufferHead) -> None:
        """Write this data buffer home before the transaction's commit block."""
        if FAULTS.countdown:
            FAULTS.point("ordered_data")
        self._check()
        self.journal._add_data(self, bh)

    def revoke(self, blockno: int) -> None:
        """A metadata block was freed: older log copies of it must never replay."""
        if FAULTS.countdown:
            FAULTS.point("revoke")
        self._check()
        self.journal._revoke(self, blockno)

    def stop(self) -> None:
        """End the operation. Its changes commit with the transaction, later."""
        self._check()
        self._active = False
        self.journal._stop(self)

    def _check(self) -> None:
        if not self._active:
            raise JournalError("the handle was already stopped")

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            self.stop()
