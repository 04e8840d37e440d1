"""``bento demo``: the whole stack on a fresh image, with real programs.

mkfs, mount (daemonised), untar a real source tree and compare it, ``git clone`` this
repository and ``git fsck`` it, compile and run a C program, a SQLite database, holes
(fallocate, a punch, a sparse copy), a default ACL, ``bento stat``, unmount, fsck. While tar runs,
the file system is live-upgraded twice (xv6 re-imported from source) and then to
provenance; a two-step pipeline's lineage is shown as a tree and drawn, and the mount
goes back to plain xv6 before unmounting.
Then a second file system by name (tiny): mkfs, mount, copy, diff, fsck; last, a
20-second crash-fuzzing campaign on it, on a local Dask cluster of one worker per core.
``--journal`` runs the kernel-services demo instead (journal, power cut, recovery).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from ._demo_journal import run_journal_demo, step
from ._errors import UserError

REPO = Path(__file__).resolve().parents[2]
HELLO = r"""
#include <stdio.h>
int main(void) { puts("    hello from a program compiled on a bento mount"); return 0; }
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on a fresh image")
    p.add_argument("--dir", type=Path, default=Path(".demo"),
                   help="where to put the image and mount point (default: ./.demo)")
    p.add_argument("--size", default="2G", help="image size (default: 2G)")
    p.add_argument("--journal", action="store_true",
                   help="run the kernel-services demo (journal, power cut) instead")
    p.set_defaults(run=run)


def sh(*cmd: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise UserError(f"{' '.join(map(str, cmd))} failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def timed(what: str, *cmd: str | Path, cwd: Path | None = None) -> str:
    t0 = time.perf_counter()
    out = sh(*cmd, cwd=cwd)
    print(f"    {what}: {time.perf_counter() - t0:.2f} s")
    return out


def bento(argv: list[str]) -> int:
    from . import main  # the package imports this module first

    return main(argv)


def check(code: int, what: str) -> None:
    if code:
        raise UserError(f"{what} failed (exit {code})")


def run(args: argparse.Namespace) -> int:
    if args.journal:
        return run_journal_demo(args)
    if os.getuid() != 0:
        raise UserError("the demo mounts an image: run it as root (or use --journal)")
    work = args.dir.resolve()
    image, mnt = work / "demo.img", work / "mnt"
    mnt.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(mnt):  # left by an interrupted run
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)

    step(f"mkfs: a fresh {args.size} xv6 image at {image}")
    check(bento(["mkfs", str(image), "--size", args.size, "--force"]), "mkfs")
    step(f"mount it on {mnt} (daemonised; returns when the mount serves)")
    check(bento(["mount", str(image), str(mnt)]), "mount")
    try:
        real_programs(work, mnt)
        pipeline(work, mnt)
        step("downgrade: back to plain xv6 (the records stay on disk, unused)")
        print("    bento upgrade: ", end="", flush=True)
        check(bento(["upgrade", str(mnt), "xv6"]), "upgrade")
        step("bento stat: what the file system did")
        check(bento(["stat", str(mnt)]), "stat")
    finally:
        step("unmount: the daemon commits, flushes and exits before this returns")
        check(bento(["umount", str(mnt)]), "umount")
    step("fsck the image (it notes the hidden inode that holds the records)")
    check(bento(["fsck", str(image)]), "fsck")
    step("the lineage again, from the unmounted image")
    check(bento(["prov", "--image", str(image), "/pipeline/report.txt", "--depth", "1"]),
          "prov")
    inspect_and_repair(work, image)
    second_filesystem(work, mnt)
    step("fuzz it: a crash campaign on tiny, one worker process per core (Dask)")
    check(bento(["fuzz", "crash", "--fs", "tiny", "--budget", "20", "--seed", "1",
                 "--save", str(work / "regressions")]), "fuzz")
    return 0


def inspect_and_repair(work: Path, image: Path) -> None:
    """debugfs's and e2fsck's habits: read the unmounted image, then damage a copy
    (its block bitmap's first byte: blocks in use marked free) and repair it."""
    step("bento inspect: a file's block map, read from the unmounted image")
    check(bento(["inspect", str(image), "blocks", "/pipeline/report.txt"]), "inspect")
    copy = work / "damaged.img"
    shutil.copy(image, copy)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        check(bento(["inspect", str(copy), "super"]), "inspect")
    bitmap = next(int(line.split()[3].split("-")[0]) for line in out.getvalue().splitlines()
                  if line.startswith("block bitmap:"))
    with open(copy, "r+b") as f:
        f.seek(bitmap * 4096)
        f.write(b"\0")
    step("a copy with a damaged block bitmap: fsck -n finds it, fsck -y repairs it")
    if bento(["fsck", "-n", "-q", str(copy)]) != 4:
        raise UserError("fsck -n did not find the damage")
    check(bento(["fsck", "-y", str(copy)]) - 1, "fsck -y")   # 1: errors corrected
    check(bento(["fsck", "-n", str(copy)]), "fsck -n after the repair")
    copy.unlink()


def second_filesystem(work: Path, mnt: Path) -> None:
    """The same tools for another file system, by name: tiny, the tutorial's."""
    image = work / "tiny.img"
    step(f"a second file system by name: tiny (docs/tutorial.md), a 64M image at {image}")
    check(bento(["mkfs", str(image), "--size", "64M", "--fs", "tiny", "--force"]), "mkfs")
    check(bento(["mount", str(image), str(mnt), "--fs", "tiny"]), "mount")
    try:
        timed("cp -r this repository's filesystems/ onto it", "cp", "-r",
              REPO / "filesystems", mnt / "filesystems")
        timed("diff -r against the original", "diff", "-r", "-x", "__pycache__",
              REPO / "filesystems", mnt / "filesystems")
    finally:
        check(bento(["umount", str(mnt)]), "umount")
    check(bento(["fsck", str(image), "--fs", "tiny"]), "fsck")


def upgrade_under(program: subprocess.Popen[bytes], mnt: Path) -> None:
    """Live-upgrade the mount while ``program`` works on it: xv6 afresh twice, then
    provenance."""
    for target in ("xv6", "xv6", "provenance"):
        time.sleep(1.0)
        if program.poll() is not None and target != "provenance":
            continue
        print(f"    bento upgrade {target}: ", end="", flush=True)
        check(bento(["upgrade", str(mnt), target]), "upgrade")


STEP1 = """import sys
a, b, out = sys.argv[1:]
with open(out, "w") as f:
    for line in open(a).read().split() + open(b).read().split():
        f.write(line.upper() + "\\n")
"""
STEP2 = """import sys
words = open(sys.argv[1]).read().split()
open(sys.argv[2], "w").write(f"{len(words)} words, longest {max(words, key=len)}\\n")
"""


def pipeline(work: Path, mnt: Path) -> None:
    step("a pipeline under provenance: step1 reads two inputs, step2 derives a report")
    d = mnt / "pipeline"
    d.mkdir()
    (d / "animals.txt").write_text("cat dog axolotl\n")
    (d / "plants.txt").write_text("fern moss\n")
    (d / "step1.py").write_text(STEP1)
    (d / "step2.py").write_text(STEP2)
    python = shutil.which("python3") or "python3"
    sh(python, "step1.py", "animals.txt", "plants.txt", "words.txt", cwd=d)
    sh(python, "step2.py", "words.txt", "report.txt", cwd=d)
    print("    report.txt: " + (d / "report.txt").read_text().strip())
    graph = work / "lineage.svg"
    step(f"bento prov: the report's lineage (and its graph, {graph})")
    check(bento(["prov", str(d / "report.txt"), "--graph", str(graph)]), "prov")


def real_programs(work: Path, mnt: Path) -> None:
    tree = Path("/usr/include")
    tarball = work / "include.tar"
    step(f"untar a real source tree ({tree}, "
         f"{sum(len(d) + len(f) for _, d, f in os.walk(tree)):,} entries) and diff it")
    sh("tar", "-cf", tarball, "-C", tree.parent, tree.name)
    t0 = time.perf_counter()
    tar = subprocess.Popen(["tar", "-xf", str(tarball), "-C", str(mnt)], stderr=subprocess.PIPE)
    upgrade_under(tar, mnt)
    if tar.wait():
        raise UserError(f"tar -x failed: {tar.stderr.read().decode().strip()[-300:]}")
    print(f"    tar -x (through the upgrades): {time.perf_counter() - t0:.2f} s")
    timed("diff -r against the original", "diff", "-r", "--no-dereference", tree,
          mnt / tree.name)
    tarball.unlink()

    if (REPO / ".git").exists():
        step("git clone --no-local this repository, then git fsck and git log")
        clone = mnt / "bento-user"
        timed("git clone", "git", "-c", "safe.directory=*", "clone", "-q", "--no-local",
              REPO, clone)
        timed("git fsck", "git", "fsck", "--strict", cwd=clone)
        print("    " + sh("git", "log", "-1", "--format=%h %s", cwd=clone).strip()[:100])
        timed("python -m compileall on the clone", shutil.which("python3") or "python3",
              "-m", "compileall", "-q", clone / "bento_user")

    step("compile a C program on the mount and run it")
    (mnt / "hello.c").write_text(HELLO)
    timed("gcc", "gcc", "-O2", "-o", mnt / "hello", mnt / "hello.c")
    print(sh(mnt / "hello").rstrip())

    step("a SQLite database: 20 transactions of 500 rows, integrity check")
    t0 = time.perf_counter()
    db = sqlite3.connect(mnt / "demo.sqlite")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    for batch in range(20):
        with db:
            db.executemany("INSERT INTO t VALUES (?, ?)",
                           [(batch * 500 + i, "x" * 100) for i in range(500)])
    ok = db.execute("PRAGMA integrity_check").fetchone()[0]
    db.close()
    print(f"    10,000 rows in {time.perf_counter() - t0:.2f} s; integrity_check: {ok}")
    used = shutil.disk_usage(mnt)
    print(f"    df: {used.used / 2**20:,.0f} MiB used of {used.total / 2**20:,.0f} MiB")

    step("holes: fallocate reserves, a punch frees, cp --sparse keeps a hole a hole")
    big, sparse = mnt / "reserved", mnt / "sparse"
    sh("fallocate", "-l", "64M", big)
    kib = os.stat(big).st_blocks // 2
    sh("fallocate", "-p", "-o", "0", "-l", "16M", big)
    sh("truncate", "-s", "1G", sparse)
    sh("cp", "--sparse=always", sparse, mnt / "sparse-copy")
    hole = os.open(mnt / "sparse-copy", os.O_RDONLY)
    at = os.lseek(hole, 0, os.SEEK_HOLE)
    os.close(hole)
    print(f"    fallocate -l 64M: {kib:,} KiB; after punching 16 MiB: "
          f"{os.stat(big).st_blocks // 2:,} KiB; a 1 GiB sparse copy: "
          f"{os.stat(mnt / 'sparse-copy').st_blocks // 2} KiB, SEEK_HOLE at 0 -> {at}")

    step("POSIX ACLs: a directory's default ACL is inherited, and the kernel enforces it")
    shared = mnt / "shared"
    shared.mkdir(mode=0o700)
    sh("setfacl", "-m", "u:nobody:rx,d:u:nobody:r", shared)
    (shared / "notes.txt").write_text("for nobody's eyes\n")
    acl = sh("getfacl", "-c", "-E", shared / "notes.txt").split()
    seen = subprocess.run(["cat", str(shared / "notes.txt")], user=65534, capture_output=True,
                          text=True).stdout.strip()
    print(f"    notes.txt {oct(os.stat(shared / 'notes.txt').st_mode & 0o777)}: "
          f"{', '.join(acl)}; read as nobody: {seen!r}")
