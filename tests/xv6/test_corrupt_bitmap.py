"""A block bitmap that calls a metadata block free must not let file data overwrite
it: found by ``bento fuzz image --fs xv6 --seed 7`` (a JournalError out of a write,
after the write's bytes had already landed in the journaled block's buffer)."""

from __future__ import annotations

import errno
import os

import pytest

from bento_user.blockdev import RamDevice

from .conftest import Mounted, fresh_device
from .test_fsck import geometry, inode, set_bit


def test_a_write_never_lands_in_a_journaled_block_the_bitmap_calls_free() -> None:
    m = Mounted(fresh_device(4096, ninodes=256, journal_blocks=256))
    m.c.mkdir("/d")
    m.c.close_all()
    m.rt.close()
    dev = RamDevice.from_bytes(m.dev.image())
    geo = geometry(dev)
    dir_block = int(inode(dev, geo, 2)["addrs"][0])
    set_bit(dev, geo.bbitmap_start, dir_block, False)   # the corruption
    m = Mounted(dev)
    m.c.write_bytes("/d/a", b"")          # /d's block joins the running transaction
    before = m.rt.ks.cache.cached(dir_block).data.copy()
    fd = m.c.open("/f", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError) as e:
        while True:  # each new block is the next free one: the directory's comes
            m.c.write(fd, b"x" * 4096)
    assert e.value.errno == errno.EUCLEAN
    assert (m.rt.ks.cache.cached(dir_block).data == before).all()
    assert sorted(m.c.listdir("/d")) == [b"a"]
    m.c.close_all()
    m.rt.close()


def test_an_indirect_block_never_lands_in_a_journaled_block_the_bitmap_calls_free() -> None:
    """The same corruption met by a metadata allocation: the first write past the
    direct blocks allocates the indirect block first."""
    m = Mounted(fresh_device(4096, ninodes=256, journal_blocks=256))
    m.c.mkdir("/d")
    m.c.close_all()
    m.rt.close()
    dev = RamDevice.from_bytes(m.dev.image())
    geo = geometry(dev)
    dir_block = int(inode(dev, geo, 2)["addrs"][0])
    set_bit(dev, geo.bbitmap_start, dir_block, False)
    m = Mounted(dev)
    m.c.write_bytes("/d/a", b"")
    before = m.rt.ks.cache.cached(dir_block).data.copy()
    fd = m.c.open("/f", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError) as e:
        for n in range(12, 4096):  # every new block, indirect ones first, is the next free
            m.c.pwrite(fd, b"x" * 4096, n * 4096)
    assert e.value.errno == errno.EUCLEAN
    assert (m.rt.ks.cache.cached(dir_block).data == before).all()
    assert sorted(m.c.listdir("/d")) == [b"a"]
    m.c.close_all()
    m.rt.close()


@pytest.mark.parametrize("size", [4096, 16 * 4096], ids=["through the cache", "direct"])
def test_a_write_never_lands_in_a_journaled_block_a_corrupt_pointer_names(size: int) -> None:
    """A file's block pointer corrupted to name a directory's block: an overwrite
    must refuse, not change the directory, in both write paths. (A journal big
    enough that the write's handle does not commit the transaction holding it.)"""
    m = Mounted(fresh_device(4096, ninodes=256, journal_blocks=1024))
    m.c.mkdir("/d")
    m.c.write_bytes("/f", b"y" * 16 * 4096)
    m.c.close_all()
    m.rt.close()
    dev = RamDevice.from_bytes(m.dev.image())
    geo = geometry(dev)
    dir_block = int(inode(dev, geo, 2)["addrs"][0])
    inode(dev, geo, 3)["addrs"][0] = dir_block   # /f's first block is /d's too
    m = Mounted(dev)
    m.c.write_bytes("/d/a", b"")
    before = m.rt.ks.cache.cached(dir_block).data.copy()
    fd = m.c.open("/f", os.O_WRONLY)
    with pytest.raises(OSError) as e:
        m.c.pwrite(fd, b"x" * size, 0)
    assert e.value.errno == errno.EUCLEAN
    assert (m.rt.ks.cache.cached(dir_block).data == before).all()
    assert sorted(m.c.listdir("/d")) == [b"a"]
    m.c.close_all()
    m.rt.close()
