"""The block-device interface every device implements, and its shared checks.

A device moves whole blocks between the disk and caller buffers. A call covers one run
of contiguous blocks and takes a list of buffers (each a whole number of blocks), so a
cache can hand over scattered arena slots and the device turns them into a single
``preadv``/``pwritev``. Nothing is cached here; durability comes only from ``flush``.
"""

from __future__ import annotations

import errno
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NewType

import numpy as np

BlockNo = NewType("BlockNo", int)
"""A block number on a device (counted in the device's blocks, from 0)."""

Buffer = memoryview | np.ndarray | bytes | bytearray
"""Anything exposing the buffer protocol: arena slots, bytes, NumPy arrays."""

SECTOR_SIZE = 512
"""The unit a disk writes atomically; torn writes tear along these boundaries."""


class BlockRangeError(OSError):
    """A request reached outside the device. Always a caller bug, never a disk fault."""

    def __init__(self, device: str, start: int, count: int, nblocks: int) -> None:
        super().__init__(
            errno.EINVAL,
            f"{device}: blocks {start}..{start + count - 1} are outside the device "
            f"(it has blocks 0..{nblocks - 1})",
        )


@dataclass(frozen=True)
class DeviceStatistics:
    """Counters of what reached the device (not what the cache absorbed).

    Attributes:
        reads: read calls (one vectored call counts once).
        writes: write calls.
        flushes: durability barriers.
        blocks_read: blocks moved from the device.
        blocks_written: blocks moved to the device.
    """

    reads: int
    writes: int
    flushes: int
    blocks_read: int
    blocks_written: int


class BlockDevice(ABC):
    """A disk of ``nblocks`` blocks of ``block_size`` bytes.

    Errors are ``OSError`` with a real errno: ``EINVAL`` (as ``BlockRangeError``) for a
    range outside the device, ``EIO`` for a failing disk, ``EROFS`` for a write to a
    read-only device, ``EBADF`` after ``close``.
    """

    name: str
    block_size: int
    nblocks: int
    read_only: bool

    def __init__(self, name: str, block_size: int, nblocks: int, read_only: bool) -> None:
        if block_size % SECTOR_SIZE or block_size <= 0:
            raise ValueError(f"block size {block_size} is not a multiple of {SECTOR_SIZE}")
        self.name = name
        self.block_size = block_size
        self.nblocks = nblocks
        self.read_only = read_only
        self.closed = False
        self._reads = self._writes = self._flushes = 0
        self._flush_lock = threading.Lock()
        self._flush_started = self._durable_through = 0  # flushes begun; see flush_ticket
        self._blocks_read = self._blocks_written = 0

    # -- the interface -------------------------------------------------------------

    def read_blocks(self, start: int, buffers: Sequence[Buffer]) -> None:
        """Fill ``buffers`` with the blocks from ``start`` on, in one device call."""
        count = self._check(start, buffers, writing=False)
        self._read(start, buffers, count)
        self._reads += 1
        self._blocks_read += count

    def write_blocks(self, start: int, buffers: Sequence[Buffer]) -> None:
        """Write ``buffers`` to the blocks from ``start`` on, in one device call.

        Returning means the device accepted the data, not that it is durable: only a
        later ``flush`` makes it survive a power cut.
        """
        count = self._check(start, buffers, writing=True)
        self._write(start, buffers, count)
        self._writes += 1
        self._blocks_written += count

    def flush(self) -> None:
        """A barrier: every write that returned before this call is now durable."""
        self._check_open()
        with self._flush_lock:
            self._flush_started += 1
            ticket = self._flush_started
        self._flush()
        with self._flush_lock:
            self._durable_through = max(self._durable_through, ticket)
            self._flushes += 1

    def flush_ticket(self) -> int:
        """Call when a write has returned: the number of the first flush that makes
        it durable (one begun after now). ``durable(ticket)`` tells when that flush,
        or a later one, is done, whoever asked for it: a file system's debt for data
        it wrote around the journal is paid by the journal's next commit too."""
        return self._flush_started + 1

    def durable(self, ticket: int) -> bool:
        return self._durable_through >= ticket

    def close(self) -> None:
        """Release the device. Does not flush: call ``flush`` first if that matters."""
        if not self.closed:
            self.closed = True
            self._close()

    def statistics(self) -> DeviceStatistics:
        return DeviceStatistics(
            self._reads, self._writes, self._flushes, self._blocks_read, self._blocks_written
        )

    def read_block(self, blockno: int) -> bytes:
        """One block as ``bytes``; a convenience for tests and tools, not hot paths."""
        buf = bytearray(self.block_size)
        self.read_blocks(blockno, [buf])
        return bytes(buf)

    def __enter__(self) -> BlockDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.nblocks}x{self.block_size}>"

    # -- what an implementation provides -----------------------------------------

    @abstractmethod
    def _read(self, start: int, buffers: Sequence[Buffer], count: int) -> None: ...

    @abstractmethod
    def _write(self, start: int, buffers: Sequence[Buffer], count: int) -> None: ...

    @abstractmethod
    def _flush(self) -> None: ...

    def _close(self) -> None:
        pass

    # -- shared checks -------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise OSError(errno.EBADF, f"{self.name}: device is closed")

    def _check(self, start: int, buffers: Sequence[Buffer], writing: bool) -> int:
        """Validate a request and return how many blocks it covers."""
        self._check_open()
        if writing and self.read_only:
            raise OSError(errno.EROFS, f"{self.name}: device is read-only")
        total = 0
        for buf in buffers:
            size = memoryview(buf).nbytes
            if size == 0 or size % self.block_size:
                raise ValueError(
                    f"{self.name}: a buffer of {size} bytes is not a whole number of "
                    f"{self.block_size}-byte blocks"
                )
            total += size
        count = total // self.block_size
        if count == 0:
            raise ValueError(f"{self.name}: empty request")
        if start < 0 or start + count > self.nblocks:
            raise BlockRangeError(self.name, start, count, self.nblocks)
        return count
