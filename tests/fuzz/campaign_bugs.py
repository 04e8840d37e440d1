"""File systems with a bug, by name, for campaigns: a Dask worker is another process,
so the bug must live in a class it can import (``--fs tests.fuzz.campaign_bugs:X``),
not in a monkeypatch of this one (tests/injected_bugs.py)."""

from __future__ import annotations

import dataclasses
import errno
import stat
import threading
import time

from bento_user.api import Attr, FileHandle, FsError, InodeNo, Request
from bento_user.ks_emul import KernelServices
from filesystems.xv6 import Xv6


class FsyncForgets(Xv6):
    """fsync flushes the device but commits nothing: the crash fuzzer's to find."""

    def fsync(self, fh: FileHandle, datasync: bool) -> None:
        self.ks.device.flush()


class SizeOffByOne(Xv6):
    """A regular file over 5000 bytes says it is a byte longer: the ops fuzzer's."""

    def getattr(self, req: Request, ino: InodeNo) -> Attr:
        attr = super().getattr(req, ino)
        if stat.S_ISREG(attr.mode) and attr.size > 5000:
            return dataclasses.replace(attr, size=attr.size + 1)
        return attr


class MkdirIgnoresMode(Xv6):
    """mkdir makes every directory 0700, whatever it was asked: the ops fuzzer's, found
    in most sequences and shrunk in seconds (for tests that shrink)."""

    def mkdir(self, req: Request, parent: InodeNo, name: bytes, mode: int) -> Attr:
        return super().mkdir(req, parent, name, 0o700)


class HangsOnMount(Xv6):
    """Mount never returns: the image fuzzer's time bound must stop it."""

    def init(self, ks: KernelServices) -> None:
        super().init(ks)
        while True:
            time.sleep(0.001)


class GreedyOnMount(Xv6):
    """Mount takes memory without end: the image fuzzer's memory bound must stop it."""

    def init(self, ks: KernelServices) -> None:
        super().init(ks)
        hoard = []
        while True:
            hoard.append(bytearray(16 << 20))  # zeroed, so resident


class DeadlocksOnMount(Xv6):
    """Mount waits for a lock it holds: off the main thread no bound can stop a blocked
    lock wait, so the campaign must notice the stuck shard itself."""

    def init(self, ks: KernelServices) -> None:
        super().init(ks)
        held = threading.Lock()
        held.acquire()
        held.acquire()


class LosesTheAlarm(Xv6):
    """write never returns, and whatever stops it comes out as a plain EIO (as when a
    cleanup on the way out fails): the image fuzzer's time bound must still hold."""

    def write(self, fh: FileHandle, offset: int, data: bytes | memoryview) -> int:
        while True:
            try:
                time.sleep(0.001)
            except BaseException:
                raise FsError(errno.EIO, "cleanup failed") from None
