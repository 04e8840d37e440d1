"""Write-back ahead of need: the buffer cache's background writer.

Without it, dirty buffers pile up until an allocation finds nothing evictable and
stalls to write back inside somebody's request. The kernel avoids that with its
flusher threads and three knobs, which this module copies in spirit:

- ``background`` (``dirty_background_ratio``): above this many writable dirty
  buffers the background writer starts writing the oldest home;
- ``hard`` (``dirty_ratio``): a thread that dirties a buffer past this many writes
  a batch back itself before going on (``BufferCache.balance_dirty``), so dirty data
  can never crowd out the clean buffers allocations need;
- ``expire`` (``dirty_expire_centisecs``): a buffer dirty for this long is written
  even below the background threshold.

Writing a buffer home never flushes the device and never touches a buffer the
journal pins, so none of this changes what is durable when: the journal's ordering
and what fsync promises (it writes back and flushes what it covers) stay as they were.
The writer releases the GIL while the device works, so requests go on meanwhile.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._buffer_cache import BufferCache
    from ._buffer_head import BufferHead

log = logging.getLogger(__name__)

MAX_RUN = 256  # blocks per vectored write: 1 MiB, well under the kernel's IOV_MAX (1024)


@dataclass(frozen=True)
class WritebackLimits:
    """Thresholds as fractions of the cache; ``for_capacity`` turns them into blocks.

    Attributes:
        background_ratio / hard_ratio: see the module docstring.
        expire: seconds a buffer may stay dirty before the background writer takes it.
        interval: seconds between the background writer's rounds when nothing wakes it.
        batch: blocks written per round (sorted, so adjacent ones merge).
    """

    background_ratio: float = 0.10
    hard_ratio: float = 0.30
    expire: float = 30.0
    interval: float = 1.0
    batch: int = 1024
    background: int = 0
    hard: int = 0

    def for_capacity(self, capacity: int) -> WritebackLimits:
        background = max(1, int(capacity * self.background_ratio))
        hard = max(background + 1, int(capacity * self.hard_ratio))
        return replace(self, background=background, hard=hard,
                       batch=max(8, min(self.batch, capacity // 4)))


class Flusher:
    """One daemon thread per cache, writing dirty buffers home ahead of need."""

    def __init__(self, cache: BufferCache) -> None:
        self.cache = cache
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="bento-flush", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self.cache._wake:
            self._stopping = True
            self.cache._wake.notify_all()
        self._thread.join()

    def _run(self) -> None:
        cache, limits = self.cache, self.cache.limits
        while True:
            with cache._wake:
                if self._stopping:
                    return
                if len(cache._dirty) < limits.background:
                    cache._wake.wait(limits.interval)
                if self._stopping:
                    return
                over = len(cache._dirty) >= limits.background
            if not (over or cache.dirty_age() >= limits.expire):
                continue
            try:
                written = cache.writeback(cache.oldest_dirty(limits.batch))
            except OSError as e:  # the request that needs the block will see the error
                log.warning("background write-back failed: %s", e)
                with cache._wake:
                    cache._wake.wait(limits.interval)
                continue
            cache._count_background(written)


def runs(buffers: list[BufferHead]) -> list[list[BufferHead]]:
    """Split buffers sorted by block number into runs of adjacent blocks."""
    out: list[list[BufferHead]] = []
    for bh in buffers:
        if out and out[-1][-1].blockno + 1 == bh.blockno and len(out[-1]) < MAX_RUN:
            out[-1].append(bh)
        else:
            out.append([bh])
    return out
