"""Foundation benchmark: block device against dd, cached bread, journal commits.

Run from the repository root:

    .venv/bin/python bench/foundation.py [--dir DIR] [--mib 256] [--repeat 15]

It prints a Markdown section for bench/RESULTS.md. Every figure is the median of
``--repeat`` runs; dd and our device run alternately, in alternating order, because
this VM's disk throughput drifts by ±50 % from one second to the next. The image
lives in DIR (default bench/out, on the root file system, where O_DIRECT works) and is
deleted afterwards.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bento_user.blockdev import ImageDevice, RamDevice, aligned_blocks  # noqa: E402
from bento_user.ks_emul import BufferCache, Journal, KernelServices  # noqa: E402

BS = 4096


def median_of(repeat: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(repeat))


def dd(args: list[str]) -> float:
    """Seconds a dd run took (wall clock, measured here like our own runs)."""
    t0 = time.perf_counter()
    subprocess.run(["dd", *args, "status=none"], check=True)
    return time.perf_counter() - t0


def ours_write(image: Path, total: int, chunk: int) -> float:
    with ImageDevice(image) as dev:
        assert dev.direct_io, "the benchmark image must be on a file system with O_DIRECT"
        buf = aligned_blocks(chunk // BS, BS)
        t0 = time.perf_counter()
        for start in range(0, total // BS, chunk // BS):
            dev.write_blocks(start, [buf])
        dev.flush()
        return time.perf_counter() - t0


def ours_read(image: Path, total: int, chunk: int) -> float:
    with ImageDevice(image) as dev:
        buf = aligned_blocks(chunk // BS, BS)
        t0 = time.perf_counter()
        for start in range(0, total // BS, chunk // BS):
            dev.read_blocks(start, [buf])
        return time.perf_counter() - t0


def device_rows(image: Path, mib: int, repeat: int) -> list[str]:
    rows = []
    for label, chunk, total in (("1 MiB", 1 << 20, mib << 20), ("4 KiB", BS, min(mib, 32) << 20)):
        count = total // chunk
        bs_arg = "1M" if chunk == 1 << 20 else "4k"
        w_args = ["if=/dev/zero", f"of={image}", f"bs={bs_arg}", f"count={count}",
                  "oflag=direct", "conv=notrunc,fdatasync"]
        r_args = [f"if={image}", "of=/dev/null", f"bs={bs_arg}", f"count={count}", "iflag=direct"]
        runs = []
        for i in range(repeat):  # interleaved, and in alternating order, against drift
            pair_w = [lambda: dd(w_args), lambda: ours_write(image, total, chunk)]
            pair_r = [lambda: dd(r_args), lambda: ours_read(image, total, chunk)]
            order = 1 if i % 2 else -1
            w = [f() for f in pair_w[::order]][::order]
            r = [f() for f in pair_r[::order]][::order]
            runs.append((w[0], w[1], r[0], r[1]))
        dd_w, our_w, dd_r, our_r = (statistics.median(r[i] for r in runs) for i in range(4))
        mb = total / 1e6
        for what, d, o in (("write", dd_w, our_w), ("read", dd_r, our_r)):
            rows.append(f"| {what} {label} ({total >> 20} MiB) | {mb / d:,.0f} MB/s | "
                        f"{mb / o:,.0f} MB/s | {d / o:.0%} |")
    return rows


def bread_cost(repeat: int) -> tuple[float, float]:
    """µs per cached bread+brelse, plain and as a ``with`` block."""
    cache = BufferCache(RamDevice(64), capacity=64)
    cache.bread(7).release()
    n = 200_000

    def plain() -> float:
        bread, brelse = cache.bread, cache.brelse
        return timeit.timeit(lambda: brelse(bread(7)), number=n) / n * 1e6

    def with_block() -> float:
        def op() -> None:
            with cache.bread(7):
                pass
        return timeit.timeit(op, number=n) / n * 1e6

    return median_of(repeat, plain), median_of(repeat, with_block)


def journal_rows(image: Path, repeat: int) -> list[str]:
    """Commit throughput on the O_DIRECT image: every transaction forced (fsync after
    each operation), and group commit (many handles, one force)."""
    rows = []
    fs_uuid = uuid.uuid4().bytes

    def bench(ops: int, blocks: int, force_every: int) -> tuple[float, float]:
        dev = ImageDevice(image)
        ks = KernelServices(dev, cache_blocks=16384, commit_interval=None)
        Journal.format(ks.cache, 1, 16384, fs_uuid)
        j, _ = ks.open_journal(1, 16384, fs_uuid)
        rng = np.random.default_rng(0)
        home = 20000
        t0 = time.perf_counter()
        for i in range(ops):
            with j.start(blocks) as h:
                for b in rng.choice(4096, blocks, replace=False):
                    with ks.bread(home + int(b)) as bh:
                        h.get_write_access(bh)
                        bh.data[:8] = i & 0xFF
                        h.dirty_metadata(bh)
            if (i + 1) % force_every == 0:
                j.force_commit()
        elapsed = time.perf_counter() - t0
        commits = j.statistics().commits
        ks.close()
        return commits / elapsed, ops * blocks / elapsed

    for label, ops, blocks, every in (
        ("1 block, fsync each", 300, 1, 1),
        ("16 blocks, fsync each", 300, 16, 1),
        ("4 blocks, fsync every 100 (group commit)", 3000, 4, 100),
    ):
        results = [bench(ops, blocks, every) for _ in range(repeat)]
        tps = statistics.median(r[0] for r in results)
        bps = statistics.median(r[1] for r in results)
        rows.append(f"| {label} | {tps:,.0f} commits/s | {bps:,.0f} blocks/s | "
                    f"{bps * BS / 1e6:,.1f} MB/s |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("bench/out"))
    ap.add_argument("--mib", type=int, default=256, help="MiB per 1 MiB-transfer run")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    image = args.dir / "bench.img"
    with open(image, "wb") as f:
        f.truncate(max(args.mib, 256) << 20)
    try:
        print(f"## Foundation: block device, buffer cache, journal — "
              f"{time.strftime('%Y-%m-%d')}\n")
        print(f"Command: `.venv/bin/python bench/foundation.py --mib {args.mib} "
              f"--repeat {args.repeat}` (medians of {args.repeat} runs)  ")
        print(f"Machine: {platform.machine()}, Linux {platform.release()}, Python "
              f"{platform.python_version()}, image on {args.dir.resolve()}\n")
        print("### Device throughput (sequential, O_DIRECT, write includes the final flush)\n")
        print("| transfer | dd | ImageDevice | ImageDevice / dd |")
        print("|---|---|---|---|")
        for row in device_rows(image, args.mib, args.repeat):
            print(row, flush=True)
        plain, with_block = bread_cost(args.repeat)
        print("\n### Cached bread + brelse\n")
        print(f"- `cache.brelse(cache.bread(n))`: {plain:.2f} µs")
        print(f"- `with cache.bread(n):`: {with_block:.2f} µs\n")
        print("### Journal commits (ImageDevice, 64 MiB journal)\n")
        print("| workload | commits | metadata blocks | metadata bytes |")
        print("|---|---|---|---|")
        for row in journal_rows(image, args.repeat):
            print(row, flush=True)
    finally:
        image.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
