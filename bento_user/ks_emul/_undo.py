"""Undo for one operation: the journaled blocks it changed, as they were before it.

jbd2 never undoes: in the kernel an operation that fails half-way is a bug, and the
file system goes read-only. Here the runtime can do better (runtime/guard.py): while
an operation runs (``Journal.undo_begin``), the first ``get_write_access`` of each
block saves the block's contents and each ``revoke`` notes its block. If the
operation then raises, ``restore`` writes the saved contents back through a handle
of its own and logs each revoked block again (which cancels the revoke), so the
running transaction holds every block as it was before the call. What memory
derived from those blocks is the file system's to drop: the runtime reloads it.

Data blocks (``ordered_data``, or written around the cache) are not saved: a failed
write may leave part of its data, as POSIX allows; what points at data is metadata,
and that is restored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ._buffer_head import BufferHead

if TYPE_CHECKING:
    from ._journal import Journal


@dataclass
class UndoLog:
    """One operation's journaled blocks: contents before its first change, and the
    blocks it revoked."""

    images: dict[int, np.ndarray] = field(default_factory=dict)
    revoked: set[int] = field(default_factory=set)

    def before_change(self, bh: BufferHead) -> None:
        if bh.blockno not in self.images:
            self.images[bh.blockno] = bh.data.copy()

    def __len__(self) -> int:
        return len(self.images.keys() | self.revoked)


def restore(journal: Journal, log: UndoLog) -> int:
    """Put ``log``'s blocks back into the running transaction as they were; the
    number of blocks. The caller holds no handle (the failed operation's are
    stopped) and has ended the undo scope."""
    blocks = sorted(log.images.keys() | log.revoked)
    step = max(1, journal.max_transaction - 1)
    for i in range(0, len(blocks), step):
        chunk = blocks[i:i + step]
        with journal.start(len(chunk)) as h:
            for b in chunk:
                with journal.cache.bread(b) as bh:
                    h.get_write_access(bh)
                    if b in log.images:
                        bh.data[:] = log.images[b]
                    h.dirty_metadata(bh)
    return len(blocks)
