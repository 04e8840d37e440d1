"""A device that records every write and flush, to rebuild any post-power-cut disk.

The model is that of a disk with a volatile write cache (as dm-log-writes assumes):
a write that returned may or may not be on the platter until the next flush returns;
writes in flight may land in any subset, in any order, and a block may tear along
512-byte sectors. So after a crash in *epoch* k — after k flushes returned, before the
(k+1)-th — the disk holds the initial image, every write issued before flush k, and
any subset of the writes issued after it (each one whole, torn, or not at all).

Writes are logged per block, so a vectored write of eight blocks is eight records:
the disk is free to persist any of them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._device import SECTOR_SIZE, Buffer, BlockDevice
from ._memory import aligned_blocks
from ._ram import RamDevice


@dataclass(frozen=True)
class WriteRecord:
    """One block write as the device saw it.

    Attributes:
        seq: position in the log of all writes (0, 1, 2, ...).
        epoch: flushes that had returned when the write was issued.
        blockno: the block written.
        data: its new contents.
    """

    seq: int
    epoch: int
    blockno: int
    data: bytes


class RecordingDevice(BlockDevice):
    """Passes I/O through to ``inner`` and logs writes, flushes and marks.

    Attributes:
        writes: every block write, in issue order.
        flush_points: ``flush_points[k]`` is how many writes precede flush k+1; the
            writes before it are durable once that flush returns.
        marks: ``(number of writes so far, label)`` notes left by the caller, so a
            crash explorer can relate crash points to operations.
    """

    def __init__(self, inner: BlockDevice) -> None:
        super().__init__(f"recording({inner.name})", inner.block_size, inner.nblocks,
                         inner.read_only)
        self.inner = inner
        self.base = _snapshot(inner)
        self.writes: list[WriteRecord] = []
        self.flush_points: list[int] = []
        self.marks: list[tuple[int, str]] = []

    # -- pass-through I/O ------------------------------------------------------------

    def _read(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        self.inner.read_blocks(start, buffers)

    def _write(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        self.inner.write_blocks(start, buffers)
        flat = b"".join(memoryview(b).cast("B") for b in buffers)
        bs = self.block_size
        epoch = len(self.flush_points)
        for i in range(count):
            self.writes.append(
                WriteRecord(len(self.writes), epoch, start + i, flat[i * bs : (i + 1) * bs])
            )

    def _flush(self) -> None:
        self.inner.flush()
        self.flush_points.append(len(self.writes))

    def _close(self) -> None:
        self.inner.close()

    def mark(self, label: str) -> None:
        """Note a point in the write log (e.g. "fsync of inode 12 returned")."""
        self.marks.append((len(self.writes), label))

    # -- crash states ----------------------------------------------------------------

    @property
    def epochs(self) -> int:
        """How many flushes returned; crash epochs run from 0 to this number."""
        return len(self.flush_points)

    def durable_count(self, epoch: int) -> int:
        """How many writes are surely on disk after a crash in ``epoch``."""
        self._check_epoch(epoch)
        return self.flush_points[epoch - 1] if epoch else 0

    def in_flight(self, epoch: int) -> list[WriteRecord]:
        """The writes that a crash in ``epoch`` may or may not have persisted."""
        start = self.durable_count(epoch)
        end = self.flush_points[epoch] if epoch < len(self.flush_points) else len(self.writes)
        return self.writes[start:end]

    def crash_image(
        self,
        epoch: int,
        keep: Iterable[int] = (),
        torn: Mapping[int, Collection[int]] | None = None,
    ) -> np.ndarray:
        """The disk after a power cut in ``epoch``, as a ``(nblocks, block_size)`` array.

        Args:
            epoch: how many flushes returned before the cut.
            keep: indexes into ``in_flight(epoch)`` of the writes that reached the disk
                whole; they land in issue order.
            torn: index -> sector numbers of in-flight writes that reached the disk
                only partly (just those 512-byte sectors).
        """
        torn = dict(torn or {})
        keep = set(keep)
        flying = self.in_flight(epoch)
        chosen = sorted(keep | set(torn))
        for i in chosen:
            if not 0 <= i < len(flying):
                raise IndexError(f"epoch {epoch} has {len(flying)} in-flight writes, not {i + 1}")
        overlap = keep & set(torn)
        if overlap:
            raise ValueError(f"writes {sorted(overlap)} are both kept whole and torn")
        image = self.base.copy()
        for rec in self.writes[: self.durable_count(epoch)]:
            image[rec.blockno] = np.frombuffer(rec.data, dtype=np.uint8)
        for i in chosen:
            rec = flying[i]
            data = np.frombuffer(rec.data, dtype=np.uint8)
            if i in torn:
                for s in torn[i]:
                    sector = slice(s * SECTOR_SIZE, (s + 1) * SECTOR_SIZE)
                    image[rec.blockno, sector] = data[sector]
            else:
                image[rec.blockno] = data
        return image

    def crash_device(
        self,
        epoch: int,
        keep: Iterable[int] = (),
        torn: Mapping[int, Collection[int]] | None = None,
    ) -> RamDevice:
        """``crash_image`` as a fresh RAM device, ready for recovery."""
        image = self.crash_image(epoch, keep, torn)
        return RamDevice.from_bytes(image, self.block_size, f"crash({self.name}@{epoch})")

    def _check_epoch(self, epoch: int) -> None:
        if not 0 <= epoch <= len(self.flush_points):
            raise IndexError(f"no epoch {epoch}: {len(self.flush_points)} flushes recorded")


def _snapshot(dev: BlockDevice, chunk: int = 256) -> np.ndarray:
    """Copy a whole device into memory (the image the log starts from)."""
    image = aligned_blocks(dev.nblocks, dev.block_size)
    for start in range(0, dev.nblocks, chunk):
        n = min(chunk, dev.nblocks - start)
        dev.read_blocks(start, [image[start : start + n]])
    return image
