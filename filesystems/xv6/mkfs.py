"""mkfs: write an empty xv6 v2 file system (root directory only) onto a device."""

from __future__ import annotations

import secrets
import stat
import time
from collections.abc import Callable

import numpy as np

from bento_user.blockdev import BlockDevice, aligned_blocks
from bento_user.ks_emul import BufferCache, Journal

from ._dir import Directories
from ._format import (
    BITS_PER_BLOCK,
    BLOCK_SIZE,
    JOURNAL_START,
    MAGIC,
    ROOT_INODE,
    STATE_CLEAN,
    SUPERBLOCK,
    VERSION,
    Geometry,
    kind_code,
    seal_superblock,
    superblock_view,
)
from ._inode import inode_records

_CHUNK = 256  # blocks zeroed per write


def mkfs(device: BlockDevice, *, ninodes: int | None = None, journal_blocks: int | None = None,
         uuid: bytes | None = None, now_ns: int | None = None,
         progress: Callable[[float], None] | None = None) -> Geometry:
    """Format ``device``; returns the layout written. Flushes before returning."""
    if device.block_size != BLOCK_SIZE:
        raise ValueError(f"xv6 needs {BLOCK_SIZE}-byte blocks, the device has {device.block_size}")
    geo = Geometry.plan(device.nblocks, ninodes, journal_blocks)
    uuid = uuid or secrets.token_bytes(16)
    now = time.time_ns() if now_ns is None else now_ns

    # zero the boot block, superblock, inode table and bitmaps
    _zero(device, 0, 2, progress)
    _zero(device, geo.inode_start, geo.data_start - geo.inode_start, progress)

    cache = BufferCache(device, capacity=64)
    Journal.format(cache, JOURNAL_START, geo.journal_blocks, uuid)

    # bitmaps: the metadata areas and the root's block are in use; inodes 0 and 1 too
    root_block = geo.data_start
    _write_bitmap(device, geo.bbitmap_start, geo.bbitmap_blocks, root_block + 1, geo.nblocks)
    _write_bitmap(device, geo.ibitmap_start, geo.ibitmap_blocks, ROOT_INODE + 1, geo.ninodes)

    # the root directory: '.' and '..' both name itself
    mode = stat.S_IFDIR | 0o755
    root = aligned_blocks(1, BLOCK_SIZE)
    root[0][:] = np.frombuffer(Directories.init_block(ROOT_INODE, ROOT_INODE, kind_code(mode)),
                               np.uint8)
    device.write_blocks(root_block, [root[0]])
    iblock, slot = geo.inode_location(ROOT_INODE)
    itable = aligned_blocks(1, BLOCK_SIZE)
    rec = inode_records(itable[0])[slot]
    rec["mode"], rec["nlink"], rec["size"], rec["blocks"] = mode, 2, BLOCK_SIZE, 1
    rec["atime_ns"] = rec["mtime_ns"] = rec["ctime_ns"] = rec["crtime_ns"] = now
    rec["generation"] = 1
    rec["addrs"][0] = root_block
    device.write_blocks(iblock, [itable[0]])

    sbb = aligned_blocks(1, BLOCK_SIZE)
    sb = superblock_view(sbb[0])
    sb["magic"], sb["version"], sb["block_size"] = MAGIC, VERSION, BLOCK_SIZE
    sb["nblocks"], sb["ninodes"] = geo.nblocks, geo.ninodes
    sb["journal_start"], sb["journal_blocks"] = JOURNAL_START, geo.journal_blocks
    sb["inode_start"], sb["inode_blocks"] = geo.inode_start, geo.inode_blocks
    sb["ibitmap_start"], sb["ibitmap_blocks"] = geo.ibitmap_start, geo.ibitmap_blocks
    sb["bbitmap_start"], sb["bbitmap_blocks"] = geo.bbitmap_start, geo.bbitmap_blocks
    sb["data_start"] = geo.data_start
    sb["uuid"] = np.frombuffer(uuid, np.uint8)
    sb["root_ino"], sb["state"], sb["mkfs_time_ns"] = ROOT_INODE, STATE_CLEAN, now
    seal_superblock(sbb[0])
    device.flush()          # everything else first: the superblock makes it a file system
    device.write_blocks(SUPERBLOCK, [sbb[0]])
    device.flush()
    return geo


def _zero(device: BlockDevice, start: int, count: int,
          progress: Callable[[float], None] | None) -> None:
    zeros = aligned_blocks(min(count, _CHUNK), BLOCK_SIZE)
    done = 0
    while done < count:
        n = min(_CHUNK, count - done)
        device.write_blocks(start + done, list(zeros[:n]))
        done += n
        if progress:
            progress(done / count)


def _write_bitmap(device: BlockDevice, start: int, nblocks: int, used: int, total: int) -> None:
    """Bits [0, used) and [total, end of the last block) set: the tail past the disk is
    marked used so no allocator ever hands it out."""
    bits = np.zeros(nblocks * BITS_PER_BLOCK, dtype=bool)
    bits[:used] = True
    bits[total:] = True
    buf = aligned_blocks(nblocks, BLOCK_SIZE)
    buf.reshape(-1)[:] = np.packbits(bits, bitorder="little")
    device.write_blocks(start, list(buf))
