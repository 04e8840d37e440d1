"""The fuzzers' new reach (issue 17), each capability proven on a bug it exists for
(tests/injected_bugs.py), at a fixed seed, unshrunk: what the old fuzzers missed.

- ops: a chown rule and owner/group/mode compared everywhere; offsets at each level
  of the block map (past 4 GiB by a rule that undoes its own write); readdir resumed
  from a cookie while names come and go; two lookups of one file, one forgotten.
  A new rule shifts every later draw, so a rule added means these seeds chosen again.
- crash: the write log's order; log blocks that land with a bit flipped; workloads
  that start from a durable tree and draw their names from what exists, with
  applications' update protocols among the kinds.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from bento_user.blockdev import RamDevice, RecordingDevice, aligned_blocks
from bento_user.ks_emul import _journal_format as fmt
from fuzz import crash, ops
from fuzz.target import Target
from fuzz.write_order import LogArea, order_problems
from tests.injected_bugs import inject

XV6 = Target.load("xv6")


@pytest.mark.parametrize("bug, seed", [
    ("chown-keeps-setuid", 1),
    ("double-indirect-first-block", 3),
    ("lookup-count-dropped", 4),
    ("readdir-cookie-index", 2),
    ("special-bits-not-stored", 2),  # chmod u+s, remount, compare the mode
    ("triple-indirect-first-block", 4),  # a write past 4 GiB, read back a block either side
])
def test_the_ops_fuzzer_catches(bug: str, seed: int) -> None:
    with inject(bug):
        result = ops.run(XV6, examples=25, seed=seed, shrink=False)
    assert result.failure is not None, f"{bug} went unnoticed in {result.examples} sequences"


def _write(rec: RecordingDevice, blockno: int, data: bytes = bytes(4096)) -> None:
    block = aligned_blocks(1, 4096)
    block[0] = np.frombuffer(data, np.uint8)
    rec.write_blocks(blockno, [block])


def _commit_block(tid: int, nblocks: int) -> bytes:
    block = np.zeros(4096, np.uint8)
    c = block[:fmt.COMMIT_DTYPE.itemsize].view(fmt.COMMIT_DTYPE)
    c["header"]["magic"], c["header"]["blocktype"], c["header"]["sequence"] = (
        fmt.MAGIC, fmt.COMMIT, tid)
    c["nblocks"] = nblocks
    return block.tobytes()


def test_a_commit_before_its_blocks_are_flushed_is_a_finding() -> None:
    area = LogArea(start=10, length=20, first=1)
    for flushed in (True, False):
        rec = RecordingDevice(RamDevice(64))
        _write(rec, 11)                      # descriptor
        _write(rec, 12)                      # a data block
        if flushed:
            rec.flush()
        _write(rec, 13, _commit_block(7, 2))
        problems = order_problems(rec, area)
        assert (problems == []) == flushed, problems
    assert "transaction 7" in problems[0] and "log block 12" in problems[0]


def test_log_blocks_landing_with_a_flipped_bit_are_explored_and_survived() -> None:
    workload: list[crash.Op] = [("write", "foo", 0, 5000), ("rename", "foo", "bar"),
                                ("write", "A/foo", 0, 100), ("fsync", "bar")]
    run = crash.execute(XV6, workload)
    states = list(crash.crash_states(run, random.Random(1)))
    flipped = [s for s in states if s.flipped]
    assert flipped and all(run.is_log_block(run.rec.in_flight(s.epoch)[s.flipped[0][0]].blockno)
                           for s in flipped)
    assert all(crash.check(XV6, run, s) is None for s in flipped)


@pytest.mark.parametrize("bug, seed", [
    ("rename-not-atomic", 2),     # needs a rename of an existing file to a new name
    ("fsync-trusts-cache", 5),    # an overwrite, a commit, write-back, then the fsync
    ("rename-over-not-atomic", 1),  # the atomic-replace protocol, cut in the middle
])
def test_the_crash_fuzzer_catches(bug: str, seed: int) -> None:
    """Missed at every seed by workloads that started empty and drew names blindly."""
    with inject(bug):
        result = crash.run_shard(XV6, seed=seed, workloads=20, shrink=False)
    assert result.finding is not None, f"{bug} went unnoticed in {result.workloads} workloads"


def test_an_overwrite_may_land_before_the_size_that_covers_it() -> None:
    """`bento fuzz crash --seed 3` on healthy xv6 once reported lost data here: foo
    recovered at its old size, 100 bytes, with the new write's bytes in its first
    block. An in-place overwrite may reach the disk before the commit that grows
    the file (ordered data on ext4 too): the recovered file is a prefix of a
    version, and the oracle compared it with a whole sector of one."""
    workload: list[crash.Op] = [("write", "foo", 0, 100), ("sync",), ("write", "foo", 0, 5000),
                                ("fsync", "foo")]
    assert crash.replay("xv6", workload, epoch=6, keep=(0,)) is None
    assert crash.explore(XV6, workload) is None
