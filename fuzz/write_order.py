"""The write log's order, checked as a rule of its own: a commit block may be written
only after every log block of its transaction is durable (a flush returned between).

A misordering is a bug even where this device model cannot lose it: recovery
survives it only because commits are checksummed over their blocks (jbd2's
async_commit bets on the same), and a disk that reorders a commit before its blocks
then costs the transaction. The crash states never show it, so the explorer reads
the write log once per workload (reliability.md §1.4, as dm-log-writes' users do).

The journal's own format says what a commit is (ks_emul/_journal_format.py): a log
block with the journal's magic, the COMMIT type and ``nblocks``, the number of log
blocks of its transaction just before it, circularly. Ordered data (file blocks the
transaction must not commit before) leaves no trace in the log, so it is not checked
here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bento_user.blockdev import RecordingDevice, WriteRecord
from bento_user.ks_emul import _journal_format as fmt


@dataclass(frozen=True)
class LogArea:
    """Where a journal lives: the area's first block, its length, its first log block."""

    start: int
    length: int
    first: int

    def holds(self, blockno: int) -> bool:
        """A block of the circular log (not the journal's superblock)."""
        return self.first <= blockno - self.start < self.length

    def wrap(self, pos: int) -> int:
        usable = self.length - self.first
        return self.first + (pos - self.first) % usable


def _commit(w: WriteRecord) -> tuple[int, int] | None:
    """(tid, nblocks) if ``w`` writes a commit block."""
    head = np.frombuffer(w.data[:fmt.COMMIT_DTYPE.itemsize], fmt.COMMIT_DTYPE)[0]
    if head["header"]["magic"] != fmt.MAGIC or head["header"]["blocktype"] != fmt.COMMIT:
        return None
    return int(head["header"]["sequence"]), int(head["nblocks"])


def order_problems(rec: RecordingDevice, area: LogArea) -> list[str]:
    """Each commit block written while a log block of its transaction was not yet
    durable: the earliest write of the problem, in words."""
    problems: list[str] = []
    last: dict[int, WriteRecord] = {}          # block -> its latest write so far
    for w in rec.writes:
        if area.holds(w.blockno) and (commit := _commit(w)) is not None:
            tid, nblocks = commit
            for k in range(1, nblocks + 1):
                block = area.start + area.wrap(w.blockno - area.start - k)
                before = last.get(block)
                if before is not None and before.epoch == w.epoch:
                    problems.append(
                        f"write order: the commit block of transaction {tid} (block "
                        f"{w.blockno}, write #{w.seq}) was written before log block {block} "
                        f"(write #{before.seq}) was flushed")
                    break
        last[w.blockno] = w
    return problems
