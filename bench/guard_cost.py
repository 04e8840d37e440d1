"""What the guard (runtime/guard.py) costs a call: the same metadata-heavy workload on
the direct runtime with and without it, alternated, five rounds.

    .venv/bin/python bench/guard_cost.py

Per file: create, write 100 bytes, close, stat, truncate to 10 bytes, unlink (about
nine calls); 3,000 files a round. Prints each round and the median ratio.
"""

from __future__ import annotations

import statistics
import time

from bento_user.blockdev import RamDevice
from bento_user.runtime.direct import DirectRuntime
from filesystems.xv6 import Xv6

FILES = 3000


def workload(guarded: bool) -> float:
    dev = RamDevice(65536)
    Xv6.mkfs(dev)
    rt = DirectRuntime.open(Xv6(), dev, commit_interval=None)
    if not guarded:
        rt.call = rt.dispatch.call  # type: ignore[method-assign]
    c = rt.client()
    start = time.perf_counter()
    for i in range(FILES):
        fd = c.open(b"/f%d" % i, 0o101, 0o644)
        c.pwrite(fd, b"x" * 100, 0)
        c.close(fd)
        c.stat(b"/f%d" % i)
    for i in range(FILES):
        c.truncate(b"/f%d" % i, 10)
        c.unlink(b"/f%d" % i)
    seconds = time.perf_counter() - start
    rt.close()
    return seconds


def main() -> None:
    ratios = []
    for r in range(5):
        with_guard, without = workload(True), workload(False)
        ratios.append(with_guard / without)
        print(f"round {r + 1}: guarded {with_guard:.2f} s, unguarded {without:.2f} s, "
              f"ratio {ratios[-1]:.3f}")
    print(f"median ratio {statistics.median(ratios):.3f} (guarded / unguarded)")


if __name__ == "__main__":
    main()
