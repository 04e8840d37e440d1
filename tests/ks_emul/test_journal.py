"""The journal's rules, one behaviour per test: commit, force, ordered data, revoke,
escaping, wrap-around, checksums, aborts, the timer and several threads."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from bento_user.blockdev import BlockDevice, Buffer, Fault, FaultDevice, RamDevice, RecordingDevice
from bento_user.ks_emul import (
    Journal,
    JournalAbortedError,
    JournalCorruptError,
    JournalError,
    KernelServices,
    ManualClock,
)
from bento_user.ks_emul import _journal_format as fmt
from bento_user.ks_emul._recovery import recover
from tests.conftest import run_threads
from tests.ks_emul.journal_workload import (
    AREA_LEN,
    AREA_START,
    HOME,
    UUID,
    Txn,
    apply_txn,
    formatted_ram,
    home_state,
    ks_on,
    recover_image,
    run,
)


def opened(dev: object, **kw: object) -> tuple[KernelServices, Journal]:
    ks = KernelServices(dev, cache_blocks=64, commit_interval=None, **kw)  # type: ignore[arg-type]
    j, _ = ks.open_journal(AREA_START, AREA_LEN, UUID)
    return ks, j


def test_changes_are_home_after_a_clean_close() -> None:
    ram = formatted_ram()
    ks, j = opened(ram)
    for i in range(5):
        apply_txn(j, ks, Txn({HOME[i]: i + 1}))
    assert int(ram.blocks[HOME[0], 0]) == 0  # nothing home before commit + checkpoint
    ks.close()
    assert [int(ram.blocks[n, 0]) for n in HOME[:5]] == [1, 2, 3, 4, 5]
    sb = fmt.read_superblock(ram.blocks[AREA_START], fmt.checksum_seed(UUID))
    assert sb.start == 0  # clean: nothing to recover


def test_handles_between_forces_share_one_commit() -> None:
    r = run([Txn({100: 1}), Txn({101: 2}), Txn({102: 3}), "force", Txn({103: 4}), "force"])
    stats = r.journal.statistics()
    assert stats.commits == 2 and stats.blocks_logged == 4


def test_force_commit_is_durable_when_it_returns() -> None:
    r = run([Txn({100: 7}), Txn({101: 8}), "force", Txn({102: 9})])
    at_force = r.durable[0][0]
    before = home_state(recover_image(r.rec.crash_image(at_force - 1)))
    after = home_state(recover_image(r.rec.crash_image(r.rec.epochs)))
    assert (before[100], before[101]) == (0, 0)
    assert (after[100], after[101], after[102]) == (7, 8, 0)


def test_uncommitted_buffers_stay_off_their_home() -> None:
    ram = formatted_ram()
    ks, j = opened(ram)
    apply_txn(j, ks, Txn({100: 5}))
    ks.cache.writeback()
    assert int(ram.blocks[100, 0]) == 0  # pinned by the running transaction
    j.force_commit()
    ks.cache.writeback()
    assert int(ram.blocks[100, 0]) == 5  # committed: write-back may take it home


def test_ordered_data_is_written_and_flushed_before_the_commit_block() -> None:
    rec = RecordingDevice(formatted_ram())
    ks, j = opened(rec)
    with j.start(1) as h:
        with ks.getblk(50) as data:
            data.data[:] = 0xDA
            data.mark_dirty()
            h.ordered_data(data)
        with ks.bread(100) as bh:
            h.get_write_access(bh)
            bh.data[:] = 1
            h.dirty_metadata(bh)
    j.force_commit()
    data_seq = next(w.seq for w in rec.writes if w.blockno == 50)
    commit_seq = next(w.seq for w in rec.writes
                      if AREA_START < w.blockno < AREA_START + AREA_LEN
                      and fmt.header_of(np.frombuffer(w.data, np.uint8))[1] == fmt.COMMIT)
    assert data_seq < commit_seq
    assert any(data_seq < fp <= commit_seq for fp in rec.flush_points)


@pytest.mark.parametrize("revoke", [True, False])
def test_a_revoke_keeps_freed_metadata_from_replaying_over_new_data(revoke: bool) -> None:
    rec = RecordingDevice(formatted_ram())
    ks, j = opened(rec)
    apply_txn(j, ks, Txn({100: 0xAA}))  # block 100 is metadata ...
    j.force_commit()
    with j.start(1) as h:                  # ... then freed ...
        if revoke:
            h.revoke(100)
    j.force_commit()
    with j.start(1) as h:                  # ... and, once that committed, reused for data
        with ks.getblk(100) as bh:
            bh.data[:] = 0xDD
            bh.mark_dirty()
            h.ordered_data(bh)
    j.force_commit()
    home = home_state(recover_image(rec.crash_image(rec.epochs)))
    assert home[100] == (0xDD if revoke else 0xAA)  # without it, stale metadata wins


def test_a_block_freed_in_a_running_transaction_keeps_its_old_contents() -> None:
    """Until the freeing transaction commits, the block is in use on disk: its
    uncommitted contents must not reach it, and it cannot become data yet."""
    rec = RecordingDevice(formatted_ram())
    ks, j = opened(rec)
    apply_txn(j, ks, Txn({101: 1}))
    j.force_commit()
    apply_txn(j, ks, Txn({101: 2}))
    apply_txn(j, ks, Txn({}, revokes=[101]))
    ks.cache.writeback()
    assert int(rec.inner.blocks[101, 0]) == 0  # neither 2 (uncommitted) nor written
    with j.start(1) as h, ks.bread(101) as bh:
        with pytest.raises(JournalError, match="cannot be reused as data"):
            h.ordered_data(bh)
    home = home_state(recover_image(rec.crash_image(rec.epochs)))
    assert home[101] == 1


def test_relogging_a_revoked_block_cancels_the_revoke() -> None:
    r = run([Txn({100: 1}), "force", Txn({100: 2}, revokes=[100]), "force"])
    assert home_state(recover_image(r.rec.crash_image(r.rec.epochs)))[100] == 2


def test_blocks_that_look_like_journal_blocks_are_escaped() -> None:
    rec = RecordingDevice(formatted_ram())
    ks, j = opened(rec)
    content = np.frombuffer(fmt.MAGIC_BYTES * 1024, np.uint8)
    with j.start(1) as h, ks.bread(100) as bh:
        h.get_write_access(bh)
        bh.data[:] = content
        h.dirty_metadata(bh)
    j.force_commit()
    dev = recover_image(rec.crash_image(rec.epochs))
    assert (dev.blocks[100] == content).all()


def test_the_log_wraps_around_and_checkpoints_under_space_pressure() -> None:
    steps: list = []
    for i in range(40):
        steps += [Txn({HOME[i % 12]: i + 1, HOME[(i + 5) % 12]: i + 1}), "force"]
    r = run(steps)
    stats = r.journal.statistics()
    assert stats.log_blocks > 2 * stats.log_size and stats.checkpoints > 5
    home = home_state(recover_image(r.rec.crash_image(r.rec.epochs)))
    assert all(home[n] == v for n, v in r.states[-1].items())


def test_a_flipped_bit_in_any_journal_block_stops_replay_there() -> None:
    rec = RecordingDevice(formatted_ram())
    ks, j = opened(rec)
    for i in range(5):
        apply_txn(j, ks, Txn({HOME[i]: i + 1, HOME[i + 5]: i + 1}))
        j.force_commit()
    layout = [(t.log_start, t.log_len) for t in j._log]
    image = rec.crash_image(rec.epochs)
    rng = np.random.default_rng(0)
    checked = 0
    for t_index, (start, length) in enumerate(layout):
        for pos in range(start, start + length):
            bad = image.copy()
            bit = int(rng.integers(4096 * 8))
            bad[AREA_START + pos, bit // 8] ^= 1 << (bit % 8)
            dev = RamDevice.from_bytes(bad)
            report = recover(ks_on(dev).cache, AREA_START, AREA_LEN, UUID)
            assert report.transactions == t_index, (pos, report.stop_reason)
            home = home_state(dev)
            assert [home[HOME[i]] for i in range(5)] == [i + 1 if i < t_index else 0
                                                        for i in range(5)]
            checked += 1
    assert checked == sum(n for _, n in layout)
    bad = image.copy()
    bad[AREA_START, 40] ^= 0x10
    with pytest.raises(JournalCorruptError, match="checksum"):
        recover(ks_on(RamDevice.from_bytes(bad)).cache, AREA_START, AREA_LEN, UUID)


def test_a_journal_of_another_file_system_is_refused() -> None:
    ram = formatted_ram()
    ks = ks_on(ram)
    with pytest.raises(JournalCorruptError, match="wrong uuid or corrupt"):
        ks.open_journal(AREA_START, AREA_LEN, bytes(16))
    with pytest.raises(JournalCorruptError, match="length 24 is not the 30 blocks"):
        ks.open_journal(AREA_START, 30, UUID)


def test_handle_rules_are_enforced() -> None:
    ks, j = opened(formatted_ram())
    with pytest.raises(ValueError, match="credits"):
        j.start(j.max_transaction + 1)
    h = j.start(1)
    with pytest.raises(JournalError, match="already holds"):
        j.start(1)
    with pytest.raises(JournalError, match="would wait for itself"):
        j.force_commit()
    a, b = ks.bread(100), ks.bread(101)
    h.get_write_access(a)
    h.get_write_access(a)  # the same block again costs nothing
    with pytest.raises(JournalError, match="out of credits"):
        h.get_write_access(b)
    with pytest.raises(JournalError, match="without get_write_access"):
        h.dirty_metadata(b)
    h.stop()
    with pytest.raises(JournalError, match="already stopped"):
        h.stop()
    a.release()
    b.release()
    fresh = Journal(ks.cache, AREA_START, AREA_LEN, UUID, commit_interval=None)
    with pytest.raises(JournalError, match="before journal.load"):
        fresh.start(1)


def test_the_timer_commits_an_old_transaction() -> None:
    clock = ManualClock()
    ks = KernelServices(formatted_ram(), cache_blocks=64, clock=clock, commit_interval=0.02)
    j, _ = ks.open_journal(AREA_START, AREA_LEN, UUID)
    apply_txn(j, ks, Txn({100: 1}))
    time.sleep(0.1)
    assert j.statistics().timer_commits == 0  # not old enough by the journal's clock
    clock.advance(10**9)
    deadline = time.monotonic() + 20
    while j.statistics().timer_commits == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert j.statistics().timer_commits == 1
    ks.close()


class LogGate(FaultDevice):
    """Holds every write into the journal's area while ``open`` is clear, so a test
    can see who waits for a commit's I/O."""

    def __init__(self, inner: BlockDevice) -> None:
        super().__init__(inner)
        self.open, self.held = threading.Event(), threading.Event()
        self.open.set()

    def _write(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        if not self.open.is_set() and start < AREA_START + AREA_LEN:
            self.held.set()
            self.open.wait()
        super()._write(start, buffers, count)


def test_a_full_transaction_is_committed_by_the_journal_thread_not_the_next_handle() -> None:
    """jbd2's way: the handle that finds the running transaction full waits only until
    it is closed to new handles, then joins the next one while the commit's I/O runs
    in the background (a 100 ms stall per full transaction on a request, before)."""
    ram = formatted_ram()
    gate = LogGate(ram)
    ks = KernelServices(gate, cache_blocks=64, commit_interval=3600)  # the timer stays quiet
    j, _ = ks.open_journal(AREA_START, AREA_LEN, UUID)
    apply_txn(j, ks, Txn({n: 7 for n in HOME[:j.max_transaction]}))  # full
    gate.open.clear()
    joined = threading.Event()

    def next_handle() -> None:
        apply_txn(j, ks, Txn({HOME[-1]: 9}))
        joined.set()

    worker = threading.Thread(target=next_handle)
    worker.start()
    try:
        assert gate.held.wait(10), "the full transaction was never committed"
        assert joined.wait(10), "the next handle waited for the commit's I/O"
        assert j.statistics().commits == 0  # the first commit is still being written
    finally:
        gate.open.set()
        worker.join()
    ks.close()
    assert [int(ram.blocks[n, 0]) for n in HOME[:j.max_transaction]] == [7] * j.max_transaction
    assert int(ram.blocks[HOME[-1], 0]) == 9


def test_a_failed_background_commit_gives_the_waiting_handle_erofs() -> None:
    gate = LogGate(formatted_ram())
    ks = KernelServices(gate, cache_blocks=64, commit_interval=3600)
    j, _ = ks.open_journal(AREA_START, AREA_LEN, UUID)
    apply_txn(j, ks, Txn({n: 7 for n in HOME[:j.max_transaction]}))  # full
    gate.inject(Fault("write", blocks=range(AREA_START, AREA_START + AREA_LEN)))
    with pytest.raises(JournalAbortedError) as e:
        j.start(1)
    assert e.value.errno == errno.EROFS
    ks.close()


def test_an_io_error_aborts_the_journal_and_keeps_the_disk_committed() -> None:
    rec = RecordingDevice(formatted_ram())
    fault = FaultDevice(rec)
    ks, j = opened(fault)
    apply_txn(j, ks, Txn({100: 1}))
    j.force_commit()
    apply_txn(j, ks, Txn({101: 2}))
    fault.inject(Fault("write", blocks=range(AREA_START, AREA_START + AREA_LEN)))
    with pytest.raises(OSError) as e:
        j.force_commit()
    assert e.value.errno == errno.EIO
    with pytest.raises(JournalAbortedError) as e2:
        j.start(1)
    assert e2.value.errno == errno.EROFS and "aborted" in str(e2.value)
    home = home_state(recover_image(rec.crash_image(rec.epochs)))
    assert (home[100], home[101]) == (1, 0)


def test_threads_sharing_blocks_commit_every_increment() -> None:
    ram = formatted_ram()
    ks, j = opened(ram)
    rounds = 150

    def worker(me: int) -> None:
        rng = np.random.default_rng(me)
        for i in range(rounds):
            with j.start(2) as h:
                for n in (100, 101 + me):  # a block all threads share, and one each
                    with ks.bread(n) as bh:
                        with bh.lock:
                            h.get_write_access(bh)
                            bh.data[:8].view(np.uint64)[0] += 1
                            h.dirty_metadata(bh)
            if rng.random() < 0.1:
                j.force_commit()

    run_threads(worker, 4)
    ks.close()
    count = lambda n: int(ram.blocks[n, :8].view(np.uint64)[0])  # noqa: E731
    assert count(100) == 4 * rounds
    assert [count(101 + m) for m in range(4)] == [rounds] * 4


def test_big_transactions_span_several_descriptor_and_revoke_blocks() -> None:
    """300 logged blocks need two descriptors (255 tags each); 600 revokes need two
    revoke blocks (509 records each)."""
    rec = RecordingDevice(RamDevice(8192))
    ks = KernelServices(rec, cache_blocks=4096, commit_interval=None)
    Journal.format(ks.cache, 1, 4000, UUID)
    j, _ = ks.open_journal(1, 4000, UUID)
    logged, revoked = range(5000, 5300), range(6000, 6600)
    with j.start(600) as h:  # first, the soon-to-be-revoked blocks hold metadata
        for n in revoked:
            with ks.getblk(n) as bh:
                h.get_create_access(bh)
                bh.data[:] = 0xEE
                h.dirty_metadata(bh)
    j.force_commit()
    with j.start(900) as h:
        for n in revoked:
            h.revoke(n)
        for n in logged:
            with ks.getblk(n) as bh:
                h.get_create_access(bh)
                bh.data[:] = n % 251
                h.dirty_metadata(bh)
    j.force_commit()
    headers = [fmt.header_of(np.frombuffer(w.data, np.uint8))[1] for w in rec.writes]
    assert headers.count(fmt.DESCRIPTOR) == 3 + 2  # 600 blocks, then 300
    assert headers.count(fmt.REVOKE) == 2
    dev = RamDevice.from_bytes(rec.crash_image(rec.epochs))
    report = recover(ks_on(dev).cache, 1, 4000, UUID)
    assert report.blocks_revoked == 600
    assert all(int(dev.blocks[n, 0]) == n % 251 for n in logged)
    assert not dev.blocks[6000:6600].any()  # revoked: the 0xEE copies never replayed
