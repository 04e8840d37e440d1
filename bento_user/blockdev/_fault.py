"""A device that fails or tears chosen I/O, to test how the layers above cope.

Faults are rules: "the 3rd write touching blocks 100..199 fails with EIO", "every read
of block 7 fails", "the next write of block 12 tears: only sectors 0 and 1 land". A
request that touches a faulty block fails as a whole, as a real disk's would; a tear
lets the chosen sectors of that block through first, then reports EIO (a lying disk
that reports success is ``silent=True``).
"""

from __future__ import annotations

import errno
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ._device import SECTOR_SIZE, Buffer, BlockDevice


@dataclass
class Fault:
    """One injected fault.

    Attributes:
        op: which requests it applies to.
        blocks: the block numbers it watches (None: every block).
        skip: matching requests to let through before the fault starts.
        times: how many matching requests fail (None: all of them from then on).
        tear_sectors: for ``op="write"``, the sectors of the first watched block that
            do reach the disk; None fails the write with nothing written.
        silent: report success even though the write failed or tore.
        fired: how many times it has fired so far.
    """

    op: Literal["read", "write", "flush"]
    blocks: Collection[int] | None = None
    skip: int = 0
    times: int | None = 1
    tear_sectors: Collection[int] | None = None
    silent: bool = False
    fired: int = field(default=0)
    _seen: int = field(default=0, repr=False)

    def _matches(self, op: str, start: int, count: int) -> int | None:
        """The first watched block in the request, or None if the fault does not fire."""
        if op != self.op or (self.times is not None and self.fired >= self.times):
            return None
        hit = start if self.blocks is None else next(
            (b for b in range(start, start + count) if b in self.blocks), None)
        if hit is None:
            return None
        self._seen += 1
        if self._seen <= self.skip:
            return None
        self.fired += 1
        return hit


class FaultDevice(BlockDevice):
    """Wraps ``inner`` and applies the faults added with ``inject``."""

    def __init__(self, inner: BlockDevice) -> None:
        super().__init__(f"fault({inner.name})", inner.block_size, inner.nblocks,
                         inner.read_only)
        self.inner = inner
        self.faults: list[Fault] = []

    def inject(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def _fire(self, op: str, start: int, count: int) -> tuple[Fault, int] | None:
        for fault in self.faults:
            hit = fault._matches(op, start, count)
            if hit is not None:
                return fault, hit
        return None

    def _read(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        fired = self._fire("read", start, count)
        if fired:
            raise OSError(errno.EIO, f"{self.name}: injected read error at block {fired[1]}")
        self.inner.read_blocks(start, buffers)

    def _write(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        fired = self._fire("write", start, count)
        if fired is None:
            self.inner.write_blocks(start, buffers)
            return
        fault, hit = fired
        if fault.tear_sectors is not None:
            self._tear(start, buffers, hit, fault.tear_sectors)
        if not fault.silent:
            raise OSError(errno.EIO, f"{self.name}: injected write error at block {hit}")

    def _tear(self, start: int, buffers: Sequence[Buffer], blockno: int,
              sectors: Collection[int]) -> None:
        """Write only ``sectors`` of ``blockno`` from this request."""
        flat = np.concatenate([np.frombuffer(b, dtype=np.uint8) for b in buffers])  # type: ignore[call-overload]
        bs = self.block_size
        new = flat[(blockno - start) * bs : (blockno - start + 1) * bs]
        block = bytearray(self.inner.read_block(blockno))
        for s in sectors:
            block[s * SECTOR_SIZE : (s + 1) * SECTOR_SIZE] = new[s * SECTOR_SIZE : (s + 1) * SECTOR_SIZE].tobytes()
        self.inner.write_blocks(blockno, [block])

    def _flush(self) -> None:
        fired = self._fire("flush", 0, self.nblocks)
        if fired and not fired[0].silent:
            raise OSError(errno.EIO, f"{self.name}: injected flush error")
        self.inner.flush()

    def _close(self) -> None:
        self.inner.close()
