"""Live upgrade through the direct runtime: what must survive a swap, and every way
a swap can fail leaving the old instance serving exactly as before."""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import Any

import numpy as np
import pytest

from bento_user.api import ROOT_REQUEST, Filesystem, FsError, UpgradeState
from bento_user.blockdev import RamDevice
from bento_user.ks_emul import KernelServices
from bento_user.runtime import loader
from bento_user.runtime.direct import DirectRuntime
from bento_user.runtime.upgrade import UpgradeError, check_plain
from filesystems.xv6 import Xv6

from ..xv6.conftest import check, fresh_device, remount


def open_runtime(dev: RamDevice) -> DirectRuntime:
    return DirectRuntime.open(Xv6(), dev, commit_interval=None, debug_locks=True)


def fresh_xv6() -> type[Filesystem]:
    return loader.load("xv6", fresh=True).cls


def test_handles_lookups_and_orphans_survive() -> None:
    dev = fresh_device()
    rt = open_runtime(dev)
    c = rt.client()
    c.mkdir("/d")
    for i in range(50):
        c.write_bytes(f"/d/f{i}", bytes([i]) * 5000)
    fds = [c.open(f"/d/f{i}", os.O_RDWR) for i in range(10)]
    dirfd = c.open("/d", os.O_RDONLY | os.O_DIRECTORY)
    rootfd = c.open("/", os.O_RDONLY | os.O_DIRECTORY)  # the root is loaded before the state
    c.unlink("/d/f0")  # open but nameless: on the orphan list
    d = rt.call("lookup", ROOT_REQUEST, 1, b"d")
    held = [rt.call("lookup", ROOT_REQUEST, d.ino, f"f{i}".encode()) for i in range(20, 30)]
    c.write_bytes("/d/gone", b"x")
    gone = rt.call("lookup", ROOT_REQUEST, d.ino, b"gone")
    c.unlink("/d/gone")  # nameless, held only by a lookup
    free_before = c.statvfs().files_free

    old = rt.fs
    report = rt.upgrade(fresh_xv6())
    assert rt.fs is not old and type(rt.fs) is not Xv6  # a fresh class, not the cached one
    assert report.pause_s > 0 and report.old == report.new == "filesystems.xv6._fs:Xv6"

    assert c.pread(fds[0], 5000, 0) == bytes([0]) * 5000  # the orphan is still readable
    c.pwrite(fds[3], b"new", 0)
    assert c.pread(fds[3], 3, 0) == b"new"
    assert sorted(n for n, *_ in c.scandir("/d")) == sorted(
        [b".", b".."] + [f"f{i}".encode() for i in range(1, 50)])
    c.close(dirfd)
    c.close(rootfd)
    assert rt.fs.icache.table[1].nopen == 0  # white-box: the root's handle count came over
    rt.call("forget", [(a.ino, 1) for a in held] + [(d.ino, 1)])
    rt.call("forget", [(gone.ino, 1)])  # the last reference: the inode is freed now
    assert c.statvfs().files_free == free_before + 1
    for fd in fds:
        c.close(fd)  # closing f0 frees it too
    assert c.statvfs().files_free == free_before + 2
    rt.close()
    check(dev)


def test_fsync_after_an_upgrade_writes_what_the_old_version_cached() -> None:
    dev = fresh_device()
    rt = open_runtime(dev)
    c = rt.client()
    c.write_bytes("/f", b"a" * 8192)
    c.rt.fs.journal.force_commit()
    rt.ks.cache.sync()
    fd = c.open("/f", os.O_RDWR)
    c.pwrite(fd, b"b" * 4096, 4096)  # an overwrite in the cache: fsync owes it the disk
    rt.upgrade(fresh_xv6())
    c.fsync(fd)
    rt.crash()
    after = open_runtime(remount(dev))
    assert after.client().read_bytes("/f") == b"a" * 4096 + b"b" * 4096
    after.close()


def test_lookup_counts_are_handed_over_not_copied_and_xv6_1_is_still_read() -> None:
    """The pause must not grow with the inodes the kernel holds: the count array
    itself goes to the successor. A predecessor of schema xv6/1 sends rows."""
    dev = fresh_device()
    rt = open_runtime(dev)
    c = rt.client()
    for i in range(20):
        c.write_bytes(f"/f{i}", b"x")
    held = [rt.call("lookup", ROOT_REQUEST, 1, f"f{i}".encode()) for i in range(20)]
    old = rt.fs
    state = old.prepare_upgrade()
    assert state.schema == "xv6/2" and state.data["lookups"] is old.icache.lookups
    rows = np.array([(a.ino, 1) for a in held], dtype=np.int64)
    state = UpgradeState("xv6/1", {**state.data, "lookups": rows})
    new = fresh_xv6().from_upgrade(state, rt.ks)
    assert [int(new.icache.lookups[a.ino]) for a in held] == [1] * 20
    short = UpgradeState("xv6/2", {**state.data, "lookups": np.zeros(3, dtype=np.int64)})
    with pytest.raises(FsError, match="lookups of inodes this file system does not have"):
        fresh_xv6().from_upgrade(short, rt.ks)
    rt.close()
    check(dev)


def test_upgrades_chain_and_state_not_yet_taken_up_travels_on() -> None:
    dev = fresh_device()
    rt = open_runtime(dev)
    c = rt.client()
    c.write_bytes("/f", b"hello")
    fd = c.open("/f", os.O_RDWR)
    a = rt.call("lookup", ROOT_REQUEST, 1, b"f")
    for _ in range(3):  # nothing touches the inode in between: it is never loaded
        rt.upgrade(fresh_xv6())
    c.unlink("/f")
    assert c.pread(fd, 5, 0) == b"hello"
    c.close(fd)
    free = c.statvfs().files_free
    rt.call("forget", [(a.ino, 1)])
    assert c.statvfs().files_free == free + 1
    rt.close()
    check(dev)


# -- failures -------------------------------------------------------------------------

class FailsToPrepare(Xv6):
    def prepare_upgrade(self) -> UpgradeState:
        raise RuntimeError("prepare exploded")


class FailsToBuild(Xv6):
    @classmethod
    def from_upgrade(cls, state: UpgradeState, ks: KernelServices) -> Xv6:
        raise ValueError("build exploded")


class RefusesTheState(Xv6):
    @classmethod
    def from_upgrade(cls, state: UpgradeState, ks: KernelServices) -> Xv6:
        raise FsError(errno.EPROTO, f"reads xv6/99, not {state.schema}")


class LeaksObjects(Xv6):
    def prepare_upgrade(self) -> UpgradeState:
        state = super().prepare_upgrade()
        state.data["icache"] = dict(self.icache.table)  # Inode objects: the old code's classes
        return state


class TooSlow(Xv6):
    @classmethod
    def from_upgrade(cls, state: UpgradeState, ks: KernelServices) -> Xv6:
        time.sleep(0.3)
        return super().from_upgrade(state, ks)


class NoUpgrade(Filesystem):
    posix_acls = True  # as the xv6 it would replace: the upgrade gets as far as building


class WithoutAcls(Xv6):
    posix_acls = False  # the kernel would go on leaving the umask to it


@pytest.mark.parametrize("old_cls, new_cls, message", [
    (FailsToPrepare, Xv6, "FailsToPrepare.prepare_upgrade failed: RuntimeError: prepare exploded"),
    (Xv6, FailsToBuild, "FailsToBuild.from_upgrade failed: ValueError: build exploded"),
    (Xv6, RefusesTheState, "refused the state: reads xv6/99, not xv6/2"),
    (LeaksObjects, Xv6, "holds a filesystems.xv6._inode.Inode: hand over plain data"),
    (Xv6, TooSlow, "more than the 0.2 s time-out"),
    (Xv6, NoUpgrade, "NoUpgrade.from_upgrade is not implemented"),
    (Xv6, WithoutAcls, "WithoutAcls does not support POSIX ACLs"),
])
def test_a_failed_upgrade_leaves_the_old_instance_serving(
        old_cls: type[Xv6], new_cls: type[Filesystem], message: str) -> None:
    dev = fresh_device()
    rt = DirectRuntime.open(old_cls(), dev, commit_interval=None, debug_locks=True)
    c = rt.client()
    c.write_bytes("/kept", b"before")
    fd = c.open("/kept", os.O_RDWR)
    old = rt.fs
    with pytest.raises(UpgradeError) as e:
        rt.upgrade(new_cls, timeout=0.2)
    assert message in str(e.value) and "serves on" in str(e.value)
    assert "\n" not in str(e.value)
    assert rt.fs is old
    c.pwrite(fd, b"after!", 0)
    c.write_bytes("/new", b"still works")
    assert c.read_bytes("/kept") == b"after!"
    c.close(fd)
    if old_cls is Xv6:  # and a good upgrade still goes through afterwards
        rt.upgrade(Xv6)
        assert c.read_bytes("/new") == b"still works"
    rt.close()
    check(dev)


def test_gate_waits_for_calls_in_flight_and_holds_new_ones() -> None:
    dev = fresh_device()
    rt = open_runtime(dev)
    c = rt.client()
    c.write_bytes("/f", b"x")
    inside, release = threading.Event(), threading.Event()
    stuck_in = rt.fs

    def slow_getattr(*args: Any) -> Any:
        inside.set()
        release.wait(10)
        return Xv6.getattr(stuck_in, *args)

    stuck_in.getattr = slow_getattr  # type: ignore[method-assign]
    t = threading.Thread(target=lambda: rt.call("getattr", ROOT_REQUEST, 1))
    t.start()
    inside.wait(5)
    with pytest.raises(UpgradeError, match="calls in flight did not finish within 0.2 s"):
        rt.upgrade(Xv6, timeout=0.2)
    assert rt.fs is stuck_in
    release.set()
    t.join()

    # A call arriving while the gate is closed waits, then runs on the new instance.
    results: list[object] = []
    started = threading.Event()

    def caller() -> None:
        started.set()
        time.sleep(0.1)  # arrives during TooSlow's 0.3 s build
        results.append(type(rt.fs))
        results.append(rt.call("getattr", ROOT_REQUEST, 1).ino)

    t = threading.Thread(target=caller)
    t.start()
    started.wait(5)
    rt.upgrade(TooSlow, timeout=5)
    t.join()
    assert results[0] is Xv6 and results[1] == 1  # it saw the old class before, got an answer
    assert type(rt.fs) is TooSlow
    rt.close()
    check(dev)


def test_upgrades_under_concurrent_load() -> None:
    """Four threads create, write, rename, read and unlink, each with a file held
    open, while the main thread upgrades 40 times: no call fails, nothing is lost."""
    dev = fresh_device(nblocks=32768)
    rt = open_runtime(dev)
    root = rt.client()
    stop = threading.Event()
    errors: list[BaseException] = []
    done = [0] * 4

    def worker(n: int) -> None:
        c = rt.client()
        try:
            c.mkdir(f"/w{n}")
            held = c.open(f"/w{n}/held", os.O_CREAT | os.O_RDWR)
            i = 0
            while not stop.is_set() or i < 20:
                data = f"{n}:{i}:".encode() * (1 + i % 300)
                c.write_bytes(f"/w{n}/tmp", data)
                c.rename(f"/w{n}/tmp", f"/w{n}/f{i % 7}")
                assert c.read_bytes(f"/w{n}/f{i % 7}") == data
                c.pwrite(held, data[:64], 64 * (i % 50))
                if i % 5 == 4:
                    c.unlink(f"/w{n}/f{(i - 3) % 7}")
                i += 1
            done[n] = i
            c.close(held)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    new = fresh_xv6()
    pauses = []
    for k in range(40):
        pauses.append(rt.upgrade(new if k % 2 else Xv6).pause_s)
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert min(done) >= 20
    for n in range(4):
        names = set(root.listdir(f"/w{n}"))
        assert b"held" in names
        last = done[n] - 1
        assert root.read_bytes(f"/w{n}/f{last % 7}") == f"{n}:{last}:".encode() * (1 + last % 300)
    rt.close()
    check(dev)


def test_check_plain() -> None:
    check_plain({"a": [1, 2.0, "s", b"b", None, (True,), np.int64(3)], 3: np.zeros(4, np.int64),
                 "req": ROOT_REQUEST}, "state")
    with pytest.raises(UpgradeError, match="NumPy array of Python objects"):
        check_plain([np.array([object()])], "state")
    with pytest.raises(UpgradeError, match="holds a builtins.object"):
        check_plain({"x": {object()}}, "state")

    class Handle(int):  # a file system's own int subclass still carries its code
        pass

    with pytest.raises(UpgradeError, match=r"holds a tests.runtime.test_upgrade.test_check_plain.<locals>.Handle"):
        check_plain([Handle(3)], "state")
