"""The same workloads, in one run, on: our xv6 mount, the kernel's ext4 on a loop
device, fuse2fs on an ext4 image, the two FUSE floors, and tmpfs. Prints times and
ratios, writes a JSON file and a chart. Run as root:
``.venv/bin/python bench/fuse_compare.py``.

The floors are FUSE file systems that do no work of their own, passing every request
through to a directory (here: an ext4 on a loop device): what the kernel's FUSE and
the library cost, below which no FUSE file system can go.

- ``c-floor``: libfuse 3.14.0's ``example/passthrough_ll.c`` (Debian's libfuse3-dev is
  3.14.0), built with its default options (multi-threaded, 1 s timeouts, no
  writeback cache) from Debian's source package, fetched by
  ``scripts/libfuse-source.sh`` as setup.sh fetches it for our own libfuse.
- ``py-floor``: pyfuse3 3.5.0's ``examples/passthroughfs.py`` from its sdist on PyPI,
  run by this venv's Python (and pyfuse3).

Both are built in bench/.cache (never committed).

``bento-null`` is bento's own floor: ``bench/null_fs.py``, a file system of Python
dicts that does no work, mounted through bento's runtime with bento's options
(writeback cache, ``default_permissions``). What it costs is the runtime's, pyfuse3's
and the kernel's share; the rest of ``bento``'s time is xv6's own Python.
``bento-null-bare`` is the same without the writeback cache and
``default_permissions``, as the C floor runs: against ``c-floor`` it shows what
pyfuse3 and the runtime cost, against ``bento-null`` what those two options cost.

``bento-stock-libfuse`` is bento on Debian's libfuse as shipped, without
third_party/libfuse's patch (no FUSE_HANDLE_KILLPRIV_V2: a GETXATTR before every
write). ``py-floor`` runs on this venv's pyfuse3, so on the patched libfuse; the
C floor on Debian's.

``bento-before`` mounts the code of another checkout (``--before DIR``, e.g. a git
worktree of the commit before a change) in the same run: this VM drifts by 2-5x
within an hour, so a before/after pair is only fair side by side. With
``--runs N`` every target is measured once per round and medians are reported.

Assets (downloaded once into bench/.cache): the Django 5.1.4 sdist from PyPI. The
untar tree is Django plus this machine's /usr/include; the git repository is Django
committed as one commit.

Nothing here is synced unless the workload says so (dd's fdatasync, fio's end_fsync):
times are what a user waits for. Caches are dropped after the untar and the clone (a
floor keeps a descriptor per inode the kernel holds, 20,000 at most here) and before
each cold step; our own buffer cache (256 MiB) is not, and the 1 GiB file is 4x its
size. fio: 4 KiB O_DIRECT requests one at a time on a 256 MiB file (not on the floors:
their pass-through refuses FUSE's unaligned O_DIRECT buffers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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
TARGETS = ["bento", "ext4", "fuse2fs", "c-floor", "py-floor", "tmpfs"]
FLOORS = ("c-floor", "py-floor")
IMAGE_SIZE = 6 << 30


def sh(*cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
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


def stock_libfuse() -> Path:
    """A directory holding only the system's libfuse3.so.3: put first in the search
    path (LD_LIBRARY_PATH outranks pyfuse3's run path), it runs bento on Debian's
    libfuse as shipped, without third_party/libfuse's patch."""
    where = CACHE / "stock-libfuse"
    where.mkdir(parents=True, exist_ok=True)
    lib = where / "libfuse3.so.3"
    if not lib.is_symlink():
        lib.symlink_to(sh("pkg-config", "fuse3", "--variable=libdir").strip() + "/libfuse3.so.3")
    return where


def floors() -> tuple[Path, Path]:
    """Build (once) the C floor's binary and fetch the Python floor's script."""
    c_floor = CACHE / "passthrough_ll"
    if not c_floor.exists():
        src = Path(sh(str(HERE.parent / "scripts" / "libfuse-source.sh"),
                      str(CACHE / "libfuse")).strip())
        flags = sh("pkg-config", "fuse3", "--cflags", "--libs").split()
        sh("gcc", "-O2", "-Wall", str(src / "example/passthrough_ll.c"), *flags,
           "-o", str(c_floor))
    py_floor = CACHE / "passthroughfs.py"
    if not py_floor.exists():
        work = CACHE / "pyfuse3"
        sh(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
           "pyfuse3==3.5.0", "-d", str(work))
        sh("tar", "-xzf", "pyfuse3-3.5.0.tar.gz", cwd=work)
        shutil.copy(work / "pyfuse3-3.5.0/examples/passthroughfs.py", py_floor)
    return c_floor, py_floor


# -- targets --------------------------------------------------------------------------


class Target:
    def __init__(self, name: str, work: Path, cache_mib: int, before: Path | None = None,
                 options: tuple[str, ...] = ()) -> None:
        self.name = name
        self.options = options  # more of bento's mount options
        self.work = work / name
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.mnt = self.work / "mnt"
        self.mnt.mkdir()
        self.image = self.work / "disk.img"
        self.loop: str | None = None
        self.lower = self.work / "lower"  # a floor's directory
        self.daemon: subprocess.Popen[bytes] | None = None  # the Python floor
        self.cache_mib = cache_mib
        self.before = before  # bento-before: the code of this checkout

    def mount(self) -> None:
        if self.name != "tmpfs":
            with open(self.image, "wb") as f:
                f.truncate(IMAGE_SIZE)
        if self.name in ("bento", "bento-before", "bento-stock-libfuse"):
            env = None
            if self.name == "bento-before":
                if self.before is None:
                    raise SystemExit("bento-before needs --before CHECKOUT")
                env = dict(os.environ, PYTHONPATH=str(self.before))
            if self.name == "bento-stock-libfuse":
                env = dict(os.environ, LD_LIBRARY_PATH=str(stock_libfuse()))
            sh(BENTO, "mkfs", str(self.image), env=env)
            sh(BENTO, "mount", str(self.image), str(self.mnt), "-o",
               ",".join([f"cache_mib={self.cache_mib}", *self.options]), env=env)
        elif self.name in ("bento-null", "bento-null-bare"):  # the image is never read
            bare = ["-o", "no_writeback_cache,no_default_permissions"] if "bare" in self.name else []
            sh(BENTO, "mount", "--fs", str(HERE / "null_fs.py"), str(self.image), str(self.mnt),
               *bare)
        elif self.name == "ext4":
            sh("mkfs.ext4", "-q", "-F", str(self.image))
            self.loop = sh("losetup", "-f", "--show", str(self.image)).strip()
            sh("mount", self.loop, str(self.mnt))
        elif self.name == "fuse2fs":
            sh("mkfs.ext4", "-q", "-F", str(self.image))
            sh("fuse2fs", str(self.image), str(self.mnt), "-o", "allow_other")
        elif self.name in FLOORS:  # over an ext4 on a loop device, mounted below
            sh("mkfs.ext4", "-q", "-F", str(self.image))
            self.loop = sh("losetup", "-f", "--show", str(self.image)).strip()
            self.lower.mkdir()
            sh("mount", self.loop, str(self.lower))
            c_floor, py_floor = floors()
            if self.name == "c-floor":
                # an O_PATH descriptor per inode the kernel holds: up to the hard limit
                sh("prlimit", "--nofile=20000", str(c_floor), "-o",
                   f"source={self.lower},allow_other", str(self.mnt))
            else:
                self.daemon = subprocess.Popen(["prlimit", "--nofile=20000", sys.executable,
                                                str(py_floor), str(self.lower), str(self.mnt)],
                                               stderr=subprocess.DEVNULL)
                while not os.path.ismount(self.mnt):
                    if self.daemon.poll() is not None:
                        raise SystemExit(f"{py_floor} exited with {self.daemon.returncode}")
                    time.sleep(0.05)
        else:
            sh("mount", "-t", "tmpfs", "-o", "size=7g", "tmpfs", str(self.mnt))

    def unmount(self) -> None:
        if self.name in FLOORS:  # also after a failed mount: what was made goes
            if os.path.ismount(self.mnt):
                sh("fusermount3", "-u", str(self.mnt))
            if self.daemon is not None:
                self.daemon.wait()
            while subprocess.run(["pgrep", "-f", f"source={self.lower}"],  # the C floor
                                 capture_output=True).returncode == 0:
                time.sleep(0.05)
            if os.path.ismount(self.lower):
                sh("umount", str(self.lower))
            if self.loop:
                sh("losetup", "-d", self.loop)
        else:
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
os.sync()
with open("/proc/sys/vm/drop_caches", "w") as f:
    f.write("3")
t3 = time.perf_counter()
for i in range(10000):
    os.stat(f"{d}/f{i}")
t4 = time.perf_counter()
for i in range(10000):
    os.unlink(f"{d}/f{i}")
t5 = time.perf_counter()
print(t1 - t0, t2 - t1, t4 - t3, t5 - t4)
"""


def fio(mnt: Path, rw: str, seconds: int) -> float:
    """4 KiB requests one at a time with O_DIRECT: each is a round trip to the file
    system (tmpfs has no O_DIRECT: 0)."""
    done = subprocess.run(
        ["fio", "--name=bench", f"--filename={mnt}/fio.dat", f"--rw={rw}", "--bs=4k",
         "--size=256m", "--ioengine=psync", "--direct=1", "--time_based",
         f"--runtime={seconds}", "--end_fsync=1", "--output-format=json"],
        capture_output=True, text=True)
    if done.returncode:
        print(f"fio {rw}: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return 0.0
    job = json.loads(done.stdout)["jobs"][0]
    return float(job["read" if rw == "randread" else "write"]["iops"])


def run_workloads(t: Target, tarball: Path, repo: Path, fio_seconds: int) -> dict[str, float]:
    m = t.mnt
    r: dict[str, float] = {}
    (m / "untar").mkdir()
    r["untar_s"] = timed(lambda: sh("tar", "-xf", str(tarball), "-C", str(m / "untar")))
    drop_caches()  # the floors keep a descriptor per inode the kernel holds; 20,000 at most
    r["git_clone_s"] = timed(lambda: sh("git", "-c", "safe.directory=*", "clone", "-q",
                                        "--no-local", str(repo), str(m / "clone")))
    drop_caches()
    (r["create_10k_s"], r["stat_10k_warm_s"], r["stat_10k_cold_s"],
     r["unlink_10k_s"]) = map(float, sh(sys.executable, "-c", SMALL_FILES, str(m / "small")).split())
    for step, cmd in (("find_cold_s", ("find", str(m / "untar"))),
                      ("du_cold_s", ("du", "-s", str(m / "untar"))),
                      ("rm_rf_cold_s", ("rm", "-rf", str(m / "untar"), str(m / "clone")))):
        drop_caches()
        r[step] = timed(lambda c=cmd: sh(*c))
    seconds = timed(lambda: sh("dd", "if=/dev/zero", f"of={m}/big", "bs=1M", "count=1024",
                               "conv=fdatasync"))
    r["seq_write_mib_s"] = 1024 / seconds
    drop_caches()
    seconds = timed(lambda: sh("dd", f"if={m}/big", "of=/dev/null", "bs=1M"))
    r["seq_read_mib_s"] = 1024 / seconds
    os.unlink(m / "big")
    if t.name in FLOORS:  # O_DIRECT from FUSE's unaligned buffers: EINVAL from ext4
        r["fio_randwrite_iops"] = r["fio_randread_iops"] = 0.0
        return r
    r["fio_randwrite_iops"] = fio(m, "randwrite", fio_seconds)
    drop_caches()
    r["fio_randread_iops"] = fio(m, "randread", fio_seconds)
    return r


def median_runs(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


LOWER_IS_BETTER = {"untar_s", "git_clone_s", "create_10k_s", "stat_10k_warm_s",
                   "stat_10k_cold_s", "unlink_10k_s", "find_cold_s", "du_cold_s", "rm_rf_cold_s"}


def table(results: dict[str, dict[str, float]]) -> str:
    metrics = list(next(iter(results.values())))
    names = list(results)
    versus = [o for o in ("bento-before", "bento-stock-libfuse", "bento-null", "bento-null-bare",
                          "ext4", "fuse2fs", "c-floor", "py-floor") if o in results]
    lines = [f"| workload | {' | '.join(names)} | " + " | ".join(f"bento/{o}" for o in versus)
             + " |", "|---|" + "---:|" * (len(names) + len(versus))]
    for k in metrics:
        cells = ["–" if not results[n][k] else f"{results[n][k]:,.2f}" if k.endswith("_s")
                 else f"{results[n][k]:,.0f}" for n in names]
        b = results.get("bento", {}).get(k)

        def speed(other: str) -> str:
            o = results.get(other, {}).get(k)
            if not o or not b:
                return "-"
            # as a speed: >1 means bento is faster
            return f"{(o / b if k in LOWER_IS_BETTER else b / o):.2f}x"

        lines.append(f"| {k} | {' | '.join(cells)} | "
                     + " | ".join(speed(o) for o in versus) + " |")
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
    p.add_argument("--fio-seconds", type=int, default=20)
    p.add_argument("--runs", type=int, default=1, help="runs per target; medians reported")
    p.add_argument("--cache-mib", type=int, default=256, help="bento's buffer cache")
    p.add_argument("--before", type=Path, help="a checkout of older code, for the target "
                   "bento-before (e.g. a git worktree of the commit before a change)")
    p.add_argument("--out", type=Path, default=HERE / "fuse_compare")
    args = p.parse_args()
    if os.getuid() != 0:
        raise SystemExit("run as root (loop devices, drop_caches, mounts)")
    tarball, repo, entries = assets()
    print(f"untar tree: {entries:,} entries; repository: "
          f"{sh('git', '-c', 'safe.directory=*', '-C', str(repo), 'ls-files').count(chr(10)):,} files", flush=True)
    runs: dict[str, list[dict[str, float]]] = {}
    for i in range(args.runs):  # rounds over every target: drift hits all alike
        for name in args.targets.split(","):
            t = Target(name, args.work, args.cache_mib, args.before)
            try:
                t.mount()
                print(f"-- {name}, run {i + 1}", flush=True)
                runs.setdefault(name, []).append(run_workloads(t, tarball, repo, args.fio_seconds))
                print(json.dumps(runs[name][-1]), flush=True)
            finally:
                t.unmount()
    results = {name: median_runs(r) for name, r in runs.items()}
    print(table(results))
    args.out.with_suffix(".json").write_text(json.dumps(
        {"date": str(date.today()), "command": " ".join(sys.argv), "median": results,
         "runs": runs}, indent=2))
    if {"ext4", "bento"} <= results.keys():
        chart(results, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
