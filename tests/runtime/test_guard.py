"""The guard (runtime/guard.py): an operation that raises is undone — its journaled
blocks put back, the file system reloaded from them — or, where that cannot be
done, changes turn read-only; the fault fuzzer catches a runtime that does neither."""

from __future__ import annotations

import errno
import os

import pytest

from bento_user.api import ROOT_REQUEST, Attr, FsError, InodeNo, Request, UpgradeState
from bento_user.blockdev import RamDevice
from bento_user.runtime.direct import DirectRuntime
from bento_user.runtime.guard import Guard
from filesystems.xv6 import Xv6
from fuzz import ops
from fuzz.target import Target


class HalfMkdir(Xv6):
    """mkdir raises after it has made the directory: a bug at an operation's end."""

    def mkdir(self, req: Request, parent: InodeNo, name: bytes, mode: int) -> Attr:
        attr = super().mkdir(req, parent, name, mode)
        if name == b"half":
            raise ZeroDivisionError("injected")
        return attr


class HalfMkdirNoUpgrade(HalfMkdir):
    def prepare_upgrade(self) -> UpgradeState:
        raise FsError(errno.ENOSYS)


def runtime(cls: type[Xv6]) -> tuple[DirectRuntime, RamDevice]:
    dev = RamDevice(4096)
    cls.mkfs(dev)
    return DirectRuntime.open(cls(), dev, commit_interval=None), dev


def test_journal_undo_puts_blocks_back() -> None:
    rt, _ = runtime(Xv6)
    j = rt.ks.journal
    assert j is not None
    block = rt.ks.device.nblocks - 1
    with rt.ks.bread(block) as bh:
        before = bh.data.copy()
    j.undo_begin()
    with j.start(2) as h, rt.ks.bread(block) as bh:
        h.get_write_access(bh)
        bh.data[:] = 7
        h.dirty_metadata(bh)
    undo = j.undo_end()
    assert undo is not None and len(undo) == 1
    assert j.undo(undo) == 1
    with rt.ks.bread(block) as bh:
        assert (bh.data == before).all()
    rt.close()


def test_a_failed_operation_leaves_no_trace() -> None:
    rt, dev = runtime(HalfMkdir)
    c = rt.client()
    c.mkdir(b"/kept")
    free = rt.call("statfs", ROOT_REQUEST)
    with pytest.raises(ZeroDivisionError):
        c.mkdir(b"/half")
    assert c.listdir(b"/") == [b"kept"]   # without the guard: [b"half", b"kept"]
    assert rt.call("statfs", ROOT_REQUEST) == free  # the allocator was read again
    c.mkdir(b"/after")
    assert rt.guard.undone == 1 and rt.guard.read_only is None
    rt.close()
    assert Xv6.fsck(RamDevice.from_bytes(dev.image())).problems == []


def test_without_live_upgrade_changes_turn_read_only() -> None:
    rt, _ = runtime(HalfMkdirNoUpgrade)
    c = rt.client()
    with pytest.raises(ZeroDivisionError):
        c.mkdir(b"/half")
    assert rt.guard.read_only is not None and "mkdir failed" in rt.guard.read_only
    with pytest.raises(OSError) as e:
        c.mkdir(b"/other")
    assert e.value.errno == errno.EROFS
    with pytest.raises(OSError) as e:
        c.open(b"/f", os.O_WRONLY | os.O_CREAT)
    assert e.value.errno == errno.EROFS
    c.listdir(b"/")  # reads go on
    rt.close()


def test_the_fault_fuzzer_finds_a_runtime_that_does_not_undo(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Guard, "_abort", lambda self, op, args, error: None)
    result = ops.run(Target.load("xv6"), examples=60, seed=1, shrink=False)
    assert result.failure is not None and result.faults > 0
