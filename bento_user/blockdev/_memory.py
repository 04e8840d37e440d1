"""Page-aligned block memory.

O_DIRECT transfers need buffers aligned to the device's logical block size; anonymous
``mmap`` memory is page-aligned, so every buffer handed out here can go to the disk in
place, with no bounce copy. NumPy views over it give typed, zero-copy access.
"""

from __future__ import annotations

import mmap

import numpy as np

PAGE_SIZE = mmap.PAGESIZE


def aligned_blocks(count: int, block_size: int) -> np.ndarray:
    """A zeroed ``(count, block_size)`` uint8 array on fresh page-aligned memory.

    The array keeps its mmap alive; the memory returns to the system when the last
    view of it is gone.
    """
    nbytes = max(count * block_size, 1)
    region = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(region, dtype=np.uint8, count=count * block_size).reshape(
        count, block_size
    )


def is_aligned(buf: object, alignment: int = PAGE_SIZE) -> bool:
    """Whether a buffer's address and length suit O_DIRECT."""
    view = np.frombuffer(buf, dtype=np.uint8)  # type: ignore[call-overload]
    return view.ctypes.data % alignment == 0 and view.nbytes % 512 == 0
