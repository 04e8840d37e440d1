"""Inodes the kernel holds, in-process: how many stay in memory, how the RSS grows,
and what a live upgrade's state costs to prepare and swap.

    .venv/bin/python bench/held_inodes.py N [REPO]

makes N files by mknod on the direct runtime, each held by one lookup (as the
kernel's dentry cache holds what it has seen), then times ``prepare_upgrade`` (the
best of 5) and one live upgrade. REPO (default: this checkout) lets the same script
measure another worktree, e.g. an older commit. The RSS includes the RAM device's
own blocks, so it is not a per-inode figure by itself: compare two commits.
"""

from __future__ import annotations

import gc
import stat
import sys
import time
from pathlib import Path


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    n = int(sys.argv[1])
    sys.path.insert(0, sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).parents[1]))
    from bento_user.api import Request
    from bento_user.blockdev import RamDevice
    from bento_user.runtime.direct import DirectRuntime
    from filesystems.xv6 import Xv6, mkfs

    dev = RamDevice(max(262144, 2 * n + 65536))
    mkfs(dev, ninodes=n + 1000)
    rt = DirectRuntime.open(Xv6(), dev, commit_interval=None)
    c = rt.client()
    c.mkdir("/d")
    d = c.stat("/d").ino
    gc.collect()
    base = rss_mib()
    for i in range(n):
        rt.call("mknod", Request(), d, b"f%06d" % i, stat.S_IFREG | 0o644, 0)
    gc.collect()
    grew, in_memory = rss_mib() - base, len(rt.fs.icache.table)
    prepare = min(_timed(rt.fs.prepare_upgrade) for _ in range(5))
    report = rt.upgrade(Xv6)
    print(f"N={n}: inodes in memory {in_memory:,}; RSS grew {grew:.0f} MiB; "
          f"prepare_upgrade {prepare * 1000:.1f} ms; upgrade pause {report.pause_s * 1000:.1f} ms")
    rt.close()


def _timed(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
