"""How long a live upgrade stops a busy mount, and what programs feel of it.

One run, as root: ``.venv/bin/python bench/upgrade_pause.py``. An xv6 image (2 GiB,
on the disk) is mounted with the defaults; 1,000 files (``--cached N``) are looked up
(the kernel holds their lookup counts: 1,000 cached inodes) and 100 held open. Four load
processes time every system call they make — create+write+close, fsync every 8th
file, rename, a lookup of a missing name, unlink — all of which reach the daemon
(a cached stat or read would not). The load runs alone for a while (the
reference), then through 100 upgrades (xv6 re-imported from source each time,
spaced ~0.15 s apart), then alone again.

Reported: the pause (gate closed) p50/p99/max and what it is made of, as the daemon
measures it; the total time of an upgrade (import included, while serving); and the
load's syscall latencies with and without upgrades, and for the calls that overlapped
a pause. Writes bench/upgrade_pause.json and a timeline (bench/upgrade_pause.png), or
``--out STEM``.json and .png.
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
BENTO = str(Path(sys.executable).with_name("bento"))
sys.path.insert(0, str(HERE.parent))

from bento_user.runtime import control  # noqa: E402

OPS = ["create", "fsync", "rename", "lookup", "unlink"]

# A load process: loops until the stop file appears, timing each call.
LOAD = r"""
import os, sys, time
import numpy as np
top, n, stop, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
d = f"{top}/load{n}"
os.makedirs(d, exist_ok=True)
rows = []
clock = time.monotonic
data = b"x" * 4096
i = 0
while not os.path.exists(stop):
    t = clock(); fd = os.open(f"{d}/a{i}", os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, data)
    opened = clock() - t
    if i % 8 == 0:
        t1 = clock(); os.fsync(fd); rows.append((t1, clock() - t1, 1))
    t2 = clock(); os.close(fd); rows.append((t, opened + clock() - t2, 0))
    t = clock(); os.rename(f"{d}/a{i}", f"{d}/b{i}"); rows.append((t, clock() - t, 2))
    t = clock()
    try:
        os.stat(f"{d}/missing{i}")
    except FileNotFoundError:
        pass
    rows.append((t, clock() - t, 3))
    if i >= 20:
        t = clock(); os.unlink(f"{d}/b{i - 20}"); rows.append((t, clock() - t, 4))
    i += 1
np.save(out, np.array(rows, dtype=np.float64))
"""


def sh(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(values_ms: np.ndarray) -> dict[str, float]:
    if not len(values_ms):
        return {"n": 0}
    p50, p99 = np.percentile(values_ms, [50, 99])
    return {"n": int(len(values_ms)), "p50_ms": float(p50), "p99_ms": float(p99),
            "max_ms": float(values_ms.max())}


def run(work: Path, upgrades: int, quiet_s: float, spacing_s: float,
        cached_n: int = 1000, out: Path = HERE / "upgrade_pause") -> dict[str, object]:
    shutil.rmtree(work, ignore_errors=True)
    mnt = work / "mnt"
    mnt.mkdir(parents=True)
    image = work / "disk.img"
    sh(BENTO, "mkfs", "--size", "2G", str(image))
    sh(BENTO, "mount", str(image), str(mnt))
    held: list[int] = []
    loads: list[subprocess.Popen[bytes]] = []
    stop = work / "stop"
    try:
        cached = mnt / "cached"
        cached.mkdir()
        for i in range(cached_n):
            (cached / f"f{i}").write_bytes(b"c" * 100)
        for i in range(cached_n):
            os.stat(cached / f"f{i}")  # the kernel now holds a lookup on each
        held = [os.open(cached / f"f{i}", os.O_RDWR) for i in range(0, 1000, 10)]
        pid = control.call(str(mnt), "status")["pid"]
        print(f"{cached_n:,} files looked up; the daemon's RSS {rss_mib(pid):,.0f} MiB",
              file=sys.stderr, flush=True)
        loads = [subprocess.Popen([sys.executable, "-c", LOAD, str(mnt), str(n), str(stop),
                                   str(work / f"load{n}.npy")]) for n in range(4)]
        time.sleep(quiet_s)
        pid = control.call(str(mnt), "status")["pid"]
        rss_before = rss_mib(pid)
        t_upgrades = time.monotonic()
        reports = []
        for k in range(upgrades):
            started = time.monotonic()
            answer = control.call(str(mnt), "upgrade", target="xv6")
            answer["client_s"] = time.monotonic() - started
            reports.append(answer)
            print(f"\rupgrade {k + 1}/{upgrades}: pause {answer['pause_s'] * 1e3:.2f} ms",
                  end="", file=sys.stderr, flush=True)
            time.sleep(spacing_s)
        print(file=sys.stderr)
        t_after = time.monotonic()
        rss_after = rss_mib(pid)
        time.sleep(quiet_s)
    finally:
        stop.touch()
        for p in loads:
            p.wait(timeout=120)
        for fd in held:
            os.close(fd)
        sh(BENTO, "umount", str(mnt))
    fsck = sh(BENTO, "fsck", str(image)).strip()
    rows = np.concatenate([np.load(work / f"load{n}.npy") for n in range(4)])
    shutil.rmtree(work, ignore_errors=True)

    pauses = np.array([r["pause_s"] for r in reports]) * 1e3
    windows = [(r["closed_at"], r["closed_at"] + r["pause_s"]) for r in reports]
    start, lat = rows[:, 0], rows[:, 1] * 1e3
    during = (start >= t_upgrades) & (start < t_after)
    overlapped = np.zeros(len(rows), bool)
    for a, b in windows:
        overlapped |= (start <= b) & (start + rows[:, 1] >= a)
    quiet = ~during
    result: dict[str, object] = {
        "date": date.today().isoformat(),
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "setup": {"cached_inodes": cached_n, "open_files": len(held), "load_processes": 4,
                  "upgrades": upgrades, "image": "2 GiB xv6 on the VM's disk",
                  "state_handed_over": reports[-1]["state"]},
        "pause_ms": percentiles(pauses),
        "pause_parts_p50_ms": {k: float(np.median([r[k] for r in reports]) * 1e3)
                               for k in ("commit_s", "prepare_s", "build_s")},
        "upgrade_total_ms": percentiles(np.array([r["total_s"] for r in reports]) * 1e3),
        "import_ms": percentiles(np.array([r["import_s"] for r in reports]) * 1e3),
        "syscalls_without_upgrades": percentiles(lat[quiet]),
        "syscalls_during_upgrades": percentiles(lat[during]),
        "syscalls_overlapping_a_pause": percentiles(lat[overlapped]),
        "per_op_without_upgrades": {op: percentiles(lat[quiet & (rows[:, 2] == i)])
                                    for i, op in enumerate(OPS)},
        "per_op_during_upgrades": {op: percentiles(lat[during & (rows[:, 2] == i)])
                                   for i, op in enumerate(OPS)},
        "daemon_rss_mib": {"before_upgrades": rss_before, "after_upgrades": rss_after},
        "fsck": fsck,
        "each_upgrade_ms": [{k: round(r[k] * 1e3, 3) for k in
                             ("pause_s", "commit_s", "prepare_s", "build_s", "import_s")}
                            for r in reports],
    }
    chart(rows, reports, t_upgrades, out.with_suffix(".png"))
    return result


def chart(rows: np.ndarray, reports: list[dict], t0: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), height_ratios=[3, 1.2])
    colors = ["tab:blue", "tab:purple", "tab:green", "tab:gray", "tab:olive"]
    for i, op in enumerate(OPS):
        sel = rows[:, 2] == i
        top.scatter(rows[sel, 0] - t0, rows[sel, 1] * 1e3, s=1, alpha=0.35, color=colors[i],
                    label=op, rasterized=True)
    at = np.array([r["closed_at"] for r in reports]) - t0
    top.axvspan(at.min(), at.max(), color="tab:red", alpha=0.06, lw=0)
    top.scatter(at, [r["pause_s"] * 1e3 for r in reports], marker="v", s=22, color="tab:red",
                label="upgrade pause", zorder=3)
    top.set_yscale("log")
    top.set_xlabel("seconds since the first upgrade")
    top.set_ylabel("latency (ms)")
    top.set_title(f"Syscalls of 4 load processes through {len(reports)} live upgrades "
                  "(red: each upgrade's pause)")
    legend = top.legend(loc="upper right", fontsize=8)
    for handle in legend.legend_handles:
        handle.set_sizes([20])  # type: ignore[union-attr]
        handle.set_alpha(1)
    x = np.arange(len(reports))
    parts = [("commit_s", "commit", "tab:orange"), ("prepare_s", "prepare_upgrade", "tab:cyan"),
             ("build_s", "from_upgrade", "tab:green")]
    base = np.zeros(len(reports))
    for key, label, color in parts:
        v = np.array([r[key] for r in reports]) * 1e3
        bottom.bar(x, v, bottom=base, color=color, label=label, width=0.8)
        base += v
    bottom.plot(x, [r["pause_s"] * 1e3 for r in reports], "k.", ms=3, label="pause")
    bottom.set_xlabel("upgrade #")
    bottom.set_ylabel("pause (ms)")
    bottom.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upgrades", type=int, default=100)
    ap.add_argument("--cached", type=int, default=1000,
                    help="files made and looked up first: inodes the kernel holds")
    ap.add_argument("--quiet", type=float, default=8.0, help="seconds of load alone, before and after")
    ap.add_argument("--spacing", type=float, default=0.15, help="seconds between upgrades")
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/bento-bench-upgrade"))
    ap.add_argument("--out", type=Path, default=HERE / "upgrade_pause")
    args = ap.parse_args()
    if os.getuid() != 0:
        raise SystemExit("run as root (FUSE mounts with allow_other)")
    result = run(args.work, args.upgrades, args.quiet, args.spacing, args.cached, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
