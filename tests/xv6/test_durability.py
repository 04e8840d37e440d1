"""What fsync promises, however a block left the cache: the data it covers is on disk
when it returns (issue 14 §6)."""

from __future__ import annotations

import os

from bento_user.blockdev import RecordingDevice
from bento_user.runtime.direct import DirectRuntime
from filesystems.xv6 import Xv6

from .conftest import check, fresh_device


def test_fsync_flushes_an_overwrite_that_write_back_already_sent_home() -> None:
    """The overwrite's block was written home without a flush (by the background
    writer, or to make room) and then evicted, after the timer had committed the
    mtime: fsync has nothing left to write or commit, yet it must flush."""
    rec = RecordingDevice(fresh_device())
    rt = DirectRuntime.open(Xv6(), rec, cache_blocks=256, commit_interval=None)
    c = rt.client()
    fd = c.open("f", os.O_CREAT | os.O_RDWR)
    c.pwrite(fd, b"A" * 4096, 0)
    c.fsync(fd)
    c.pwrite(fd, b"B" * 4096, 0)  # an overwrite: a dirty cached block, no allocation
    rt.ks.journal.force_commit()  # what the 5 s timer does: the mtime is committed
    block = rt.fs.bmap.lookup(rt.fs.icache.table[c.fstat(fd).ino], 0)
    assert rt.ks.cache.writeback() >= 1  # the background writer: home, no flush
    rt.ks.cache.invalidate([block])  # and evicted
    c.fsync(fd)
    crashed = rec.crash_device(rec.epochs)  # power cut right after fsync returned
    c.close_all()
    rt.crash()
    after = DirectRuntime.open(Xv6(), crashed, commit_interval=None)
    try:
        assert after.client().read_bytes("f") == b"B" * 4096
    finally:
        after.close()
    check(crashed)
