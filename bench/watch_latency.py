"""The edit -> live loop: from saving a source file to the mount serving the new code.

One run, as root: ``.venv/bin/python bench/watch_latency.py [--edits 20] [--fs tiny]``.
A copy of the file system's package (outside the repository) is mounted with
``bento mount --watch``; each edit rewrites ``statfs``'s name limit in it (a change a
developer could make, visible through ``statvfs`` without the kernel's caches in the
way) and the clock runs from the write's return until ``statvfs`` shows the new value
(polled every millisecond). Writes bench/watch_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BENTO = str(Path(sys.executable).with_name("bento"))
# the package, its file with statfs, and how its statfs ends
SOURCES = {"tiny": ("filesystems/tiny", "__init__.py", r"files_free(, name_max=\d+)?\)"),
           "xv6": ("filesystems/xv6", "_fs.py", r"name_max=(NAME_MAX|\d+)\)")}


def set_limit(source: Path, fs: str, limit: int) -> None:
    """Make the copy's statfs report ``limit`` as its name limit."""
    _, name, pattern = SOURCES[fs]
    end = f"files_free, name_max={limit})" if fs == "tiny" else f"name_max={limit})"
    text, n = re.subn(pattern, end, (source / name).read_text())
    assert n == 1, f"statfs not found in {name}"
    (source / name).write_text(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--edits", type=int, default=20)
    p.add_argument("--fs", choices=sorted(SOURCES), default="tiny")
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (mounts)")
    work = Path(tempfile.mkdtemp(prefix="bento-watch-", dir="/var/tmp"))
    source = work / f"{args.fs}mod"
    shutil.copytree(HERE.parent / SOURCES[args.fs][0], source,
                    ignore=shutil.ignore_patterns("__pycache__"))
    set_limit(source, args.fs, 200)
    image, mnt = work / "disk.img", work / "mnt"
    mnt.mkdir()
    subprocess.run([BENTO, "mkfs", str(image), "--size", "64M", "--fs", str(source)], check=True,
                   capture_output=True)
    subprocess.run([BENTO, "mount", str(image), str(mnt), "--fs", str(source), "--watch",
                    "--log", str(work / "log")], check=True)
    seconds = []
    try:
        for i in range(args.edits):
            limit = 201 + i
            time.sleep(0.3)  # edits a person makes, not a burst
            start = time.perf_counter()
            set_limit(source, args.fs, limit)
            while os.statvfs(mnt).f_namemax != limit:
                if time.perf_counter() - start > 10:
                    raise SystemExit(f"edit {i}: not live after 10 s (see {work / 'log'})")
                time.sleep(0.001)
            seconds.append(time.perf_counter() - start)
    finally:
        subprocess.run([BENTO, "umount", str(mnt)], check=False)
    ms = np.array(seconds) * 1000
    result = {"date": date.today().isoformat(), "fs": args.fs, "edits": args.edits,
              "ms": [round(x, 1) for x in ms], "p50_ms": round(float(np.median(ms)), 1),
              "p90_ms": round(float(np.percentile(ms, 90)), 1), "max_ms": round(float(ms.max()), 1),
              "min_ms": round(float(ms.min()), 1),
              "command": f".venv/bin/python bench/watch_latency.py --edits {args.edits} --fs {args.fs}"}
    (HERE / f"watch_latency_{args.fs}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "ms"}))
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
