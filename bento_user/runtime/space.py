"""Near a full disk, every write the kernel acknowledged must still land.

With the writeback cache the kernel answers ``write()`` as soon as the data sits in
its page cache and sends the WRITE to the daemon later. If the disk is full by then,
the ENOSPC reaches only fsync or close, which many programs never check (``echo x >
f`` in a shell does not), and the data is gone. Three facts make it safe:

1. The kernel's dirty pages for one FUSE mount are bounded: the mount's backing
   device has ``strict_limit`` and ``max_ratio`` 1 % of the dirty threshold, at most
   ``vm.dirty_ratio`` of memory (51 MB on a 24 GiB machine; 49.8 MB measured). On a
   disk too small for that, the mount lowers the limit to a 16th of the disk (root
   only; it is our own device's setting).
2. FUSE lets each open choose direct I/O. While the free space is at least the
   *low-water mark* (twice the reserve below), files opened for writing use the page
   cache at full speed; below it, a new open for writing gets direct I/O, so each of
   its ``write()`` calls reaches the daemon and sees ENOSPC itself.
3. The *reserve* (the dirty limit, a quarter more for the kernel's overshoot, and a
   MiB for pointer blocks) is kept for the pages cached writers already hold: while a
   handle writing through the page cache is open, a write through a direct handle to
   a file no cached handle writes, and every operation that may allocate a block for
   a name or an attribute, fails with ENOSPC rather than take free space below it.
   When the last cached writer closes (FUSE writes its pages back at close), the
   whole disk is usable again.

What stays: a file opened for writing while space was plentiful and then written,
alone, by more than the reserve after the disk crossed the mark gets its ENOSPC at
fsync/close, as on NFS. A shared mmap of a file opened for writing below the mark
fails with ENODEV (pyfuse3 cannot ask FUSE for DIRECT_IO_ALLOW_MMAP). Creating a file
never needs the page cache: inode exhaustion is ENOSPC from open() already.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

log = logging.getLogger("bento.space")

MIB = 1 << 20
FUSE_MAX_RATIO_FINE = 10_000  # 1 %, in the kernel's millionths (BDI_RATIO_SCALE)
SMALL_DISK_SHARE = 16  # a small disk's dirty limit: this fraction of it ...
SMALL_DISK_FLOOR = 4 * MIB  # ... but never less


def dirty_threshold(proc: str = "/proc") -> int:
    """The most the kernel lets all devices hold dirty, in bytes: ``vm.dirty_bytes``
    or ``vm.dirty_ratio`` percent of all memory (the kernel takes it of the dirtyable
    part, which is less)."""
    def read(name: str) -> int:
        with open(f"{proc}/sys/vm/{name}") as f:
            return int(f.read())
    if (fixed := read("dirty_bytes")) > 0:
        return fixed
    with open(f"{proc}/meminfo") as f:
        total_kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return total_kib * 1024 * read("dirty_ratio") // 100


def bdi_dirty_limit(bdi: str, disk_bytes: int, root: str = "/sys/class/bdi") -> int:
    """The most this mount's pages can be dirty, in bytes; lowered first on a disk
    smaller than 16 times the kernel's limit, if we may."""
    threshold = dirty_threshold()
    path = f"{root}/{bdi}/max_ratio_fine"
    try:
        with open(path) as f:
            fine = int(f.read())
    except (OSError, ValueError):
        fine = FUSE_MAX_RATIO_FINE
    limit = threshold * fine // 1_000_000
    want = max(disk_bytes // SMALL_DISK_SHARE, SMALL_DISK_FLOOR)
    if want < limit:
        try:
            with open(path, "w") as f:
                f.write(str(max(1, want * 1_000_000 // threshold)))
            with open(path) as f:
                limit = threshold * int(f.read()) // 1_000_000
        except (OSError, ValueError) as e:
            log.info("kept the kernel's dirty limit for %s (%d MiB): %s", bdi, limit // MIB, e)
    return limit


@dataclass
class _Writer:
    ino: int
    direct: bool


class SpaceGuard:
    """Which opens get direct I/O and which allocations must leave the reserve.

    The FUSE runtime asks it at each open for writing, each write and each operation
    that may allocate; ``free()`` returns the file system's free bytes now. Until
    ``arm()`` is called (the mount is up and its limit known) it guards nothing.
    """

    def __init__(self) -> None:
        self.reserve = 0  # bytes kept for the pages cached writers hold
        self.dirty_limit = 0  # the kernel's, for this mount
        self.direct_opens = 0  # opens for writing given direct I/O
        self.refused = 0  # allocations refused to keep the reserve
        self._writers: dict[int, _Writer] = {}  # file handle -> open for writing
        self._cached: dict[int, int] = {}  # inode -> cached write handles open
        self._lock = threading.Lock()

    def arm(self, dirty_limit: int) -> None:
        self.dirty_limit = dirty_limit
        self.reserve = dirty_limit + dirty_limit // 4 + MIB
        log.info("space guard: reserve %.1f MiB, direct I/O below %.1f MiB free",
                 self.reserve / MIB, self.low_water / MIB)

    @property
    def low_water(self) -> int:
        return 2 * self.reserve

    def wants_direct(self, free: int) -> bool:
        """For an open for writing: direct I/O once free space is below the mark."""
        if self.reserve > 0 and free < self.low_water:
            self.direct_opens += 1
            return True
        return False

    def opened(self, fh: int, ino: int, direct: bool) -> None:
        with self._lock:
            self._writers[fh] = _Writer(ino, direct)
            if not direct:
                self._cached[ino] = self._cached.get(ino, 0) + 1

    def released(self, fh: int) -> None:
        with self._lock:
            w = self._writers.pop(fh, None)
            if w is not None and not w.direct:
                left = self._cached[w.ino] - 1
                if left:
                    self._cached[w.ino] = left
                else:
                    del self._cached[w.ino]

    def is_write_back(self, fh: int) -> bool:
        """A WRITE that may be the kernel's write-back of cached pages: through a
        cached handle, or to a file a cached handle writes (the kernel sends its pages
        through whichever writable handle of the inode it finds)."""
        w = self._writers.get(fh)
        return w is None or not w.direct or w.ino in self._cached

    def has_cached_writer(self, ino: int) -> bool:
        """Whether the kernel may hold written pages of ``ino`` the file system has
        not seen yet."""
        return ino in self._cached

    @property
    def guarding(self) -> bool:
        """Whether a reserve is kept now: armed, and a cached writer is open."""
        return self.reserve > 0 and bool(self._cached)

    def may_allocate(self, free: int, nbytes: int) -> bool:
        """Whether taking ``nbytes`` (and a pointer block) leaves the reserve whole."""
        if not self._cached or free - nbytes - 4096 >= self.reserve:
            return True
        self.refused += 1
        return False
