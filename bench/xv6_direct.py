"""xv6 on the direct runtime: operations per second and MB/s, next to the host's ext4.

Run from the repository root:

    .venv/bin/python bench/xv6_direct.py [--dir DIR] [--files 2000] [--mib 64] [--repeat 5]

The xv6 image (512 MiB, O_DIRECT) and the reference directory both live in DIR (default
bench/out, on the root file system: ext4 here). The reference is the same loop with
Python's ``os`` calls on that ext4 directory — kernel syscalls with the page cache, so
it is an upper bound no Python file system reaches, and the ratio says how far off we
are. Each figure is the median of ``--repeat`` alternating runs. Prints a Markdown
section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bento_user.blockdev import ImageDevice  # noqa: E402
from bento_user.runtime.direct import DirectRuntime  # noqa: E402
from filesystems.xv6 import Xv6, mkfs  # noqa: E402

BLOCK = os.urandom(4096)
MIB = os.urandom(1 << 20)


class HostFs:
    """The same calls on a host directory, through the kernel."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def p(self, path: str) -> str:
        return str(self.root) + path

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(self.p(path), flags, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def stat(self, path: str) -> os.stat_result:
        return os.stat(self.p(path))

    def unlink(self, path: str) -> None:
        os.unlink(self.p(path))

    def mkdir(self, path: str) -> None:
        os.mkdir(self.p(path))

    def pwrite(self, fd: int, data: bytes, off: int) -> int:
        return os.pwrite(fd, data, off)

    def pread(self, fd: int, n: int, off: int) -> bytes:
        return os.pread(fd, n, off)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)


def workload(fs, files: int, mib: int, tag: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds per phase; the names are what RESULTS.md reports."""
    out: dict[str, float] = {}
    d = f"/{tag}"
    fs.mkdir(d)

    def timed(name: str, fn: Callable[[], None]) -> None:
        t = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - t

    W = os.O_WRONLY | os.O_CREAT
    timed("create", lambda: [fs.close(fs.open(f"{d}/f{i}", W)) for i in range(files)])
    timed("stat", lambda: [fs.stat(f"{d}/f{i}") for i in range(files)])

    def write4k() -> None:
        for i in range(files):
            fd = fs.open(f"{d}/f{i}", os.O_WRONLY)
            fs.pwrite(fd, BLOCK, 0)
            fs.close(fd)
    timed("write 4 KiB", write4k)

    def read4k() -> None:
        for i in range(files):
            fd = fs.open(f"{d}/f{i}", os.O_RDONLY)
            fs.pread(fd, 4096, 0)
            fs.close(fd)
    timed("read 4 KiB", read4k)
    timed("unlink", lambda: [fs.unlink(f"{d}/f{i}") for i in range(files)])

    def big_write() -> None:
        fd = fs.open(f"{d}/big", W)
        for i in range(mib):
            fs.pwrite(fd, MIB, i << 20)
        fs.fsync(fd)
        fs.close(fd)
    timed("write 1 MiB", big_write)

    def big_read() -> None:
        fd = fs.open(f"{d}/big", os.O_RDONLY)
        for i in range(mib):
            fs.pread(fd, 1 << 20, i << 20)
        fs.close(fd)
    timed("read 1 MiB", big_read)
    fs.unlink(f"{d}/big")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=Path("bench/out"))
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    img = args.dir / "xv6-bench.img"
    host = args.dir / "host"
    with open(img, "wb") as f:
        f.truncate(512 << 20)
    with ImageDevice(img) as dev:
        mkfs(dev)
    rt = DirectRuntime.open(Xv6(), ImageDevice(img))
    ours, theirs = rt.client(), HostFs(host)
    results: dict[str, list[tuple[float, float]]] = {}
    try:
        for r in range(args.repeat):
            shutil.rmtree(host, ignore_errors=True)
            host.mkdir()
            pairs = [(ours, "x"), (theirs, "h")]
            if r % 2:
                pairs.reverse()
            got = {tag: workload(fs, args.files, args.mib, f"{tag}{r}") for fs, tag in pairs}
            for phase in got["x"]:
                results.setdefault(phase, []).append((got["x"][phase], got["h"][phase]))
    finally:
        rt.close()
        img.unlink()
        shutil.rmtree(host, ignore_errors=True)
    print(f"## xv6, direct runtime ({time.strftime('%Y-%m-%d')})\n")
    print(f"`.venv/bin/python bench/xv6_direct.py --files {args.files} --mib {args.mib} "
          f"--repeat {args.repeat}`; medians of {args.repeat} alternating runs; 512 MiB O_DIRECT "
          "image; reference: the same loop with `os` calls on the host's ext4 (page cache).\n")
    print("| operation | xv6 (direct) | host ext4 via os | ratio |")
    print("|---|---:|---:|---:|")
    for phase, runs in results.items():
        x = statistics.median(a for a, _ in runs)
        h = statistics.median(b for _, b in runs)
        if "MiB" in phase:
            fx, fh, unit = args.mib / x, args.mib / h, "MB/s"
        else:
            fx, fh, unit = args.files / x, args.files / h, "ops/s"
        print(f"| {phase} | {fx:,.0f} {unit} | {fh:,.0f} {unit} | {fx / fh:.0%} |")


if __name__ == "__main__":
    main()
