"""A jbd2-like write-ahead journal that any file system can use for its metadata.

The file system's side (cf. jbd2's API and xv6's begin_op/end_op):

    with journal.start(credits) as h:        # join the running transaction
        bh = cache.bread(n)
        h.get_write_access(bh)               # before changing a metadata block
        ...change bh.data...
        h.dirty_metadata(bh)                 # after
        h.ordered_data(data_bh)              # data that must be on disk before commit
        h.revoke(freed_metadata_blockno)     # a freed block's old copies must not replay;
                                             # reuse it only once this transaction commits
    journal.force_commit()                   # fsync: everything so far is durable

Credits are the most distinct blocks (and revokes) a handle may add; they reserve log
space up front, so a commit never finds the log full.

A transaction's life, from RUNNING to FINISHED, is told in ``_transaction.py``.

Between ``undo_begin`` and ``undo_end`` a thread's ``get_write_access`` and ``revoke``
calls also fill an undo log (``_undo.py``), so that the runtime can put back what an
operation that failed half-way changed; it takes no lock (the log is the thread's).

A buffer logged again by a newer transaction moves to the newer checkpoint list;
checkpointing a buffer that a running transaction pins first commits that one.

Commits happen on ``force_commit`` (and ``Handle.sync``), every ``commit_interval``
seconds from a background thread, when a transaction reaches its size limit, when
the log is short of space (a checkpoint too), and at ``close``. The same thread
checkpoints once the log is half full, down to a quarter, so handles seldom wait.
A transaction that reaches its size limit is committed by a second thread when the
timer runs (mounts), as kjournald2 does: the handle that found it full waits only
until it is closed to new handles, not for its I/O. Without the timer (tests, the
fuzzers) that handle commits it itself, so the device sees the same writes each run.

Locks, in the order they are taken: ``_checkpoint_mutex`` (a checkpoint may have to
commit a newer transaction first) → ``_commit_mutex`` (one commit at a time, in
order) → ``_cond`` (all transaction state and accounting; released before) →
``_sb_mutex`` (one write of the journal superblock) → the buffer cache's lock (for
``bh.jtrans``). A thread holding a handle takes none of the mutexes: it may not start
a second handle or force a commit, which would wait for itself. No lock but the
three mutexes is held across device I/O. After an I/O error in a commit or checkpoint
the journal *aborts*: the disk stays at the last committed state and every new handle
gets EROFS.
"""

from __future__ import annotations

import errno
import logging
import secrets
import threading
import time
from collections import deque

import numpy as np

from ..blockdev import aligned_blocks
from . import _journal_format as fmt
from ._buffer_cache import BufferCache
from ._buffer_head import BufferHead
from ._faults import FAULTS
from ._recovery import (
    RecoveryReport,
    read_journal_superblock,
    recover,
    write_journal_superblock,
)
from ._time import Clock
from ._transaction import (Handle, JournalAbortedError, JournalError, JournalStatistics, State,
                           Transaction)
from . import _undo
from ._undo import UndoLog

log = logging.getLogger(__name__)


class Journal:
    """The journal living in blocks ``start``..``start+nblocks-1`` of the cache's device.

    Create it, then ``load()`` (which recovers if needed) before starting handles;
    ``close()`` at unmount. ``Journal.format`` writes an empty one (for mkfs).
    """

    def __init__(
        self,
        cache: BufferCache,
        start: int,
        nblocks: int,
        uuid: bytes,
        *,
        clock: Clock | None = None,
        commit_interval: float | None = 5.0,
        max_transaction: int | None = None,
    ) -> None:
        self.cache = cache
        self.device = cache.device
        self.area_start = start
        self.area_len = nblocks
        self.uuid = bytes(uuid)
        self.seed = fmt.checksum_seed(self.uuid)
        self.clock = clock or Clock()
        self.commit_interval = commit_interval
        self.first = 1
        self.usable = nblocks - self.first
        limit = max(1, min(self.usable // 4, cache.capacity // 4))
        self.max_transaction = min(max_transaction or limit, limit)
        self._tags = fmt.tags_per_descriptor(cache.block_size)
        self._cond = threading.Condition(threading.Lock())
        self._commit_mutex = threading.RLock()
        self._checkpoint_mutex = threading.Lock()
        self._sb_mutex = threading.Lock()
        self._running: Transaction | None = None
        self._log: deque[Transaction] = deque()  # committing and committed, oldest first
        self._head = self.first
        self._used = 0
        self._next_tid = 1
        self._aborted: OSError | None = None
        self._loaded = False
        self._current = threading.local()
        self._timer: threading.Thread | None = None
        self._committer: threading.Thread | None = None
        self._full: Transaction | None = None  # for the committer thread to commit
        self._full_kick = threading.Event()  # its own: ``_cond`` wakes at every handle stop
        self._stopping = threading.Event()
        self._kick = threading.Event()  # wakes the timer thread early
        self._draining = False  # a background checkpoint round is under way
        self._counts = dict(commits=0, forced=0, timer=0, logged=0, log_blocks=0,
                            revokes=0, checkpoints=0)
        self._commit_seconds = 0.0

    # -- creating and opening -------------------------------------------------------------

    @staticmethod
    def format(cache: BufferCache, start: int, nblocks: int, uuid: bytes) -> None:
        """Write an empty journal into the area (mkfs)."""
        if nblocks < 16:
            raise ValueError(f"a journal needs at least 16 blocks, not {nblocks}")
        if len(uuid) != 16:
            raise ValueError("the journal uuid must be 16 bytes")
        # A random first id, and a zeroed first log block: leftovers of an earlier
        # journal in this area can never pass for transactions of this one.
        sequence = secrets.randbelow(1 << 30) + 1
        sb = fmt.JournalSuperblock(cache.block_size, nblocks, 1, sequence, 0, bytes(uuid))
        cache.device.write_blocks(start + 1, [aligned_blocks(1, cache.block_size)])
        write_journal_superblock(cache, start, sb, fmt.checksum_seed(uuid))

    def load(self) -> RecoveryReport:
        """Recover the log if the last session did not end cleanly, then open it.

        Blocks the recovery rewrites go through the buffer cache, so cached copies
        stay right; none of them may be held or dirty at this point.
        """
        if self.usable < 15:
            raise ValueError(f"a journal needs at least 16 blocks, not {self.area_len}")
        if self.device.read_only:
            sb = read_journal_superblock(self.cache, self.area_start, self.area_len, self.uuid)
            if sb.start:
                raise OSError(errno.EROFS, "the journal needs recovery, but the device is read-only")
            self._next_tid = sb.sequence
            self._loaded = True
            return RecoveryReport(next_tid=sb.sequence)
        report = recover(self.cache, self.area_start, self.area_len, self.uuid)
        if report.needed:
            log.info("journal: replayed transactions %s..%s (%d blocks, %d revoked); %s",
                     report.first_tid, report.last_tid, report.blocks_replayed,
                     report.blocks_revoked, report.stop_reason)
        self._next_tid = report.next_tid
        self._write_superblock(start=self.first, sequence=self._next_tid)  # in use from now
        self._loaded = True
        if self.commit_interval:
            self._timer = threading.Thread(target=self._commit_timer, name="bento-jcommit",
                                           daemon=True)
            self._timer.start()
            self._committer = threading.Thread(target=self._commit_full, name="bento-jfull",
                                               daemon=True)
            self._committer.start()
        return report

    def close(self) -> None:
        """Commit, checkpoint everything and mark the log empty (clean unmount)."""
        if not self._loaded:
            return
        self.stop_timer()
        try:
            if self._aborted is None and not self.device.read_only:
                self.force_commit()
                self.checkpoint_all()
                self._write_superblock(start=0, sequence=self._next_tid)
        finally:
            self._loaded = False

    def stop_timer(self) -> None:
        """Stop the journal's threads: first step of close, and all a read-only tool
        needs."""
        self.halt()
        for thread in (self._timer, self._committer):
            if thread is not None:
                thread.join()
        self._timer = self._committer = None

    def halt(self) -> None:
        """Tell the journal's threads to stop, without waiting for them (a simulated
        crash: nothing of theirs may start after it)."""
        self._stopping.set()
        self._kick.set()
        self._full_kick.set()

    # -- handles -------------------------------------------------------------------------

    def start(self, credits: int) -> Handle:
        """A handle on the running transaction with room for ``credits`` blocks.

        May block: while a commit is locking the transaction, while the transaction
        is full (until its commit has closed it), or while the log is short of space
        (older transactions are checkpointed first).
        """
        if FAULTS.countdown:
            FAULTS.point("journal.start")
        if not self._loaded:
            raise JournalError("journal.start before journal.load")
        if not 0 < credits <= self.max_transaction:
            raise ValueError(f"handle credits must be 1..{self.max_transaction}, not {credits}")
        if getattr(self._current, "handle", None) is not None:
            raise JournalError("this thread already holds a journal handle; pass it down "
                               "instead of starting another (a nested start could deadlock)")
        while True:
            with self._cond:
                self._check_aborted()
                t = self._running
                if t is not None and t.state is State.LOCKED:
                    self._cond.wait()
                    continue
                if t is None:
                    t = self._running = Transaction(self.clock.monotonic_ns())
                full = t.credits + credits > self.max_transaction
                short = self._reserve(t.credits + credits) > self.usable - self._used
                if not (full or short):
                    t.updates += 1
                    t.credits += credits
                    h = Handle(self, t, credits)
                    self._current.handle = h
                    return h
            if full:
                self._close_full(t)
            else:
                self._make_log_space()

    def _join_buffer(self, h: Handle, bh: BufferHead) -> None:
        undo = _undo.current()
        if undo is not None:
            undo.before_change(bh)
        t = h.transaction
        if bh.jtrans is t and bh.blockno not in t.revokes:
            return  # joined already, and ``t`` cannot commit while ``h`` is open
        with self._cond:
            t.revokes.discard(bh.blockno)  # logged again: the revoke no longer applies
            if bh.jtrans is t:
                return
            if h.credits <= 0:
                raise JournalError(f"handle out of credits adding block {bh.blockno}")
            h.credits -= 1
            t.buffers[bh.blockno] = bh
            self.cache.pin(bh, t)  # write-back skips it from here on
        bh.wait_io()  # ... and a write-back already under way finishes first

    def _dirty_buffer(self, h: Handle, bh: BufferHead) -> None:
        t = h.transaction
        if bh.jtrans is not t:
            raise JournalError(f"dirty_metadata on block {bh.blockno} without get_write_access")
        if bh.dirty and bh.blockno in t.dirtied:
            return  # noted already; pinned, so no write-back can have cleaned it
        with self._cond:
            t.dirtied.add(bh.blockno)
        bh.mark_dirty()

    def _add_data(self, h: Handle, bh: BufferHead) -> None:
        if bh.jtrans is not None:
            raise JournalError(
                f"block {bh.blockno} is journaled metadata, or was freed by a transaction "
                "that has not committed yet: it cannot be reused as data before that commit")
        with self._cond:
            h.transaction.data[bh.blockno] = bh

    def _revoke(self, h: Handle, blockno: int) -> None:
        undo = _undo.current()
        if undo is not None:
            undo.revoked.add(blockno)
        t = h.transaction
        with self._cond:
            if blockno in t.revokes:
                return
            if h.credits <= 0:
                raise JournalError(f"handle out of credits revoking block {blockno}")
            h.credits -= 1
            t.revokes.add(blockno)
            # Its new contents are not logged, but the buffer stays pinned until ``t``
            # commits: before that the block is still in use on disk, with the old
            # contents (a crash must find them there).
            t.dirtied.discard(blockno)

    # -- undo (_undo.py) ----------------------------------------------------------------

    def undo_begin(self, data: bool = False) -> None:
        """From now on this thread's journaled changes (with ``data``: every block
        it reads) are saved for ``undo``, until ``undo_end``."""
        _undo.begin(data)

    def undo_end(self) -> UndoLog | None:
        return _undo.end()

    def undo(self, log: UndoLog) -> int:
        """Put the blocks ``log`` saved back as they were (blocks restored)."""
        return _undo.restore(self, log)

    def _stop(self, h: Handle) -> None:
        t = h.transaction
        self._current.handle = None
        with self._cond:
            t.updates -= 1
            t.credits -= h.credits  # unused credits go back
            self._cond.notify_all()
        if h.sync:
            self.force_commit()

    # -- commit ----------------------------------------------------------------------------

    def force_commit(self) -> int | None:
        """Commit everything handles have stopped so far and wait until it is durable.

        Returns the id of the newest committed transaction (None if none ever was).
        """
        if getattr(self._current, "handle", None) is not None:
            raise JournalError("force_commit while holding a handle would wait for itself")
        with self._commit_mutex:  # waits for a commit already under way
            with self._cond:
                t = self._running
            if t is not None:
                if self._commit(t):
                    self._counts["forced"] += 1
            self._check_aborted()
            return self._next_tid - 1 if self._next_tid > 1 else None

    def _commit_running(self, t: Transaction) -> None:
        with self._commit_mutex:
            self._commit(t)

    def _close_full(self, t: Transaction) -> None:
        """``t`` has no room for another handle: have it committed, and wait until it
        takes no more handles (its snapshot is taken), not for its I/O."""
        with self._cond:
            if self._committer is not None and not self._stopping.is_set():
                self._full = t
                self._full_kick.set()
                while (t.state in (State.RUNNING, State.LOCKED) and self._aborted is None
                       and self._committer is not None and not self._stopping.is_set()):
                    self._cond.wait()
                if t.state not in (State.RUNNING, State.LOCKED) or self._aborted is not None:
                    return
        self._commit_running(t)  # no committer thread, or it is stopping

    def _commit_full(self) -> None:
        """kjournald2's other half: commit each transaction a handle found full."""
        while True:
            self._full_kick.wait()
            self._full_kick.clear()
            if self._stopping.is_set():
                return
            with self._cond:
                t, self._full = self._full, None
            if t is None:
                continue
            try:
                self._commit_running(t)
            except OSError:
                pass  # aborted: logged, and the waiting handle gets EROFS
            except BaseException:
                with self._cond:  # a bug: handles commit full transactions themselves again
                    self._committer = None
                    self._cond.notify_all()
                raise

    def _commit(self, t: Transaction) -> bool:
        """Commit ``t`` if it is still running. Caller holds ``_commit_mutex``."""
        started = time.perf_counter()
        with self._cond:
            if t.state is not State.RUNNING:
                return False
            self._check_aborted()
            t.state = State.LOCKED
            while t.updates:
                self._cond.wait()
            if self._running is t:
                self._running = None
            if t.empty():
                t.state = State.FINISHED
                self._unpin(t)
                self._cond.notify_all()
                return False
            plan = self._snapshot(t)
            t.state = State.COMMITTING
            self._cond.notify_all()
        try:
            self._write_commit(t, plan)
        except OSError as e:
            self._abort(e)
            raise
        with self._cond:
            self._refile(t)
            t.state = State.COMMITTED
            self._counts["commits"] += 1
            self._counts["logged"] += len(plan.blocknos)
            self._counts["log_blocks"] += t.log_len
            self._counts["revokes"] += len(plan.revokes)
            self._commit_seconds += time.perf_counter() - started
            self._cond.notify_all()
            if self._used > self.usable // 2:
                self._kick.set()  # the timer thread checkpoints in the background
        return True

    def _snapshot(self, t: Transaction) -> fmt.TransactionLayout:
        """Freeze ``t``'s blocks into a staging area and give it an id and log space.
        Caller holds ``_cond`` with ``t`` LOCKED (no handle can change its buffers)."""
        plan = fmt.TransactionLayout(sorted(t.dirtied), sorted(t.revokes),
                                     self.cache.block_size)
        for i, n in enumerate(plan.blocknos):
            plan.staging[plan.slot(i)] = t.buffers[n].data  # type: ignore[assignment]
        length = len(plan.staging)
        t.tid = self._next_tid
        self._next_tid += 1
        t.log_start, t.log_len = self._head, length
        self._head = self._wrap(self._head + length)
        self._used += length
        self._log.append(t)
        return plan

    def _write_commit(self, t: Transaction, plan: fmt.TransactionLayout) -> None:
        """Ordered data home; the log blocks; flush; commit block; flush."""
        data = list(t.data.values())
        self.cache.writeback(data)
        for bh in data:
            bh.wait_io()
        blocks = plan.seal(t.tid, self.seed, self.clock.now_ns())  # type: ignore[arg-type]
        self._write_log(t.log_start, blocks[:-1])
        self.device.flush()
        self._write_log(self._wrap(t.log_start + t.log_len - 1), blocks[-1:])
        self.device.flush()

    def _write_log(self, pos: int, blocks: np.ndarray) -> None:
        """Write consecutive log blocks from ``pos``, wrapping at the end of the area."""
        if len(blocks) == 0:
            return
        room = self.area_len - pos
        self.device.write_blocks(self.area_start + pos, [blocks[:room]])
        if len(blocks) > room:
            self.device.write_blocks(self.area_start + self.first, [blocks[room:]])

    def _refile(self, t: Transaction) -> None:
        """Move ``t``'s logged buffers to its checkpoint list and unpin them."""
        for n in t.dirtied:
            bh = t.buffers[n]
            older = bh.jcheckpoint
            if older is not None and older is not t:
                older.checkpoint.pop(n, None)
            t.checkpoint[n] = bh
            bh.jcheckpoint = t
        self._unpin(t)

    def _unpin(self, t: Transaction) -> None:
        self.cache.unpin(t.buffers.values(), t)

    # -- checkpoint ----------------------------------------------------------------------

    def checkpoint_all(self) -> None:
        """Write every committed transaction home and empty the log."""
        while self._checkpoint_oldest():
            pass

    def _checkpoint_oldest(self) -> bool:
        """Checkpoint the oldest committed transaction; False if there is none."""
        with self._checkpoint_mutex:
            with self._cond:
                t = self._log[0] if self._log else None
                if t is None or t.state is not State.COMMITTED:
                    return False
            while True:
                with self._cond:
                    dirty = [bh for bh in t.checkpoint.values() if bh.dirty]
                    blockers = {bh.jtrans for bh in dirty if bh.jtrans is not None}
                if not dirty:
                    break
                if blockers:
                    for newer in blockers:  # they hold newer versions: commit those first
                        self._commit_running(newer)
                    continue
                try:
                    self.cache.writeback(dirty)
                except OSError as e:
                    self._abort(e)
                    raise
                for bh in dirty:
                    bh.wait_io()
            try:
                self.device.flush()  # home copies durable before the tail passes them
            except OSError as e:
                self._abort(e)
                raise
            with self._cond:
                self._log.popleft()
                self._used -= t.log_len
                for bh in t.checkpoint.values():
                    if bh.jcheckpoint is t:
                        bh.jcheckpoint = None
                t.checkpoint.clear()
                t.state = State.FINISHED
                self._counts["checkpoints"] += 1
                self._cond.notify_all()
            self._update_tail()
            return True

    def _update_tail(self) -> None:
        """Record the log's new tail on disk (durably: the space is about to be reused)."""
        with self._cond:
            if self._log:
                start, sequence = self._log[0].log_start, self._log[0].tid
            else:
                start, sequence = self._head, self._next_tid
        self._write_superblock(start=start, sequence=sequence)

    def _make_log_space(self) -> None:
        """The log is short of space: checkpoint, or wait for a commit in flight."""
        if self._checkpoint_oldest():
            return
        with self._commit_mutex:  # the space may be held by a committing transaction
            pass
        if not self._checkpoint_oldest():
            with self._cond:
                if not self._log and self._running is not None:
                    raise JournalError(
                        f"the log ({self.usable} blocks) cannot hold the running transaction "
                        f"({self._running.credits} credits); use a bigger journal")

    def _reserve(self, credits: int) -> int:
        """Log blocks a transaction of ``credits`` credits may need, worst case."""
        return credits + -(-credits // self._tags) + 1

    # -- superblock, abort, timer ----------------------------------------------------------

    def _write_superblock(self, start: int, sequence: int) -> None:
        with self._sb_mutex:
            sb = fmt.JournalSuperblock(self.cache.block_size, self.area_len, self.first,
                                       sequence, start, self.uuid)
            write_journal_superblock(self.cache, self.area_start, sb, self.seed)

    def _abort(self, error: OSError) -> None:
        with self._cond:
            if self._aborted is None:
                log.error("journal aborted after an I/O error: %s", error)
                self._aborted = error
            self._cond.notify_all()

    def _check_aborted(self) -> None:
        if self._aborted is not None:
            raise JournalAbortedError(errno.EROFS,
                                      f"journal aborted after an I/O error ({self._aborted})")

    def _commit_timer(self) -> None:
        """kjournald: commit the running transaction once it is ``commit_interval``
        old, and checkpoint in the background once the log is half full, so a handle
        rarely has to wait for log space."""
        while True:
            interval = self.commit_interval or 5.0  # a remount may change it
            self._kick.wait(interval / 4)
            self._kick.clear()
            if self._stopping.is_set():
                return
            with self._cond:
                t = self._running
                due = (t is not None and not t.empty() and
                       self.clock.monotonic_ns() - t.created_ns >= interval * 1e9)
            try:
                if due and self._aborted is None:
                    with self._commit_mutex:
                        if self._commit(t):  # type: ignore[arg-type]
                            self._counts["timer"] += 1
                while (self._aborted is None and not self._stopping.is_set()
                       and self._log_half_full()):
                    if not self._checkpoint_oldest():
                        break
            except OSError:
                pass  # aborted: already logged, handles now get EROFS

    def _log_half_full(self) -> bool:
        """Background checkpoints start above half and go on down to a quarter."""
        if self._used > self.usable // 2:
            self._draining = True
        elif self._used <= self.usable // 4:
            self._draining = False
        return self._draining

    def _wrap(self, pos: int) -> int:
        return self.first + (pos - self.first) % self.usable

    def statistics(self) -> JournalStatistics:
        with self._cond:
            c = self._counts
            return JournalStatistics(
                c["commits"], c["forced"], c["timer"], c["logged"], c["log_blocks"],
                c["revokes"], c["checkpoints"], self._commit_seconds, self._used,
                self.usable, self._running.credits if self._running else 0,
            )
