"""A disk image file or a real block device (``/dev/loopN``), opened with O_DIRECT.

O_DIRECT keeps the host's page cache out of the way: our own buffer cache is the only
cache, so what ``flush`` reports durable really is on the disk, and the data are not
held twice in memory. Transfers go straight between the caller's page-aligned buffers
(arena slots) and the disk with ``os.preadv``/``os.pwritev``; an unaligned buffer is
bounced through aligned memory. Where the host file system refuses O_DIRECT (tmpfs),
the device falls back to buffered I/O and makes ``flush`` an ``fdatasync``, and says so
in ``direct_io`` and in the log.

An exclusive ``flock`` (``O_EXCL`` too, for block devices) keeps a second process from
opening the same disk read-write while we have it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import struct
from collections.abc import Sequence

from ._device import Buffer, BlockDevice
from ._memory import aligned_blocks, is_aligned

log = logging.getLogger(__name__)

BLKGETSIZE64 = 0x80081272  # <linux/fs.h>: _IOR(0x12, 114, size_t)


class ImageDevice(BlockDevice):
    """A block device backed by an image file or a host block device.

    Attributes:
        path: what was opened.
        direct_io: False when the host refused O_DIRECT and buffered I/O is used.
        is_block_device: True for ``/dev/...`` devices (size from BLKGETSIZE64).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        block_size: int = 4096,
        read_only: bool = False,
        direct_io: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        flags = os.O_RDONLY if read_only else os.O_RDWR
        flags |= os.O_CLOEXEC
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise OSError(e.errno, f"{self.path}: {e.strerror}") from None
        self.is_block_device = stat.S_ISBLK(st.st_mode)
        if not (self.is_block_device or stat.S_ISREG(st.st_mode)):
            raise OSError(errno.EINVAL, f"{self.path}: not an image file or block device")
        if self.is_block_device and not read_only:
            flags |= os.O_EXCL  # the kernel refuses this while the device is mounted
        self.fd, self.direct_io = _open(self.path, flags, direct_io)
        try:
            self._lock(read_only)
            size = self._size(st)
        except BaseException:
            os.close(self.fd)
            raise
        if size % block_size:
            log.warning("%s: %d trailing bytes ignored (not a whole block)", self.path,
                        size % block_size)
        super().__init__(self.path, block_size, size // block_size, read_only)

    def _lock(self, read_only: bool) -> None:
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_SH if read_only else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OSError(
                errno.EBUSY, f"{self.path}: in use by another process (is it mounted?)"
            ) from None

    def _size(self, st: os.stat_result) -> int:
        if not self.is_block_device:
            return st.st_size
        buf = fcntl.ioctl(self.fd, BLKGETSIZE64, b"\0" * 8)
        return int(struct.unpack("Q", buf)[0])

    # -- I/O -----------------------------------------------------------------------

    def _read(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        try:
            self._transfer(os.preadv, start, buffers, count)
        except _Misaligned:
            bounce = aligned_blocks(count, self.block_size)
            self._transfer(os.preadv, start, [bounce], count)
            _scatter(bounce.reshape(-1), buffers)

    def _write(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        try:
            self._transfer(os.pwritev, start, buffers, count)
        except _Misaligned:
            bounce = aligned_blocks(count, self.block_size)
            _gather(buffers, bounce.reshape(-1))
            self._transfer(os.pwritev, start, [bounce], count)

    def _transfer(self, call, start: int, buffers: Sequence[Buffer], count: int) -> None:  # type: ignore[no-untyped-def]
        """One ``preadv``/``pwritev`` straight on the caller's buffers.

        The common case costs one system call and no checks: an O_DIRECT transfer
        from a misaligned buffer fails with EINVAL before moving a byte, and only then
        is the request bounced through aligned memory. A short transfer is resumed.
        """
        offset = start * self.block_size
        remaining = count * self.block_size
        try:
            done = call(self.fd, buffers, offset)
        except OSError as e:
            if e.errno == errno.EINVAL and self.direct_io and not all(map(is_aligned, buffers)):
                raise _Misaligned from None
            raise OSError(e.errno, f"{self.path}: {e.strerror} at block {start}") from None
        if done == remaining:
            return
        views = [memoryview(b).cast("B") for b in buffers]
        while True:
            if done <= 0:
                raise OSError(errno.EIO, f"{self.path}: short transfer at byte {offset}")
            offset += done
            remaining -= done
            while views and done >= views[0].nbytes:
                done -= views[0].nbytes
                views.pop(0)
            if not remaining:
                return
            views[0] = views[0][done:]
            done = call(self.fd, views, offset)

    def _flush(self) -> None:
        # With O_DIRECT the data already left the page cache; fdatasync still matters,
        # because it sends the cache-flush command that empties the disk's own cache.
        os.fdatasync(self.fd)

    def _close(self) -> None:
        os.close(self.fd)


class _Misaligned(Exception):
    """An O_DIRECT transfer was refused because a buffer is not aligned."""


def _open(path: str, flags: int, want_direct: bool) -> tuple[int, bool]:
    """Open with O_DIRECT if the host allows it, probing with one aligned read: some
    file systems refuse O_DIRECT at open (EINVAL), others only at the first I/O."""
    if want_direct:
        try:
            fd = os.open(path, flags | os.O_DIRECT)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise OSError(e.errno, f"{path}: {e.strerror}") from None
        else:
            try:
                os.preadv(fd, [aligned_blocks(1, 4096)], 0)
                return fd, True
            except OSError as e:
                os.close(fd)
                if e.errno != errno.EINVAL:
                    raise OSError(e.errno, f"{path}: {e.strerror}") from None
        log.warning("%s: the host file system refuses O_DIRECT; using buffered I/O "
                    "with fdatasync on flush", path)
    try:
        return os.open(path, flags), False
    except OSError as e:
        raise OSError(e.errno, f"{path}: {e.strerror}") from None


def _scatter(src: memoryview | object, buffers: Sequence[Buffer]) -> None:
    flat = memoryview(src).cast("B")  # type: ignore[arg-type]
    pos = 0
    for b in buffers:
        view = memoryview(b).cast("B")
        view[:] = flat[pos : pos + view.nbytes]
        pos += view.nbytes


def _gather(buffers: Sequence[Buffer], dst: object) -> None:
    flat = memoryview(dst).cast("B")  # type: ignore[arg-type]
    pos = 0
    for b in buffers:
        view = memoryview(b).cast("B")
        flat[pos : pos + view.nbytes] = view
        pos += view.nbytes
