"""Device flushes per write + fsync on xv6, in-process (no timing: a count).

    .venv/bin/python bench/fsync_flushes.py [REPO]

REPO (default: this checkout) measures another worktree, e.g. an older commit. Each
case makes 50 writes of its size, each followed by fsync, on the direct runtime over
a RAM device, and prints the device's flushes per write + fsync.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parents[1]))
    from bento_user.blockdev import RamDevice
    from bento_user.runtime.direct import DirectRuntime
    from filesystems.xv6 import Xv6, mkfs

    dev = RamDevice(65536)
    mkfs(dev)
    rt = DirectRuntime.open(Xv6(), dev, commit_interval=None)
    c = rt.client()
    for label, size, overwrite in (("new 4 KiB", 4096, False), ("overwrite 4 KiB", 4096, True),
                                   ("new 1 MiB", 1 << 20, False),
                                   ("overwrite 1 MiB", 1 << 20, True)):
        name = label.replace(" ", "_")
        if overwrite:
            c.write_bytes(f"/{name}", b"a" * size)
            fd = c.open(f"/{name}", os.O_RDWR)
            c.fsync(fd)
            c.close(fd)
        before = dev.statistics().flushes
        for i in range(50):
            fd = c.open(f"/{name}" if overwrite else f"/{name}{i}", os.O_RDWR | os.O_CREAT)
            c.pwrite(fd, bytes([i % 250 + 1]) * size, 0)
            c.fsync(fd)
            c.close(fd)
        print(f"{label}: {(dev.statistics().flushes - before) / 50:.2f} flushes per write + fsync")
    rt.close()


if __name__ == "__main__":
    main()
