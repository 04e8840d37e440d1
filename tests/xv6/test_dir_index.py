"""The directory index keeps each block's slack as a bound, not an exact figure
(_dir.py): random inserts and removals of names of every length must still find
every name, never let the bound fall below the room a block has, and never grow
the directory while some record has room for the new entry."""

from __future__ import annotations

import stat

from hypothesis import given, settings
from hypothesis import strategies as st

from bento_user.api import Request
from filesystems.xv6._format import BLOCK_SIZE, dirent_size

from .conftest import Mounted, check, fresh_device

# names of every length, long ones often enough to fill blocks in a few dozen steps
NAMES = st.builds(lambda n, length: f"{n:x}-".encode().ljust(length, b"n")[:max(length, 1)],
                  st.integers(0, 2**32), st.integers(1, 255) | st.integers(200, 255))


def true_room(layout: list[list[list[int]]]) -> list[int]:
    return [max(r[1] - r[2] for r in records) for records in layout]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([True, True, False]), NAMES, st.integers(0, 10**6)),
                min_size=60, max_size=200))
def test_inserts_and_removals_keep_the_index_true(steps: list[tuple[bool, bytes, int]]) -> None:
    m = Mounted(fresh_device(4096))
    rt, req = m.rt, Request()
    m.c.mkdir("/d")
    ino = m.c.stat("/d").ino
    model: set[bytes] = set()
    for insert, name, pick in steps:
        dp = rt.fs.icache.iget(ino)
        if insert and name not in model:
            before = dp.size
            index = rt.fs.dirs.index(dp)
            fitted = any(r[1] - r[2] >= dirent_size(len(name)) for records in index.layout
                         for r in records)
            rt.call("mknod", req, ino, name, stat.S_IFREG | 0o644, 0)
            model.add(name)
            assert dp.size == before or not fitted, "grew while a record had room"
        elif model:
            victim = sorted(model)[pick % len(model)]
            rt.call("unlink", req, ino, victim)
            model.discard(victim)
        index = rt.fs.dirs.index(dp)
        assert all(int(b) >= t for b, t in zip(index.slack, true_room(index.layout)))
    assert sorted(m.c.listdir("/d")) == sorted(model)
    assert rt.fs.icache.iget(ino).size % BLOCK_SIZE == 0
    m.reopen()
    assert sorted(m.c.listdir("/d")) == sorted(model)
    m.c.close_all()
    m.rt.close()
    check(m.dev)
