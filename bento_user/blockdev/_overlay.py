"""A copy-on-write overlay: writes stay in memory, the device below is only read.

Lets a read-only tool replay a journal (fsck) and look at the result without
changing the image.
"""

from __future__ import annotations

import numpy as np

from collections.abc import Iterator, Sequence

from ._device import BlockDevice, Buffer


class OverlayDevice(BlockDevice):
    """``close_inner``: closing the overlay closes the device below (a tool that
    opened both); False when the device is the caller's, as fsck's is."""

    def __init__(self, inner: BlockDevice, close_inner: bool = True) -> None:
        super().__init__(f"{inner.name}+overlay", inner.block_size, inner.nblocks, read_only=False)
        self.inner = inner
        self.close_inner = close_inner
        self.changed: dict[int, bytes] = {}

    def _read(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        self.inner.read_blocks(start, buffers)
        if self.changed:
            for blockno, view in _blocks(buffers, start, self.block_size):
                data = self.changed.get(blockno)
                if data is not None:
                    view[:] = np.frombuffer(data, np.uint8)

    def _write(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        for blockno, view in _blocks(buffers, start, self.block_size):
            self.changed[blockno] = view.tobytes()

    def _flush(self) -> None:
        pass

    def _close(self) -> None:
        if self.close_inner:
            self.inner.close()



def _blocks(buffers: Sequence[Buffer], start: int, block_size: int
            ) -> Iterator[tuple[int, np.ndarray]]:
    """(block number, writable view) of each block in a run of buffers."""
    blockno = start
    for buf in buffers:
        flat = np.frombuffer(buf, dtype=np.uint8)  # type: ignore[call-overload]
        for off in range(0, flat.size, block_size):
            yield blockno, flat[off:off + block_size]
            blockno += 1
