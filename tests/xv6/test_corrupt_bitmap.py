"""A corrupt image must not let file data or a new block overwrite a block the journal
holds as metadata: found by ``bento fuzz image --fs xv6 --seed 7`` (a JournalError
out of a write, after the write's bytes had already landed in the journaled block's
buffer; on older code the directory's block was silently overwritten)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import numpy as np
import pytest

from bento_user.blockdev import RamDevice
from filesystems.xv6.fsck import Geometry

from .conftest import Mounted, fresh_device
from .test_fsck import geometry, inode, set_bit

Corruption = Callable[[RamDevice, Geometry, int], None]


def corrupted(corrupt: Corruption, journal_blocks: int = 256) -> tuple[Mounted, int, np.ndarray]:
    """An image with a directory /d and a 16-block file /f, ``corrupt(dev, geo,
    d's block)`` applied while unmounted, then mounted with /d's block in the running
    transaction: the mount, that block's number and its contents."""
    m = Mounted(fresh_device(4096, ninodes=256, journal_blocks=journal_blocks))
    m.c.mkdir("/d")
    m.c.write_bytes("/f", b"y" * 16 * 4096)
    m.c.close_all()
    m.rt.close()
    dev = RamDevice.from_bytes(m.dev.image())
    geo = geometry(dev)
    dir_block = int(inode(dev, geo, 2)["addrs"][0])
    corrupt(dev, geo, dir_block)
    m = Mounted(dev)
    m.c.write_bytes("/d/a", b"")  # /d's block joins the running transaction
    return m, dir_block, m.rt.ks.cache.cached(dir_block).data.copy()


def refused_untouched(m: Mounted, dir_block: int, before: np.ndarray, error: OSError) -> None:
    assert error.errno == errno.EUCLEAN
    assert (m.rt.ks.cache.cached(dir_block).data == before).all()
    assert sorted(m.c.listdir("/d")) == [b"a"]
    m.c.close_all()
    m.rt.close()


def freed_in_bitmap(dev: RamDevice, geo: Geometry, block: int) -> None:
    set_bit(dev, geo.bbitmap_start, block, False)


def test_a_write_never_lands_in_a_journaled_block_the_bitmap_calls_free() -> None:
    m, dir_block, before = corrupted(freed_in_bitmap)
    fd = m.c.open("/g", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError) as e:
        while True:  # each new block is the next free one: the directory's comes
            m.c.write(fd, b"x" * 4096)
    refused_untouched(m, dir_block, before, e.value)


def test_an_indirect_block_never_lands_in_a_journaled_block_the_bitmap_calls_free() -> None:
    """The same corruption met by a metadata allocation: the first write past the
    direct blocks allocates the indirect block first."""
    m, dir_block, before = corrupted(freed_in_bitmap)
    fd = m.c.open("/g", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError) as e:
        for n in range(12, 4096):  # every new block, indirect ones first, is the next free
            m.c.pwrite(fd, b"x" * 4096, n * 4096)
    refused_untouched(m, dir_block, before, e.value)


@pytest.mark.parametrize("size", [4096, 16 * 4096], ids=["through the cache", "direct"])
def test_a_write_never_lands_in_a_journaled_block_a_corrupt_pointer_names(size: int) -> None:
    """/f's first block pointer corrupted to name /d's block: an overwrite must
    refuse, not change the directory, in both write paths. (A journal big enough
    that the write's handle does not commit the transaction holding the block.)"""
    def shared(dev: RamDevice, geo: Geometry, block: int) -> None:
        inode(dev, geo, 3)["addrs"][0] = block

    m, dir_block, before = corrupted(shared, journal_blocks=1024)
    fd = m.c.open("/f", os.O_WRONLY)
    with pytest.raises(OSError) as e:
        m.c.pwrite(fd, b"x" * size, 0)
    refused_untouched(m, dir_block, before, e.value)
