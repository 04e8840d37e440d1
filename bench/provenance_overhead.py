"""What recording provenance costs: untar and git clone on plain xv6 and on
provenance, side by side in one run, and the pause of upgrading into provenance
(and back) while tar runs.

As root: ``.venv/bin/python bench/provenance_overhead.py``. The untar tree and the
git repository are fuse_compare.py's (Django 5.1.4 + /usr/include, 18,867 entries;
Django as one commit, 6,809 files), cached in bench/.cache. Each file system gets a
fresh 6 GiB image and a fresh mount; the rounds alternate (xv6, provenance, xv6,
provenance ...) so drift on this VM hits both. Writes bench/provenance_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bento_user.runtime import control  # noqa: E402
from fuse_compare import BENTO, assets, sh, timed  # noqa: E402


def mount(work: Path, fs: str) -> tuple[Path, Path]:
    shutil.rmtree(work, ignore_errors=True)
    mnt = work / "mnt"
    mnt.mkdir(parents=True)
    image = work / "disk.img"
    sh(BENTO, "mkfs", "--size", "6G", str(image))
    sh(BENTO, "mount", str(image), str(mnt), "--fs", fs)
    return mnt, image


def workloads(work: Path, fs: str, tarball: Path, repo: Path) -> dict[str, float]:
    mnt, image = mount(work, fs)
    try:
        (mnt / "untar").mkdir()
        untar = timed(lambda: sh("tar", "-xf", str(tarball), "-C", str(mnt / "untar")))
        clone = timed(lambda: sh("git", "-c", "safe.directory=*", "clone", "-q", "--no-local",
                                 str(repo), str(mnt / "clone")))
        log = len(control.call(str(mnt), "report", name="hidden")["data"]) * 3 // 4
        pid = control.call(str(mnt), "status")["pid"]
        with open(f"/proc/{pid}/stat") as f:  # utime + stime: the daemon's CPU seconds
            cpu = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13]) / os.sysconf(
                "SC_CLK_TCK")
        ops = control.call(str(mnt), "stats")["operations"]
        fs_time = sum(o["total_s"] for o in ops.values())
    finally:
        sh(BENTO, "umount", str(mnt))
    sh(BENTO, "fsck", str(image))
    shutil.rmtree(work, ignore_errors=True)
    return {"untar_s": untar, "git_clone_s": clone, "daemon_cpu_s": cpu, "fs_time_s": fs_time,
            "log_bytes": log}


def pauses(work: Path, tarball: Path, upgrades: int) -> dict[str, list[float]]:
    """Upgrades xv6 -> provenance -> xv6 ... while tar extracts onto the mount."""
    mnt, image = mount(work, "xv6")
    out: dict[str, list[float]] = {"into_provenance_ms": [], "back_to_xv6_ms": []}
    try:
        tar = subprocess.Popen(["tar", "-xf", str(tarball), "-C", str(mnt)])
        time.sleep(1)
        for k in range(upgrades):
            target = "provenance" if k % 2 == 0 else "xv6"
            answer = control.call(str(mnt), "upgrade", target=target)
            key = "into_provenance_ms" if target == "provenance" else "back_to_xv6_ms"
            out[key].append(answer["pause_s"] * 1e3)
            time.sleep(0.3)
        tar.wait()
    finally:
        sh(BENTO, "umount", str(mnt))
    sh(BENTO, "fsck", str(image))
    shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--upgrades", type=int, default=40)
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/bento-bench-prov"))
    args = ap.parse_args()
    tarball, repo, entries = assets()
    runs: dict[str, list[dict[str, float]]] = {"xv6": [], "provenance": []}
    for r in range(args.rounds):
        for fs in ("xv6", "provenance"):
            result = workloads(args.work, fs, tarball, repo)
            runs[fs].append(result)
            print(f"round {r + 1} {fs}: untar {result['untar_s']:.2f} s, git clone "
                  f"{result['git_clone_s']:.2f} s, daemon CPU {result['daemon_cpu_s']:.1f} s",
                  file=sys.stderr)
    keys = ("untar_s", "git_clone_s", "daemon_cpu_s", "fs_time_s")
    best = {fs: {k: min(x[k] for x in rs) for k in keys} for fs, rs in runs.items()}
    median = {fs: {k: float(np.median([x[k] for x in rs])) for k in keys}
              for fs, rs in runs.items()}
    p = pauses(args.work, tarball, args.upgrades)
    summary = {
        "date": date.today().isoformat(),
        "command": ".venv/bin/python bench/provenance_overhead.py",
        "untar_entries": entries,
        "runs": runs,
        "best": best,
        "median": median,
        "overhead_best": {k: best["provenance"][k] / best["xv6"][k] - 1 for k in keys},
        "overhead_median": {k: median["provenance"][k] / median["xv6"][k] - 1 for k in keys},
        "log_bytes_after_untar_and_clone": runs["provenance"][-1]["log_bytes"],
        "pause_ms": {k: {"p50": float(np.median(v)), "max": float(max(v)), "n": len(v)}
                     for k, v in p.items()},
    }
    (HERE / "provenance_overhead.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
