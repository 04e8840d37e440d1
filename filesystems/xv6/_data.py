"""File data between requests and the device, a whole run of blocks per call.

Regular files' data does not go through the buffer cache block by block (that costs
~20 µs of Python per 4 KiB block, 50 MB/s): whole blocks are read and written with one
vectored device call per run of adjacent blocks, through a page-aligned staging area
(O_DIRECT needs one). Blocks the cache holds are taken from it on reads (a partial
write may have left a dirty copy there) and kept current on writes, so the two
paths never disagree. Written blocks are on the device, not yet durable: the
owner's next fsync, or the commit that points at new blocks, flushes it.
"""

from __future__ import annotations

import numpy as np

from bento_user.api import FsError, corrupt
from bento_user.ks_emul import KernelServices

from ._format import BLOCK_SIZE

STAGING_BLOCKS = 1024  # 4 MiB


class FileData:
    def __init__(self, ks: KernelServices) -> None:
        self.ks = ks
        self._staging = ks.io_buffers(STAGING_BLOCKS)
        self._lock = ks.mutex("xv6.staging")

    def read(self, pblks: np.ndarray, first_offset: int, length: int) -> bytes:
        """``length`` bytes from ``first_offset`` into the blocks ``pblks`` (0: a hole)."""
        parts = []
        for start in range(0, len(pblks), STAGING_BLOCKS):
            chunk = pblks[start:start + STAGING_BLOCKS]
            lo = first_offset if start == 0 else 0
            with self._lock:
                buf = self._staging[:len(chunk)]
                self._fill(chunk, buf)
                parts.append(buf.reshape(-1)[lo:lo + length].tobytes())
            length -= len(parts[-1])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _fill(self, pblks: np.ndarray, buf: np.ndarray) -> None:
        """Holes as zeros, blocks the cache holds from it, the rest from the device
        with one call per run of consecutive blocks. A plain loop: NumPy's fixed
        costs (~40 µs a call chain) were most of a 4 KiB read."""
        find = self.ks.cache.find
        start, pblks_start = -1, 0  # where the run gathered for the device began: index, block
        for i, p in enumerate(pblks.tolist()):
            bh = find(p) if p else None
            if p and bh is None:
                if start >= 0 and p == pblks_start + (i - start):
                    continue  # the run goes on
                if start >= 0:
                    self.ks.read_blocks(pblks_start, [buf[start:i]])
                start, pblks_start = i, p
                continue
            if start >= 0:
                self.ks.read_blocks(pblks_start, [buf[start:i]])
                start = -1
            if bh is None:
                buf[i] = 0
            else:
                with bh:
                    buf[i] = bh.data
        if start >= 0:
            self.ks.read_blocks(pblks_start, [buf[start:len(pblks)]])

    def write(self, pblks: np.ndarray, data: np.ndarray, ino: int) -> None:
        """Write whole blocks of inode ``ino``: ``data`` holds ``len(pblks)`` of them."""
        blocks = data.reshape(len(pblks), BLOCK_SIZE)
        cached = []
        try:
            for i, p in enumerate(pblks.tolist()):
                bh = self.ks.cache.find(p)
                if bh is not None:
                    cached.append((i, bh))
                    if bh.jtrans is not None:
                        raise held_as_metadata(p, ino)
            for i, bh in cached:
                with bh.io_exclusive():  # no write-back of the old copy after ours
                    bh.data[:] = blocks[i]
        finally:
            for _, bh in cached:
                bh.release()
        for start in range(0, len(pblks), STAGING_BLOCKS):
            chunk = pblks[start:start + STAGING_BLOCKS]
            with self._lock:
                buf = self._staging[:len(chunk)]
                buf[:] = blocks[start:start + len(chunk)]
                for s, e in _runs(chunk):
                    self.ks.write_blocks(int(chunk[s]), [buf[s:e]])


def held_as_metadata(pblk: int, ino: int) -> FsError:
    """File data must never land in a block the journal holds as metadata (a corrupt
    bitmap handed it out, or a corrupt pointer names it): found before a byte of
    the block changes."""
    return corrupt(f"inode {ino}: data block {pblk} is metadata the journal holds "
                   "(a corrupt block bitmap or block pointer)")


def _runs(pblks: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges of physically consecutive blocks."""
    if len(pblks) == 1:
        return [(0, 1)]
    bounds = [0, *(np.flatnonzero(np.diff(pblks) != 1) + 1).tolist(), len(pblks)]
    return list(zip(bounds[:-1], bounds[1:]))
