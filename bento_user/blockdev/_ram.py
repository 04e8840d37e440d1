"""A disk in memory, for fast tests and for materialised crash states."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._device import Buffer, BlockDevice
from ._memory import aligned_blocks


class RamDevice(BlockDevice):
    """``nblocks`` zeroed blocks in anonymous memory (untouched pages cost nothing).

    ``flush`` is a no-op: RAM has no volatile cache. Crash testing wraps this in a
    ``RecordingDevice``, which models what a flush makes durable.
    """

    def __init__(self, nblocks: int, block_size: int = 4096, name: str = "ram") -> None:
        super().__init__(name, block_size, nblocks, read_only=False)
        self.blocks = aligned_blocks(nblocks, block_size)

    @classmethod
    def from_bytes(cls, image: bytes | np.ndarray, block_size: int = 4096,
                   name: str = "ram") -> RamDevice:
        """A RAM disk holding a copy of ``image`` (a whole number of blocks)."""
        flat = np.frombuffer(image, dtype=np.uint8) if isinstance(image, bytes) else image
        dev = cls(flat.size // block_size, block_size, name)
        dev.blocks.reshape(-1)[:] = flat.reshape(-1)
        return dev

    def image(self) -> bytes:
        """The whole disk as bytes (a copy)."""
        return self.blocks.tobytes()

    def _read(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        src = self.blocks[start : start + count].reshape(-1)
        pos = 0
        for b in buffers:
            dst = np.frombuffer(b, dtype=np.uint8)  # type: ignore[call-overload]
            dst[:] = src[pos : pos + dst.size]
            pos += dst.size

    def _write(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        dst = self.blocks[start : start + count].reshape(-1)
        pos = 0
        for b in buffers:
            src = np.frombuffer(b, dtype=np.uint8)  # type: ignore[call-overload]
            dst[pos : pos + src.size] = src
            pos += src.size

    def _flush(self) -> None:
        pass
