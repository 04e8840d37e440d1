"""An xv6 file system on a RAM disk, opened through the direct runtime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bento_user.api import FsckReport
from bento_user.blockdev import RamDevice
from bento_user.runtime.direct import DirectRuntime, PathClient
from filesystems.xv6 import Xv6, mkfs
from filesystems.xv6.fsck import fsck


def fresh_device(nblocks: int = 16384, **mkfs_args: int) -> RamDevice:
    dev = RamDevice(nblocks)
    mkfs(dev, **mkfs_args)
    return dev


def remount(dev: RamDevice) -> RamDevice:
    """A copy of what is on the device now (as after a power cut)."""
    return RamDevice.from_bytes(dev.image())


def check(dev: RamDevice) -> FsckReport:
    report = fsck(remount(dev))
    assert report.problems == []
    return report


class Mounted:
    def __init__(self, dev: RamDevice) -> None:
        self.dev = dev
        self.rt = DirectRuntime.open(Xv6(), dev, commit_interval=None, debug_locks=True)
        self.c: PathClient = self.rt.client()

    def reopen(self) -> None:
        """Unmount cleanly and mount a copy of the image."""
        self.c.close_all()
        self.rt.close()
        self.dev = RamDevice.from_bytes(self.dev.image())
        self.rt = DirectRuntime.open(Xv6(), self.dev, commit_interval=None, debug_locks=True)
        self.c = self.rt.client()


@pytest.fixture
def mounted() -> Iterator[Mounted]:
    m = Mounted(fresh_device())
    yield m
    if not m.rt.closed:
        m.c.close_all()
        m.rt.close()
        check(m.dev)
