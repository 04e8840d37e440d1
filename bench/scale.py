"""Performance at scale: data far bigger than the buffer cache, in one run.

Two parts (issue 23), both on 6 GiB images on ``/``:

1. The big-tree workload on every target: untar Python's whole standard library tree
   (this machine's ``lib/python3.11``, site-packages included), then ``git clone
   --no-local`` a one-commit repository of the same tree onto the same file system;
   and, on a fresh file system, the same clone alone. Targets: kernel ext4 on a loop
   device, fuse2fs, and bento with its default options, with ``cache_mib=256`` and with
   ``cache_mib=2048``. The daemon's peak resident memory (VmHWM) is read before unmount.
2. The scale series: bento with the cache fixed at 256 MiB untars a quarter, a half,
   one, two and four copies of the tree (each on a fresh file system); seconds per
   GiB must stay flat.

Run as root: ``.venv/bin/python bench/scale.py`` (about 40 minutes here). Writes
``bench/scale.json`` and ``bench/scale.png``; prints the tables for RESULTS.md.
Nothing is synced inside a timed step: times are what a user waits for.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fuse_compare import drop_caches, sh, unmount  # noqa: E402  (bench/ is not a package)

BENTO = str(Path(sys.executable).with_name("bento"))
IMAGE_SIZE = 6 << 30
GIT = ("git", "-c", "user.name=bench", "-c", "user.email=bench@localhost",
       "-c", "safe.directory=*")
TARGETS = {"ext4": None, "fuse2fs": None, "bento": "", "bento-256": "cache_mib=256",
           "bento-2048": "cache_mib=2048"}


def timed(*cmd: str, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    sh(*cmd, cwd=cwd)
    return time.perf_counter() - start


# -- assets ---------------------------------------------------------------------------


def assets(cache: Path, source: Path) -> dict[str, Path | int]:
    """The tree's tarball, a quarter and a half of it (every fourth, every second
    file), and a one-commit repository."""
    cache.mkdir(parents=True, exist_ok=True)
    full, repo = cache / "tree.tar", cache / "repo"
    if not full.exists():
        sh("tar", "-cf", str(full), "-C", str(source.parent), source.name)
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink())
    for name, step in (("quarter", 4), ("half", 2)):
        tarball = cache / f"{name}.tar"  # every step-th file: the same mix of sizes
        if tarball.exists():
            continue
        listing = cache / f"{name}.list"
        listing.write_text("".join(f"{p.relative_to(source.parent)}\n" for p in files[::step]))
        sh("tar", "-cf", str(tarball), "-C", str(source.parent), "-T", str(listing))
    if not (repo / ".git").exists():
        shutil.rmtree(repo, ignore_errors=True)
        sh("cp", "-a", str(source), str(repo))
        sh(*GIT, "init", "-q", cwd=repo)
        sh(*GIT, "add", "-A", "-f", cwd=repo)
        sh(*GIT, "-c", "gc.auto=0", "commit", "-q", "-m", "tree", cwd=repo)
    return {"full": full, "quarter": cache / "quarter.tar", "half": cache / "half.tar",
            "repo": repo}


def tar_bytes(tarball: Path) -> int:
    return sum(int(line.split()[2]) for line in sh("tar", "-tvf", str(tarball)).splitlines()
               if line.startswith("-"))


# -- a file system to measure ---------------------------------------------------------


class Target:
    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        self.work = work / name
        self.mnt = self.work / "mnt"
        self.image = self.work / "disk.img"
        self.loop: str | None = None
        self.peak_rss_mib = 0.0

    def mount(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        self.mnt.mkdir(parents=True)
        with open(self.image, "wb") as f:
            f.truncate(IMAGE_SIZE)
        options = TARGETS.get(self.name, self.name.partition(":")[2])
        if self.name.startswith("bento"):
            sh(BENTO, "mkfs", str(self.image))
            sh(BENTO, "mount", str(self.image), str(self.mnt), *(["-o", options] if options else []))
        elif self.name == "ext4":
            sh("mkfs.ext4", "-q", "-F", str(self.image))
            self.loop = sh("losetup", "-f", "--show", str(self.image)).strip()
            sh("mount", self.loop, str(self.mnt))
        else:
            sh("mkfs.ext4", "-q", "-F", str(self.image))
            sh("fuse2fs", str(self.image), str(self.mnt), "-o", "allow_other")
        drop_caches()

    def unmount(self) -> None:
        if self.name.startswith("bento"):
            stats = json.loads(sh(BENTO, "stat", "--json", str(self.mnt)))["stats"]
            self.peak_rss_mib = stats["memory"]["peak_rss_mib"]
        unmount(self.name, self.mnt, self.image, self.loop)
        shutil.rmtree(self.work, ignore_errors=True)


def big_tree(name: str, work: Path, a: dict) -> dict[str, float]:
    r: dict[str, float] = {}
    t = Target(name, work)
    t.mount()
    try:
        (t.mnt / "untar").mkdir()
        r["untar_s"] = timed("tar", "-xf", str(a["full"]), "-C", str(t.mnt / "untar"))
        r["clone_after_untar_s"] = timed(*GIT, "clone", "-q", "--no-local", str(a["repo"]),
                                         str(t.mnt / "clone"))
    finally:
        t.unmount()
    r["peak_rss_mib"] = t.peak_rss_mib
    t.mount()
    try:
        r["clone_empty_s"] = timed(*GIT, "clone", "-q", "--no-local", str(a["repo"]),
                                   str(t.mnt / "clone"))
    finally:
        t.unmount()
    r["peak_rss_mib"] = max(r["peak_rss_mib"], t.peak_rss_mib)
    return r


SERIES = [("quarter", 1), ("half", 1), ("full", 1), ("full", 2), ("full", 4)]


def scale_point(work: Path, a: dict, tarball: str, copies: int, options: str) -> dict[str, float]:
    t = Target(f"bento:{options}", work)
    t.mount()
    try:
        start = time.perf_counter()
        for i in range(copies):
            (t.mnt / f"c{i}").mkdir()
            sh("tar", "-xf", str(a[tarball]), "-C", str(t.mnt / f"c{i}"))
        seconds = time.perf_counter() - start
    finally:
        t.unmount()
    gib = copies * a[f"{tarball}_bytes"] / 2**30
    return {"gib": gib, "seconds": seconds, "s_per_gib": seconds / gib,
            "peak_rss_mib": t.peak_rss_mib}


def plot(series: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([p["gib"] for p in series], [p["s_per_gib"] for p in series], "o-",
            label="bento, cache 256 MiB")
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("data untarred, GiB (log)")
    ax.set_ylabel("seconds per GiB (flat is the goal)")
    ax.set_title(f"untar at scale, {date.today()}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=Path(os.__file__).parent,
                   help="the tree to untar and clone (default: this Python's lib)")
    p.add_argument("--work", type=Path, default=Path("/var/tmp/bento-scale"))
    p.add_argument("--assets", type=Path, default=HERE / ".cache" / "scale")
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--skip-series", action="store_true")
    p.add_argument("--series-only", action="store_true", help="skip the big-tree table")
    p.add_argument("--out", type=Path, default=HERE / "scale")
    args = p.parse_args()
    if os.getuid() != 0:
        raise SystemExit("run as root (loop devices, drop_caches, mounts)")
    a = assets(args.assets, args.source.resolve())
    for name in ("full", "quarter", "half"):
        a[f"{name}_bytes"] = tar_bytes(a[name])  # type: ignore[index]
    print(f"tree {args.source}: {a['full_bytes'] / 2**20:,.0f} MiB of file data", flush=True)
    results: dict[str, object] = {"date": str(date.today()), "source": str(args.source),
                                  "tree_mib": a["full_bytes"] / 2**20}  # type: ignore[operator]
    table: dict[str, dict[str, float]] = {}
    for name in ([] if args.series_only else args.targets.split(",")):
        print(f"-- {name}", flush=True)
        table[name] = big_tree(name, args.work, a)
        print(json.dumps(table[name]), flush=True)
    results["big_tree"] = table
    series = []
    if not args.skip_series:
        for tarball, copies in SERIES:
            point = scale_point(args.work, a, tarball, copies, "cache_mib=256")
            print(json.dumps(point), flush=True)
            series.append(point)
        results["series"] = series
        plot(series, args.out.with_suffix(".png"))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print("| target | untar, s | clone on an empty fs, s | clone after the untar, s | after/empty | peak RSS, MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in table.items():
        rss = f"{r['peak_rss_mib']:.0f}" if name.startswith("bento") else "-"
        print(f"| {name} | {r['untar_s']:.1f} | {r['clone_empty_s']:.1f} | "
              f"{r['clone_after_untar_s']:.1f} | "
              f"{r['clone_after_untar_s'] / r['clone_empty_s']:.2f}x | {rss} |")
    if series:
        print("| GiB | s | s/GiB |")
        print("|---:|---:|---:|")
        for pt in series:
            print(f"| {pt['gib']:.2f} | {pt['seconds']:.1f} | {pt['s_per_gib']:.1f} |")
        print(f"last / first: {series[-1]['s_per_gib'] / series[0]['s_per_gib']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
