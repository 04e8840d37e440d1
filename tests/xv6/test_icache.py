"""The inode cache's bound (issue 23): inodes the kernel holds by lookups leave memory
past the target like any idle inode, come back intact, and still go when the last
lookup of an unlinked one is forgotten. Before: every looked-up inode stayed in
memory until the kernel forgot it (the table grew with the kernel's dentry cache)."""

from __future__ import annotations

import stat

import pytest

from bento_user.api import Request
from filesystems.xv6 import _icache

from .conftest import Mounted

TARGET = 64


@pytest.fixture
def small_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_icache, "TARGET", TARGET)


def test_inodes_the_kernel_holds_leave_memory_and_come_back(small_cache: None,
                                                            mounted: Mounted) -> None:
    rt, c, fs = mounted.rt, mounted.c, mounted.rt.fs
    fs.icache._limit = TARGET
    c.mkdir("/d")
    d = c.stat("/d").ino
    inos = [rt.call("mknod", Request(), d, b"f%d" % i, stat.S_IFREG | 0o640, 0).ino
            for i in range(400)]  # each counted once and never forgotten
    assert len(fs.icache.table) <= TARGET * 3 // 2 + 2
    assert (fs.icache.lookups[inos] == 1).all()
    held = fs.icache.iget(inos[-1])  # in someone's hands: never dropped under them
    for i in range(400, 600):
        rt.call("mknod", Request(), d, b"f%d" % i, stat.S_IFREG | 0o640, 0)
    assert fs.icache.table.get(inos[-1]) is held
    # dropped ones load again as they were; unlinking one out of memory, then the
    # kernel's forget, frees it
    assert inos[0] not in fs.icache.table
    assert stat.S_IMODE(rt.call("getattr", Request(), inos[0]).mode) == 0o640
    for i in range(0, 100):
        rt.call("unlink", Request(), d, b"f%d" % i)
    rt.call("forget", [(ino, 1) for ino in inos[:100]])
    assert fs.alloc.free_inodes >= 100 and not any(ino in fs.orphans for ino in inos[:100])
    mounted.reopen()
    assert len(mounted.c.listdir("/d")) == 500


def test_files_written_straight_to_the_device_leave_memory_once_a_commit_flushed(
        small_cache: None, mounted: Mounted) -> None:
    """A write of 16 blocks or more goes to the device around the journal and owes
    fsync a flush; a journal commit's flush pays that debt as well as fsync's would.
    Before: such an inode stayed in memory until its own fsync (an untar of many
    large files grew the table without bound)."""
    rt, c, fs = mounted.rt, mounted.c, mounted.rt.fs
    fs.icache._limit = TARGET
    c.mkdir("/big")
    for i in range(200):
        c.write_bytes(f"/big/f{i}", bytes([i]) * (64 * 1024))
        if i % 20 == 19:
            rt.ks.journal.force_commit()  # as the 5 s timer would
    assert len(fs.icache.table) <= TARGET * 3 // 2 + 2
    assert len(fs.icache.indebted) <= len(fs.icache.table)  # not one per file written
    fd = c.open("/big/f199", 2)
    c.fsync(fd)  # the last ones may still owe it: fsync flushes once for them
    c.close(fd)
    mounted.reopen()
    assert mounted.c.read_bytes("/big/f7") == bytes([7]) * (64 * 1024)
