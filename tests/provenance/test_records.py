"""Each recorded operation, through the direct runtime, as the log shows it."""

from __future__ import annotations

import errno
import os
import stat
import sys

import pytest

from bento_user.api import ROOT_REQUEST, Request, SetAttr
from bento_user.blockdev import RamDevice
from bento_user.runtime.direct import DirectRuntime
from filesystems.provenance import Provenance, read_log
from filesystems.provenance.query import History
from filesystems.xv6 import Xv6

from ..xv6.conftest import check, fresh_device

ME = Request(uid=0, gid=0, pid=os.getpid())


def history(rt: DirectRuntime) -> History:
    return History.parse(read_log(rt.fs))


def ops(rt: DirectRuntime) -> list[tuple]:
    return [(e["op"], e.get("path") or e.get("name"), e.get("ino")) for e in history(rt).events]


def test_every_operation_type_is_recorded_with_its_process_and_names() -> None:
    dev = fresh_device()
    rt = DirectRuntime.open(Provenance(), dev, commit_interval=None, debug_locks=True)
    c = rt.client(ME)
    c.mkdir("/d")
    fd = c.open("/d/f", os.O_CREAT | os.O_WRONLY)
    for i in range(3):
        c.write(fd, b"x" * 100)  # three writes: one record
    c.close(fd)
    fd = c.open("/d/f")
    for _ in range(3):
        c.read(fd, 10)           # three reads: one record
    c.close(fd)
    c.mknod("/d/fifo", stat.S_IFIFO | 0o644)
    c.symlink("f", "/d/s")
    c.link("/d/f", "/d/g")
    c.rename("/d/g", "/d/h")
    c.unlink("/d/h")
    c.truncate("/d/f", 10)
    c.chmod("/d/f", 0o600)
    c.chown("/d/f", 12, 34)
    c.mkdir("/d/e")
    c.rmdir("/d/e")
    h = history(rt)
    f = c.stat("/d/f").ino
    got = [(e["op"], e.get("path"), e.get("ino")) for e in h.events]
    assert got == [
        ("mkdir", "/d", c.stat("/d").ino),
        ("create", "/d/f", f), ("write", None, f), ("close", None, f),
        ("open", "/d/f", f), ("read", None, f), ("close", None, f),
        ("mknod", "/d/fifo", c.lstat("/d/fifo").ino), ("symlink", "/d/s", c.lstat("/d/s").ino),
        ("link", "/d/g", f), ("rename", "/d/g", f), ("unlink", "/d/h", f),
        ("truncate", None, f), ("chmod", None, f), ("chown", None, f),
        ("mkdir", "/d/e", h.events[-2]["ino"]), ("rmdir", "/d/e", h.events[-2]["ino"]),
    ]
    assert [e["mode"] for e in h.events if e["op"] == "open"] == ["read"]
    assert h.events[10]["new_path"] == "/d/h" and h.events[-4]["mode"] == 0o600
    assert (h.events[-3]["uid"], h.events[-3]["gid"]) == (12, 34)
    assert {e["proc"] for e in h.events} == {next(iter(h.processes))}
    p = next(iter(h.processes.values()))
    assert p.pid == os.getpid() and p.exe == os.path.realpath(sys.executable)
    assert p.argv and p.uid == 0 and p.ppid == os.getppid()
    rt.close()
    check(dev)


def test_failed_operations_leave_no_record() -> None:
    dev = fresh_device()
    rt = DirectRuntime.open(Provenance(), dev, commit_interval=None)
    c = rt.client(ME)
    c.mkdir("/d")
    before = len(history(rt).events)
    for fn, args, err in [(c.mkdir, ("/d",), errno.EEXIST), (c.unlink, ("/nope",), errno.ENOENT),
                          (c.rmdir, ("/",), errno.EBUSY), (c.rename, ("/x", "/y"), errno.ENOENT)]:
        with pytest.raises(OSError) as e:
            fn(*args)
        assert e.value.errno in (err, errno.EINVAL, errno.ENOTEMPTY)
    assert len(history(rt).events) == before
    rt.close()
    check(dev)


def test_the_hidden_inode_cannot_be_reached() -> None:
    dev = fresh_device()
    rt = DirectRuntime.open(Provenance(), dev, commit_interval=None)
    c = rt.client(ME)
    c.write_bytes("/f", b"x")
    hidden = rt.fs.icache.hidden_ino
    assert hidden and hidden not in {ino for _, ino, _ in c.scandir("/")}
    for op, args in [("getattr", (ROOT_REQUEST, hidden)), ("open", (ROOT_REQUEST, hidden, os.O_RDWR)),
                     ("setattr", (ROOT_REQUEST, hidden, SetAttr(size=0))),
                     ("link", (ROOT_REQUEST, hidden, 1, b"got-it")),
                     ("opendir", (ROOT_REQUEST, hidden)), ("listxattr", (ROOT_REQUEST, hidden))]:
        with pytest.raises(OSError) as e:
            rt.call(op, *args)
        assert e.value.errno == errno.ESTALE, op
    rt.close()
    check(dev)


def test_downgrade_keeps_the_records_and_an_upgrade_appends_to_them() -> None:
    dev = fresh_device()
    rt = DirectRuntime.open(Xv6(), dev, commit_interval=None, debug_locks=True)
    c = rt.client(ME)
    c.write_bytes("/before", b"1")
    rt.upgrade(Provenance)
    c.write_bytes("/during", b"2")
    rt.upgrade(Xv6)
    c.write_bytes("/plain", b"3")
    size = len(read_log(rt.fs))
    rt.upgrade(Provenance)
    c.write_bytes("/again", b"4")
    paths = [e.get("path") for e in history(rt).events if e["op"] == "create"]
    assert paths == ["/during", "/again"] and len(read_log(rt.fs)) > size
    rt.close()
    report = check(dev)
    assert any("provenance records" in n for n in report.notes)
    again = DirectRuntime.open(Provenance(), RamDevice.from_bytes(dev.image()), commit_interval=None)
    assert [e.get("path") for e in history(again).events if e["op"] == "create"] == paths
    again.close()
