"""After any crash, an operation is visible if and only if its record is.

A workload of namespace operations runs on the recording device, committing now and
then; every crash state it could leave (each flush epoch, with prefixes and random
subsets of the writes in flight) is recovered, and the names on disk must equal the
names the recovered records describe, applied in order to the empty file system.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import pytest

from bento_user.api import Request
from bento_user.blockdev import RamDevice, RecordingDevice
from bento_user.runtime.direct import DirectRuntime
from filesystems.provenance import Provenance, read_log
from filesystems.provenance.query import History
from filesystems.xv6 import Xv6
from filesystems.xv6 import OP_CREDITS
from filesystems.xv6.fsck import fsck

from ..xv6.conftest import fresh_device

ME = Request(uid=0, gid=0, pid=os.getpid())
ROOT = 1


def workload(rt: DirectRuntime) -> None:
    c = rt.client(ME)
    rng = random.Random(7)
    names = []
    c.mkdir("/d")
    for i in range(24):
        what = rng.choice(["create", "create", "mkdir", "link", "rename", "unlink", "symlink"])
        if what == "create" or not names:
            c.write_bytes(f"/d/f{i}", b"x" * rng.randrange(1, 9000))
            names.append(f"/d/f{i}")
        elif what == "mkdir":
            c.mkdir(f"/d/m{i}")
        elif what == "link":
            c.link(rng.choice(names), f"/d/l{i}")
        elif what == "rename":
            old = names.pop(rng.randrange(len(names)))
            c.rename(old, f"/d/r{i}")
            names.append(f"/d/r{i}")
        elif what == "unlink":
            c.unlink(names.pop(rng.randrange(len(names))))
        else:
            c.symlink("f0", f"/d/s{i}")
        if i % 4 == 3:
            rt.fs.journal.force_commit()


def names_on_disk(rt: DirectRuntime) -> set[tuple[int, str, int]]:
    c, out, todo = rt.client(), set(), [(ROOT, "/")]
    while todo:
        ino, path = todo.pop()
        for name, child, kind in c.scandir(path):
            if name in (b".", b".."):
                continue
            out.add((ino, name.decode(), child))
            if kind == 0o040000:
                todo.append((child, path.rstrip("/") + "/" + name.decode()))
    return out


def names_in_records(history: History) -> set[tuple[int, str, int]]:
    names: dict[tuple[int, str], int] = {}
    for e in history.events:
        op = e["op"]
        if op in ("create", "mkdir", "mknod", "symlink", "link"):
            names[(e["parent"], e["name"])] = e["ino"]
        elif op in ("unlink", "rmdir"):
            del names[(e["parent"], e["name"])]
        elif op == "rename":
            names[(e["new_parent"], e["new_name"])] = names.pop((e["parent"], e["name"]))
    return {(p, n, i) for (p, n), i in names.items()}


@pytest.fixture
def commit_every_handle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each journal handle becomes a transaction of its own, so a record that is not
    in its operation's handle would show up as a crash state without it."""
    plain = Xv6.transaction

    @contextlib.contextmanager
    def committing(self: Xv6, credits: int = OP_CREDITS) -> Iterator[object]:
        with plain(self, credits) as h:
            yield h
        self.journal.force_commit()

    monkeypatch.setattr(Xv6, "transaction", committing)


def disagreements() -> tuple[int, list[tuple[int, tuple[int, ...]]]]:
    """Run the workload, explore its crash states; (states, the disagreeing ones)."""
    rec = RecordingDevice(fresh_device(nblocks=4096))
    rt = DirectRuntime.open(Provenance(), rec, commit_interval=None)
    workload(rt)
    rt.crash()
    rng = random.Random(1)
    states, bad = 0, []
    for epoch in range(rec.epochs + 1):
        flying = len(rec.in_flight(epoch))
        choices = {tuple(range(k)) for k in range(0, flying + 1, max(1, flying // 6))}
        choices |= {tuple(sorted(rng.sample(range(flying), rng.randrange(flying + 1))))
                    for _ in range(4)} if flying else set()
        for keep in sorted(choices):
            image = rec.crash_image(epoch, keep)
            after = DirectRuntime.open(Provenance(), RamDevice.from_bytes(image),
                                       commit_interval=None)
            try:
                disk = names_on_disk(after)
                recorded = names_in_records(History.parse(read_log(after.fs)))
            finally:
                after.close()
            if disk != recorded:
                bad.append((epoch, keep))
            states += 1
    final = RamDevice.from_bytes(rec.crash_image(rec.epochs, range(len(rec.in_flight(rec.epochs)))))
    assert fsck(final).problems == []
    return states, bad


def test_every_crash_state_shows_operations_and_records_agreeing(commit_every_handle: None) -> None:
    states, bad = disagreements()
    assert bad == [] and states >= 150


def test_the_check_catches_records_written_in_a_handle_of_their_own(
        commit_every_handle: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Provenance, "transaction", Xv6.transaction)  # records after, not with, the change
    states, bad = disagreements()
    assert len(bad) > 10
