"""Crash consistency of the journal: random transactions on a recording device, every
crash point recovered and checked against the prefix oracle."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bento_user.ks_emul import Journal
from bento_user.ks_emul._recovery import recover
from tests.ks_emul.journal_workload import (
    AREA_LEN,
    AREA_START,
    HOME,
    UUID,
    Txn,
    check_crashes,
    home_state,
    ks_on,
    recover_image,
    run,
)

values = st.integers(1, 255)
txns = st.builds(
    Txn,
    writes=st.dictionaries(st.sampled_from(HOME), values, min_size=1, max_size=3),
    revokes=st.lists(st.sampled_from(HOME), max_size=1, unique=True),
)
steps = st.lists(st.one_of(txns, txns, st.just("force"), st.just("writeback")),
                 min_size=1, max_size=20)


@settings(max_examples=300)
@given(steps=steps, seed=st.integers(0, 2**32 - 1))
def test_every_crash_state_recovers_to_a_committed_prefix(steps: list, seed: int) -> None:
    r = run(steps)
    assert check_crashes(r, random.Random(seed)) == []


@settings(max_examples=60)
@given(steps=steps, seed=st.integers(0, 2**32 - 1))
def test_recovery_is_idempotent_even_when_it_crashes(steps: list, seed: int) -> None:
    """Recovering twice equals recovering once, and a crash in the middle of recovery
    followed by another recovery gives the same disk too."""
    from bento_user.blockdev import RamDevice, RecordingDevice

    r = run(steps)
    rng = random.Random(seed)
    epoch = rng.randint(0, r.rec.epochs)
    keep = [i for i in range(len(r.rec.in_flight(epoch))) if rng.random() < 0.5]
    crashed = r.rec.crash_image(epoch, keep)
    once = recover_image(crashed)
    twice = RamDevice.from_bytes(once.blocks)
    report = recover(ks_on(twice).cache, AREA_START, AREA_LEN, UUID)
    assert not report.needed and (twice.blocks == once.blocks).all()

    rec = RecordingDevice(RamDevice.from_bytes(crashed))
    recover(ks_on(rec).cache, AREA_START, AREA_LEN, UUID)
    for e in range(rec.epochs + 1):
        for k in range(len(rec.in_flight(e)) + 1):
            again = recover_image(rec.crash_image(e, range(k)))
            assert home_state(again) == home_state(once)


def test_the_oracle_catches_a_commit_that_is_not_flushed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal whose force_commit returns before the commit block is durable must
    fail the check: the test can fail."""
    def unflushed_commit(self: Journal, t, plan) -> None:  # type: ignore[no-untyped-def]
        self.cache.writeback(list(t.data.values()))
        blocks = plan.seal(t.tid, self.seed, self.clock.now_ns())
        self._write_log(t.log_start, blocks[:-1])
        self.device.flush()
        self._write_log(self._wrap(t.log_start + t.log_len - 1), blocks[-1:])
        # missing: self.device.flush()

    monkeypatch.setattr(Journal, "_write_commit", unflushed_commit)
    r = run([Txn({100: 1}), "force", Txn({101: 2}), "force"])
    failures = check_crashes(r, random.Random(0))
    assert failures and "needs one of states 1" in failures[0]


def test_the_oracle_catches_a_tail_moved_before_home_writes_are_durable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checkpoint must flush home writes before the superblock frees their log space."""
    real_flush_calls: list[int] = []
    original = Journal._checkpoint_oldest

    def sloppy_checkpoint(self: Journal) -> bool:
        dev = self.device
        real_flush = dev.flush
        dev.flush = lambda: real_flush_calls.append(1)  # type: ignore[method-assign]
        try:
            done = original(self)
        finally:
            dev.flush = real_flush  # type: ignore[method-assign]
        return done

    monkeypatch.setattr(Journal, "_checkpoint_oldest", sloppy_checkpoint)
    steps: list = []
    for i, n in enumerate(HOME):  # enough to wrap the 24-block log: checkpoints
        steps += [Txn({n: i + 1}), "force"]
    r = run(steps)
    assert real_flush_calls, "the workload never checkpointed"
    assert check_crashes(r, random.Random(0), per_epoch=16)
