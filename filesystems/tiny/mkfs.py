"""tiny's formatter (a tool beside the file system, as mkfs is beside xv6's kernel):
zeroed tables, the root directory, a journal, then the superblock that makes it all a
file system."""

from __future__ import annotations

import errno
import stat
import uuid

import numpy as np

from bento_user.blockdev import BlockDevice
from bento_user.ks_emul import BufferCache, Journal

from . import BS, INODE, MAGIC, ROOT, SUPER, check, layout


def mkfs(device: BlockDevice, **options: int) -> str:
    check(not options and device.nblocks >= 1024, errno.EINVAL,
          "tiny takes no mkfs options and needs at least 4 MiB")
    g = layout(device.nblocks)
    cache = BufferCache(device, capacity=256)
    for b in range(g["itable"], g["data"] + 1):  # the tables and the root's block
        with cache.getblk(b) as bh:
            bh.data[:] = 0
            bh.mark_dirty()
    with cache.bread(g["bitmap"]) as bh:
        bh.data[:] = np.packbits(np.arange(BS * 8) <= g["data"], bitorder="little")
        bh.mark_dirty()
    with cache.bread(g["itable"]) as bh:
        bh.data.view(INODE)[ROOT] = (stat.S_IFDIR | 0o755, 0, 0, 2, ROOT, BS, 0, 0, 0,
                                     [g["data"]] + [0] * 13)
        bh.mark_dirty()
    tag = uuid.uuid4().bytes
    Journal.format(cache, 1, g["journal"], tag)
    cache.sync()  # everything else first: the superblock makes it a file system
    with cache.bread(0) as bh:
        bh.data[:SUPER.itemsize].view(SUPER)[0] = (MAGIC, *(g[k] for k in SUPER.names[1:7]), tag)
        bh.mark_dirty()
    cache.sync()
    return f"tiny, {g['nblocks']} blocks, {g['ninodes'] - 2} inodes, {g['journal']}-block journal"
