"""The same workloads, in one run, on: our xv6 mount, the kernel's ext4 on a loop
device, fuse2fs on an ext4 image, and tmpfs. Prints times and ratios, writes a JSON
file and a chart. Run as root: ``.venv/bin/python bench/fuse_compare.py``.

Assets (downloaded once into bench/.cache): the Django 5.1.4 sdist from PyPI. The
untar tree is Django plus this machine's /usr/include; the git repository is Django
committed as one commit.

Nothing here is synced unless the workload says so (dd's fdatasync, fio's end_fsync):
times are what a user waits for. Caches are dropped before the cold read and the
random reads; our own buffer cache (256 MiB) is not, and the 1 GiB file is 4x its size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
BENTO = str(Path(sys.executable).with_name("bento"))
DJANGO = "django==5.1.4"
TARGETS = ["bento", "ext4", "fuse2fs", "tmpfs"]
IMAGE_SIZE = 6 << 30


def sh(*cmd: str, cwd: Path | None = None, quiet: bool = True) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


# -- assets ---------------------------------------------------------------------------


def assets() -> tuple[Path, Path, int]:
    CACHE.mkdir(exist_ok=True)
    sdist = next(CACHE.glob("Django-*.tar.gz"), None)
    if sdist is None:
        sh(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
           DJANGO, "-d", str(CACHE))
        sdist = next(CACHE.glob("Django-*.tar.gz"))
    tree = CACHE / "tree"
    tarball = CACHE / "tree.tar"
    repo = CACHE / "repo"
    if not tarball.exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir()
        sh("tar", "-xzf", str(sdist), "-C", str(tree))
        sh("cp", "-a", "/usr/include", str(tree / "include"))
        sh("tar", "-cf", str(tarball), "-C", str(tree), ".")
    if not repo.exists():
        django = next(tree.glob("Django-*"))
        sh("cp", "-a", str(django), str(repo))
        git = ("git", "-c", "user.name=bench", "-c", "user.email=bench@localhost",
               "-c", "safe.directory=*")
        sh(*git, "init", "-q", cwd=repo)
        sh(*git, "add", "-A", cwd=repo)
        sh(*git, "commit", "-q", "-m", "Django", cwd=repo)
    entries = int(sh("sh", "-c", f"tar -tf {tarball} | wc -l"))
    return tarball, repo, entries


# -- targets --------------------------------------------------------------------------


class Target:
    def __init__(self, name: str, work: Path, cache_mib: int) -> None:
        self.name = name
        self.work = work / name
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.mnt = self.work / "mnt"
        self.mnt.mkdir()
        self.image = self.work / "disk.img"
        self.loop: str | None = None
        self.cache_mib = cache_mib

    def mount(self) -> None:
        if self.name != "tmpfs":
            with open(self.image, "wb") as f:
                f.truncate(IMAGE_SIZE)
        if self.name == "bento":
            sh(BENTO, "mkfs", str(self.image))
            sh(BENTO, "mount", str(self.image), str(self.mnt), "-o", f"cache_mib={self.cache_mib}")
        elif self.name == "ext4":
            sh("mkfs.ext4", "-q", "-F", str(self.image))
            self.loop = sh("losetup", "-f", "--show", str(self.image)).strip()
            sh("mount", self.loop, str(self.mnt))
        elif self.name == "fuse2fs":
            sh("mkfs.ext4", "-q", "-F", str(self.image))
            sh("fuse2fs", str(self.image), str(self.mnt), "-o", "allow_other")
        else:
            sh("mount", "-t", "tmpfs", "-o", "size=7g", "tmpfs", str(self.mnt))

    def unmount(self) -> None:
        unmount(self.name, self.mnt, self.image, self.loop)
        shutil.rmtree(self.work, ignore_errors=True)


def unmount(name: str, mnt: Path, image: Path, loop: str | None) -> None:
    """Unmount a target and wait until it is gone (fuse2fs exits after fusermount)."""
    if name.startswith("bento"):
        sh(BENTO, "umount", str(mnt))
    elif name == "fuse2fs":
        sh("fusermount3", "-u", str(mnt))
        while subprocess.run(["pgrep", "-f", f"fuse2fs {image}"],
                             capture_output=True).returncode == 0:
            time.sleep(0.05)
    else:
        sh("umount", str(mnt))
    if loop:
        sh("losetup", "-d", loop)


# -- workloads: each returns {metric: value} ------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


SMALL_FILES = """
import os, sys, time
d = sys.argv[1]
os.mkdir(d)
t0 = time.perf_counter()
for i in range(10000):
    os.close(os.open(f"{d}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
t1 = time.perf_counter()
for i in range(10000):
    os.stat(f"{d}/f{i}")
t2 = time.perf_counter()
for i in range(10000):
    os.unlink(f"{d}/f{i}")
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def fio(mnt: Path, rw: str, seconds: int) -> float:
    out = sh("fio", "--name=bench", f"--filename={mnt}/fio.dat", f"--rw={rw}", "--bs=4k",
             "--size=512m", "--ioengine=psync", "--time_based", f"--runtime={seconds}",
             "--end_fsync=1", "--output-format=json")
    job = json.loads(out)["jobs"][0]
    return float(job["read" if rw == "randread" else "write"]["iops"])


def run_workloads(t: Target, tarball: Path, repo: Path, fio_seconds: int) -> dict[str, float]:
    m = t.mnt
    r: dict[str, float] = {}
    (m / "untar").mkdir()
    r["untar_s"] = timed(lambda: sh("tar", "-xf", str(tarball), "-C", str(m / "untar")))
    r["git_clone_s"] = timed(lambda: sh("git", "-c", "safe.directory=*", "clone", "-q",
                                        "--no-local", str(repo), str(m / "clone")))
    create, stat, delete = map(float, sh(sys.executable, "-c", SMALL_FILES,
                                         str(m / "small")).split())
    r["create_10k_s"], r["stat_10k_s"], r["delete_10k_s"] = create, stat, delete
    r["find_du_s"] = timed(lambda: (sh("find", str(m / "untar")), sh("du", "-s", str(m / "untar"))))
    r["rm_rf_s"] = timed(lambda: sh("rm", "-rf", str(m / "untar"), str(m / "clone")))
    seconds = timed(lambda: sh("dd", "if=/dev/zero", f"of={m}/big", "bs=1M", "count=1024",
                               "conv=fdatasync"))
    r["seq_write_mib_s"] = 1024 / seconds
    drop_caches()
    seconds = timed(lambda: sh("dd", f"if={m}/big", "of=/dev/null", "bs=1M"))
    r["seq_read_mib_s"] = 1024 / seconds
    os.unlink(m / "big")
    r["fio_randwrite_iops"] = fio(m, "randwrite", fio_seconds)
    drop_caches()
    r["fio_randread_iops"] = fio(m, "randread", fio_seconds)
    return r


LOWER_IS_BETTER = {"untar_s", "git_clone_s", "create_10k_s", "stat_10k_s", "delete_10k_s",
                   "find_du_s", "rm_rf_s"}


def table(results: dict[str, dict[str, float]]) -> str:
    metrics = list(next(iter(results.values())))
    names = list(results)
    lines = [f"| workload | {' | '.join(names)} | bento/ext4 | bento/fuse2fs |",
             "|---|" + "---:|" * (len(names) + 2)]
    for k in metrics:
        cells = [f"{results[n][k]:,.2f}" if k.endswith("_s") else f"{results[n][k]:,.0f}"
                 for n in names]
        b = results.get("bento", {}).get(k)

        def speed(other: str) -> str:
            o = results.get(other, {}).get(k)
            if not o or not b:
                return "-"
            # as a speed: >1 means bento is faster
            return f"{(o / b if k in LOWER_IS_BETTER else b / o):.2f}x"

        lines.append(f"| {k} | {' | '.join(cells)} | {speed('ext4')} | {speed('fuse2fs')} |")
    return "\n".join(lines)


def chart(results: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(next(iter(results.values())))
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(results)
    for i, (name, r) in enumerate(results.items()):
        speeds = [(results["ext4"][k] / r[k] if k in LOWER_IS_BETTER else r[k] / results["ext4"][k])
                  if r[k] else 0 for k in metrics]
        ax.bar([j + i * width for j in range(len(metrics))], speeds, width, label=name)
    ax.set_yscale("log")
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(metrics))], metrics, rotation=30,
                  ha="right")
    ax.set_ylabel("speed relative to kernel ext4 (log; higher is better)")
    ax.set_title(f"bento-user xv6 vs reference file systems, {date.today()}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--work", type=Path, default=Path("/var/tmp/bento-bench"))
    p.add_argument("--fio-seconds", type=int, default=10)
    p.add_argument("--cache-mib", type=int, default=256, help="bento's buffer cache")
    p.add_argument("--out", type=Path, default=HERE / "fuse_compare")
    args = p.parse_args()
    if os.getuid() != 0:
        raise SystemExit("run as root (loop devices, drop_caches, mounts)")
    tarball, repo, entries = assets()
    print(f"untar tree: {entries:,} entries; repository: "
          f"{sh('git', '-c', 'safe.directory=*', '-C', str(repo), 'ls-files').count(chr(10)):,} files", flush=True)
    results: dict[str, dict[str, float]] = {}
    for name in args.targets.split(","):
        t = Target(name, args.work, args.cache_mib)
        t.mount()
        try:
            print(f"-- {name}", flush=True)
            results[name] = run_workloads(t, tarball, repo, args.fio_seconds)
            print(json.dumps(results[name]), flush=True)
        finally:
            t.unmount()
    print(table(results))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    if {"ext4", "bento"} <= results.keys():
        chart(results, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
