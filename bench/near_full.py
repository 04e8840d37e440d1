"""What the space guard costs (issue 14 §1): nothing measurable while the disk has room,
synchronous writes once it is nearly full.

On a fresh 1 GiB image mounted with the defaults:
1. 5,000 files of 4 KiB, each opened, written and closed by this process (every open
   for writing asks the file system for its free space once);
2. one 8 MiB file in 4 KiB writes, with the disk empty (through the page cache);
3. the disk filled to just below the low-water mark, then the same 8 MiB file (direct
   I/O: each write reaches the daemon).
``--code DIR`` runs the mount from another checkout (the commit before the guard, for
an A/B run); its part 3 then shows the old behaviour at the same fill.

    .venv/bin/python bench/near_full.py [--code /tmp/old]     # as root
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENTO = str(Path(sys.executable).with_name("bento"))
MIB = 1 << 20


def bento(code: str | None, *args: str) -> str:
    env = dict(os.environ, **({"PYTHONPATH": code} if code else {}))
    done = subprocess.run([BENTO, *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"bento {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def small_files(root: Path, n: int = 5000) -> float:
    data = b"s" * 4096
    start = time.perf_counter()
    for i in range(n):
        fd = os.open(root / f"s{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
    return time.perf_counter() - start


def stream(path: Path, size: int = 8 * MIB) -> float:
    """MB/s of ``size`` bytes in 4 KiB writes, closed (close sends what the kernel holds)."""
    block = b"w" * 4096
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(size // 4096):
        os.write(fd, block)
    os.close(fd)
    return size / MIB / (time.perf_counter() - start)


def fill_to(root: Path, free_target: int) -> None:
    """Write a filler file until the free space is at most ``free_target``."""
    with open(root / "filler", "wb") as f:
        while True:
            st = os.statvfs(root)
            free = st.f_bavail * st.f_frsize
            if free <= free_target:
                return
            f.write(b"f" * (16 * MIB if free > free_target + 64 * MIB else MIB))
            f.flush()
            os.fsync(f.fileno())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--code", help="mount with the bento_user of this checkout")
    p.add_argument("--work", type=Path, default=Path("/var/tmp/bento-near-full"))
    args = p.parse_args()
    if os.getuid() != 0:
        raise SystemExit("run as root (mounts)")
    shutil.rmtree(args.work, ignore_errors=True)
    mnt, image = args.work / "mnt", args.work / "disk.img"
    mnt.mkdir(parents=True)
    bento(args.code, "mkfs", str(image), "--size", "1G")
    bento(args.code, "mount", str(image), str(mnt))
    try:
        time.sleep(0.5)  # the guard is armed once INIT has come
        (mnt / "small").mkdir()
        r: dict[str, float] = {"small_files_s": small_files(mnt / "small")}
        stats = json.loads(bento(args.code, "stat", "--json", str(mnt)))["stats"]
        ops = stats["operations"]
        r["statfs_calls"] = ops.get("statfs", {}).get("calls", 0)
        r["statfs_p50_us"] = ops.get("statfs", {}).get("p50_us", 0.0)
        r["create_p50_us"] = ops["create"]["p50_us"]
        r["stream_empty_mb_s"] = stream(mnt / "stream-empty")
        space = stats.get("space", {})
        low = space.get("low_water") or 2 * 61 * MIB
        fill_to(mnt, low - 16 * MIB)
        r["free_mib_when_full"] = (lambda s: s.f_bavail * s.f_frsize / MIB)(os.statvfs(mnt))
        r["stream_near_full_mb_s"] = stream(mnt / "stream-full")
        stats = json.loads(bento(args.code, "stat", "--json", str(mnt)))["stats"]
        r["direct_opens"] = stats.get("space", {}).get("direct_opens", 0)
    finally:
        bento(args.code, "umount", str(mnt))
        shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps({"code": args.code or "this checkout", **r}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
