"""Counts read from disk are bounded before they are taken down (issue 19's rule): a
block count of 0 on a file that maps blocks, a directory counting fewer links than
its subdirectories need. `bento fuzz image --seed 1` met one at unmount as
"argument out of range" from the inode's store; now each is EUCLEAN, the operation
is undone, and the file system serves on."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from bento_user.blockdev import RamDevice
from bento_user.runtime.direct import PathClient

from .conftest import Mounted
from .test_fsck import inode, populated


def corrupted(field: str, path: str, value: int) -> Mounted:
    dev, geo = populated()
    m = Mounted(RamDevice.from_bytes(dev.image()))
    ino = m.c.stat(path).ino
    m.c.mkdir("/h")
    m.c.close_all()
    m.rt.close()
    dev = RamDevice.from_bytes(m.dev.image())
    inode(dev, geo, ino)[field] = value
    return Mounted(dev)


@pytest.mark.parametrize("field, path, value, op", [
    ("blocks", "/d/f", 0, lambda c: c.truncate("/d/f", 0)),
    ("nlink", "/d", 2, lambda c: c.rmdir("/d/e")),
    ("nlink", "/d", 2, lambda c: c.rename("/d/e", "/h/e")),
])
def test_a_count_too_low_is_corruption_not_a_negative_number(
        field: str, path: str, value: int, op: Callable[[PathClient], None]) -> None:
    m = corrupted(field, path, value)
    with pytest.raises(OSError) as e:
        op(m.c)
    assert e.value.errno == errno.EUCLEAN
    assert sorted(m.c.listdir("/d")) == [b"e", b"f"]      # undone
    m.c.write_bytes("/new", b"the file system serves on")
    m.c.close_all()
    m.rt.close()                       # and unmounts without an exception
