"""The buffer cache against a dict model, plus eviction, readahead, write-back merging
and several threads."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bento_user.blockdev import Fault, FaultDevice, ImageDevice, RamDevice
from bento_user.blockdev._memory import is_aligned
from bento_user.ks_emul import BufferCache
from tests.conftest import make_image, run_threads

NBLOCKS = 48


class CacheMachine(RuleBasedStateMachine):
    """Random bread/getblk/modify/release/write-back/sync against a dict of contents."""

    def __init__(self) -> None:
        super().__init__()
        self.dev = RamDevice(NBLOCKS)
        self.cache = BufferCache(self.dev, capacity=8, readahead_max=8)
        self.model: dict[int, int] = {}  # block -> value of its first byte (0 if unset)
        self.disk: dict[int, int] = {}   # what the device holds
        self.held: list = []
        self.owner = object()  # stands for a running transaction
        self.pinned: set[int] = set()

    @rule(n=st.integers(0, NBLOCKS - 1))
    def read(self, n: int) -> None:
        with self.cache.bread(n) as bh:
            assert int(bh.data[0]) == self.model.get(n, 0)
            assert int(bh.data[-1]) == self.model.get(n, 0)

    @rule(n=st.integers(0, NBLOCKS - 1), v=st.integers(1, 255), create=st.booleans())
    def modify(self, n: int, v: int, create: bool) -> None:
        bh = self.cache.getblk(n) if create else self.cache.bread(n)
        with bh:
            bh.data[:] = v
            bh.mark_dirty()
        self.model[n] = v

    @precondition(lambda self: len(self.held) < 4)
    @rule(n=st.integers(0, NBLOCKS - 1))
    def hold(self, n: int) -> None:
        self.held.append(self.cache.bread(n))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        bh = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        assert int(bh.data[0]) == self.model.get(bh.blockno, 0)
        self.cache.brelse(bh)

    @precondition(lambda self: self.held and len(self.pinned) < self.cache.capacity // 4)
    @rule(data=st.data(), v=st.integers(1, 255))
    def change_pinned(self, data: st.DataObject, v: int) -> None:
        """What a journal handle does: pin, change, mark dirty (home must wait). A
        transaction pins at most a quarter of the cache (``Journal.max_transaction``):
        without that bound the model filled the cache with held and pinned buffers,
        where the cache rightly refuses (ENOMEM), and reported it as a failure."""
        bh = self.held[data.draw(st.integers(0, len(self.held) - 1))]
        self.cache.pin(bh, self.owner)
        self.pinned.add(bh.blockno)
        bh.data[:] = v
        bh.mark_dirty()
        self.model[bh.blockno] = v

    @rule()
    def commit(self) -> None:
        buffers = [b for n in self.pinned if (b := self.cache.cached(n)) is not None]
        self.cache.unpin(buffers, self.owner)
        self.pinned.clear()

    @rule()
    def writeback(self) -> None:
        self.cache.writeback()
        stats = self.cache.statistics()
        assert stats.dirty == stats.pinned_dirty

    @rule()
    def sync(self) -> None:
        self.cache.sync()
        for n in range(NBLOCKS):
            if n not in self.pinned:
                assert int(self.dev.blocks[n, 0]) == self.model.get(n, 0)

    @invariant()
    def within_capacity(self) -> None:
        st_ = self.cache.statistics()
        assert st_.cached <= st_.capacity

    @invariant()
    def every_buffer_in_the_set_its_state_calls_for(self) -> None:
        self.cache.check_invariants()

    def teardown(self) -> None:
        for bh in self.held:
            self.cache.brelse(bh)


TestCacheMachine = CacheMachine.TestCase


def test_writeback_merges_adjacent_blocks_into_one_write() -> None:
    dev = RamDevice(64)
    cache = BufferCache(dev, capacity=32)
    for n in [10, 11, 12, 13, 14, 15, 16, 17, 20]:
        with cache.getblk(n) as bh:
            bh.data[:] = n
            bh.mark_dirty()
    assert cache.writeback() == 9
    st_ = cache.statistics()
    assert st_.writes == 2 and st_.bytes_written == 9 * 4096
    assert dev.statistics().writes == 2
    assert int(dev.blocks[17, 100]) == 17 and int(dev.blocks[20, 0]) == 20


def test_sequential_reads_read_ahead_in_growing_windows() -> None:
    dev = RamDevice(256)
    cache = BufferCache(dev, capacity=256, readahead_max=32)
    for n in range(200):
        cache.bread(n).release()
    st_ = cache.statistics()
    assert st_.hits + st_.misses == 200
    assert dev.statistics().reads <= 12  # 1, 4, 8, 16, 32, 32 ... instead of 200
    assert st_.readahead_blocks >= 190


def test_random_reads_do_not_read_ahead() -> None:
    dev = RamDevice(256)
    cache = BufferCache(dev, capacity=256, readahead_max=32)
    for n in [5, 90, 17, 200, 44, 130]:
        cache.bread(n).release()
    assert cache.statistics().readahead_blocks == 0
    assert dev.statistics().blocks_read == 6


def test_eviction_is_least_recently_used_and_detaches_the_buffer() -> None:
    dev = RamDevice(64)
    cache = BufferCache(dev, capacity=8, readahead_max=1)
    first = cache.bread(0)
    first.release()
    for n in range(1, 8):
        cache.bread(n).release()
    cache.bread(0).release()        # 0 is now the most recently used
    cache.bread(8).release()        # evicts 1, the least recently used
    assert cache.cached(0) is not None and cache.cached(1) is None
    assert cache.statistics().evictions == 1
    for n in range(9, 20):
        cache.bread(n).release()
    assert first.data is None       # evicted: a stale holder cannot scribble
    with pytest.raises(RuntimeError):
        first.mark_dirty()


def test_dirty_buffers_are_written_back_to_make_room() -> None:
    dev = RamDevice(64)
    cache = BufferCache(dev, capacity=8, readahead_max=1)
    for n in range(8):
        with cache.bread(n) as bh:
            bh.data[:] = n + 1
            bh.mark_dirty()
    cache.bread(30).release()       # nothing clean to evict: write-back first
    assert [int(dev.blocks[n, 0]) for n in range(8)] == list(range(1, 9))
    assert cache.statistics().writes == 1  # the eight blocks went as one run


def test_a_cache_full_of_held_buffers_says_so() -> None:
    cache = BufferCache(RamDevice(64), capacity=8)
    held = [cache.bread(n) for n in range(8)]
    with pytest.raises(OSError) as e:
        cache.bread(40)
    assert e.value.errno == errno.ENOMEM and "8 of 8 buffers held" in str(e.value)
    for bh in held:
        bh.release()
    cache.bread(40).release()


def test_double_release_is_a_bug_reported_at_once() -> None:
    cache = BufferCache(RamDevice(16), capacity=8)
    bh = cache.bread(3)
    bh.release()
    with pytest.raises(RuntimeError, match="not held"):
        bh.release()


def test_pinned_buffers_are_not_written_back() -> None:
    dev = RamDevice(16)
    cache = BufferCache(dev, capacity=8)
    owner = object()  # a transaction
    with cache.bread(3) as bh:
        cache.pin(bh, owner)  # what the journal does while a transaction holds it
        bh.data[:] = 5
        bh.mark_dirty()
    assert cache.writeback() == 0 and int(dev.blocks[3, 0]) == 0
    cache.unpin([bh], owner)
    assert cache.writeback() == 1 and int(dev.blocks[3, 0]) == 5


def test_out_of_range_blocks_are_refused() -> None:
    cache = BufferCache(RamDevice(16), capacity=8)
    for call in (cache.bread, cache.getblk):
        with pytest.raises(OSError) as e:
            call(16)
        assert e.value.errno == errno.EINVAL


def test_a_failed_read_leaves_the_cache_usable() -> None:
    dev = FaultDevice(RamDevice(16))
    dev.inner.write_blocks(4, [b"\x07" * 4096])
    cache = BufferCache(dev, capacity=8)
    dev.inject(Fault("read", blocks={4}))
    with pytest.raises(OSError) as e:
        cache.bread(4)
    assert e.value.errno == errno.EIO
    assert cache.cached(4) is None
    with cache.bread(4) as bh:
        assert int(bh.data[0]) == 7
    for n in range(16):  # every slot still usable
        cache.bread(n).release()


def test_reads_land_in_aligned_arena_slots_on_an_o_direct_image(tmp_path: Path) -> None:
    with ImageDevice(make_image(tmp_path / "a.img", 32)) as dev:
        assert dev.direct_io
        cache = BufferCache(dev, capacity=16)
        with cache.getblk(5) as bh:
            bh.data[:] = 0x5A
            bh.mark_dirty()
        cache.sync()
        cache.invalidate([5])
        with cache.bread(5) as bh:
            assert is_aligned(bh.data) and int(bh.data[4095]) == 0x5A


def test_threads_incrementing_shared_blocks_lose_nothing() -> None:
    dev = RamDevice(64)
    cache = BufferCache(dev, capacity=16, readahead_max=4)
    per_thread, blocks = 400, 6

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(per_thread):
            n = int(rng.integers(blocks))
            with cache.bread(n) as bh:
                with bh.lock:
                    counter = bh.data[:8].view(np.uint64)
                    counter[0] += 1
                    bh.mark_dirty()
            cache.bread(int(rng.integers(16, 64))).release()  # churn: forces eviction

    run_threads(worker, 4)
    cache.sync()
    total = sum(int(dev.blocks[n, :8].view(np.uint64)[0]) for n in range(blocks))
    assert total == 4 * per_thread


@given(st.lists(st.integers(0, 31), min_size=1, max_size=60))
def test_concurrent_readers_see_the_disk(order: list[int]) -> None:
    dev = RamDevice(32)
    for n in range(32):
        dev.blocks[n] = n
    cache = BufferCache(dev, capacity=8, readahead_max=8)
    bad: list[int] = []

    def reader(seq: list[int]) -> None:
        for n in seq:
            with cache.bread(n) as bh:
                if int(bh.data[0]) != n or int(bh.data[-1]) != n:
                    bad.append(n)

    run_threads(lambda i: reader(order[i::3] + order), 3)
    assert not bad


def test_writeback_of_more_adjacent_blocks_than_iov_max(disk_dir) -> None:  # type: ignore[no-untyped-def]
    """pwritev takes at most IOV_MAX (1024) buffers: long runs are split (found by the
    xv6 benchmark: a 64 MiB file written back in one run failed with EINVAL)."""
    from bento_user.blockdev import ImageDevice
    from bento_user.ks_emul import BufferCache
    from tests.conftest import make_image
    with ImageDevice(make_image(disk_dir / "run.img", 3000)) as dev:
        cache = BufferCache(dev, capacity=3000)
        for n in range(2500):
            with cache.getblk(n) as bh:
                bh.data[0] = n % 256
                bh.mark_dirty()
        assert cache.writeback() == 2500
        assert dev.read_block(2499)[0] == 2499 % 256


def test_eviction_never_looks_past_buffers_that_cannot_go() -> None:
    """Allocation is O(1): with most of the cache dirty, held or pinned, each miss
    evicts the least recently released evictable buffer straight away."""
    dev = RamDevice(4096)
    cache = BufferCache(dev, capacity=1024, readahead_max=1)
    owner = object()
    held = [cache.bread(n) for n in range(300)]
    for bh in held[:200]:
        cache.pin(bh, owner)
        bh.mark_dirty()
    for n in range(300, 900):
        with cache.bread(n) as bh:
            bh.mark_dirty()
    for n in range(900, 1024):
        cache.bread(n).release()
    cache.check_invariants()
    assert len(cache._lru) == 124 and next(iter(cache._lru)) == 900
    cache.bread(2000).release()
    assert cache.cached(900) is None and cache.cached(901) is not None
    assert cache.statistics().stalls == 0
    cache.check_invariants()
    for bh in held:
        bh.release()
    cache.unpin(held, owner)
    cache.check_invariants()


def test_the_background_writer_keeps_dirty_buffers_below_its_threshold() -> None:
    from bento_user.ks_emul import WritebackLimits
    dev = RamDevice(512)
    limits = WritebackLimits(background_ratio=0.1, hard_ratio=0.5, interval=0.05)
    cache = BufferCache(dev, capacity=256, limits=limits)
    cache.start_writeback()
    try:
        for n in range(100):
            with cache.getblk(n) as bh:
                bh.data[:] = n % 250 + 1
                bh.mark_dirty()
        deadline = time.monotonic() + 10
        while cache.statistics().dirty >= cache.limits.background:
            assert time.monotonic() < deadline, "the background writer did not run"
            time.sleep(0.01)
        stats = cache.statistics()
        assert stats.background_writes > 0 and stats.stalls == 0
        written = [n for n in range(100) if int(dev.blocks[n, 0]) == n % 250 + 1]
        assert written and written == list(range(len(written)))  # oldest first
        cache.check_invariants()
    finally:
        cache.stop_writeback()


def test_a_writer_past_the_hard_limit_writes_back_itself() -> None:
    from bento_user.ks_emul import WritebackLimits
    dev = RamDevice(512)
    limits = WritebackLimits(background_ratio=0.1, hard_ratio=0.2, interval=60)
    cache = BufferCache(dev, capacity=256, limits=limits)
    cache.start_writeback(background=False)  # the throttle alone
    for n in range(200):
        with cache.getblk(n) as bh:
            bh.mark_dirty()
        assert cache.statistics().dirty <= cache.limits.hard
    assert cache.statistics().throttled > 0 and cache.statistics().background_writes == 0
    cache.stop_writeback()


def test_an_age_limit_writes_old_dirty_buffers_below_the_threshold() -> None:
    from bento_user.ks_emul import WritebackLimits
    dev = RamDevice(64)
    cache = BufferCache(dev, capacity=64, limits=WritebackLimits(expire=0.05, interval=0.02))
    cache.start_writeback()
    try:
        with cache.getblk(7) as bh:
            bh.data[:] = 9
            bh.mark_dirty()
        deadline = time.monotonic() + 10
        while int(dev.blocks[7, 0]) != 9:
            assert time.monotonic() < deadline, "an old dirty buffer stayed dirty"
            time.sleep(0.01)
    finally:
        cache.stop_writeback()
