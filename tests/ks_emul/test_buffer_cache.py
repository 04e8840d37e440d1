"""The buffer cache against a dict model, plus eviction, readahead, write-back merging
and several threads."""

from __future__ import annotations

import errno
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

    @rule()
    def writeback(self) -> None:
        self.cache.writeback()
        assert self.cache.statistics().dirty == 0

    @rule()
    def sync(self) -> None:
        self.cache.sync()
        for n in range(NBLOCKS):
            assert int(self.dev.blocks[n, 0]) == self.model.get(n, 0)

    @invariant()
    def within_capacity(self) -> None:
        st_ = self.cache.statistics()
        assert st_.cached <= st_.capacity

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
    with cache.bread(3) as bh:
        bh.jtrans = object()  # what the journal does while a transaction holds it
        bh.data[:] = 5
        bh.mark_dirty()
    assert cache.writeback() == 0 and int(dev.blocks[3, 0]) == 0
    bh.jtrans = None
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
