"""The VFS's checks in the direct runtime (runtime/vfs.py), for a file system that
leaves them to the kernel (``vfs_checks``: tiny), and ``serial`` (one call at a time).
The sticky bit, '..' and the serial calls failed before: tiny did not check the
sticky bit, asked the file system for '..' (tiny keeps none), and nothing made a
file system's calls wait for each other."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from bento_user.api import ROOT_REQUEST, Filesystem, Request, StatFs
from bento_user.runtime._dispatch import Dispatcher

ALICE = Request(uid=1000, gid=1000, umask=0o022)
BOB = Request(uid=1001, gid=1001, umask=0o022)


def fails(code: int, fn, *args) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as e:
        fn(*args)
    assert e.value.errno == code, e.value


def test_the_sticky_bit_keeps_others_from_removing_a_name(tiny_rt) -> None:  # type: ignore[no-untyped-def]
    root, alice, bob = tiny_rt.client(), tiny_rt.client(ALICE), tiny_rt.client(BOB)
    root.mkdir(b"/tmp")
    root.chmod(b"/tmp", 0o1777)
    alice.write_bytes(b"/tmp/mine", b"x")
    fails(errno.EPERM, bob.unlink, b"/tmp/mine")
    fails(errno.EPERM, bob.rename, b"/tmp/mine", b"/tmp/his")
    alice.rename(b"/tmp/mine", b"/tmp/still-mine")
    root.unlink(b"/tmp/still-mine")


def test_permissions_are_the_kernels(tiny_rt) -> None:  # type: ignore[no-untyped-def]
    root, alice = tiny_rt.client(), tiny_rt.client(ALICE)
    root.mkdir(b"/d", 0o755)
    root.write_bytes(b"/d/f", b"root's")
    fails(errno.EACCES, alice.unlink, b"/d/f")                 # no write on /d
    fails(errno.EACCES, alice.open, b"/d/f", 1)                # O_WRONLY on a 0644 file
    fails(errno.EPERM, alice.chmod, b"/d/f", 0o777)            # not the owner
    fails(errno.EPERM, alice.chown, b"/d/f", 1000, 1000)
    root.chmod(b"/d", 0o700)
    fails(errno.EACCES, alice.stat, b"/d/f")                   # no search on /d
    assert not alice.access(b"/", 2) and alice.access(b"/", 5)


def test_rename_rules_and_dotdot(tiny_rt) -> None:  # type: ignore[no-untyped-def]
    c = tiny_rt.client()
    c.mkdir(b"/a")
    c.mkdir(b"/a/b")
    fails(errno.EINVAL, c.rename, b"/a", b"/a/b/c")           # under itself
    c.write_bytes(b"/f", b"")
    fails(errno.ENOTDIR, c.rename, b"/a", b"/f")
    fails(errno.EISDIR, c.rename, b"/f", b"/a")
    fails(errno.EISDIR, c.unlink, b"/a")
    fails(errno.ENOTDIR, c.rmdir, b"/f")
    c.rename(b"/f", b"/f")                                    # onto itself: nothing
    assert c.stat(b"/a/b/..").ino == c.stat(b"/a").ino        # '..' is the walk's
    assert c.stat(b"/a/b/../../..").ino == c.stat(b"/").ino


class Slow(Filesystem):
    """statfs takes a while and counts how many calls are inside at once."""

    serial = True

    def __init__(self) -> None:
        self.inside = self.most = 0

    def statfs(self, req: Request) -> StatFs:
        self.inside += 1
        self.most = max(self.most, self.inside)
        time.sleep(0.05)
        self.inside -= 1
        return StatFs(4096, 1, 1, 1, 1, 1)


@pytest.mark.parametrize("serial", [True, False])
def test_a_serial_file_system_gets_one_call_at_a_time(serial: bool) -> None:
    fs = Slow()
    fs.serial = serial
    d = Dispatcher(fs)
    threads = [threading.Thread(target=d.call, args=("statfs", ROOT_REQUEST)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (fs.most == 1) == serial
