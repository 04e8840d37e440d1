"""Programs that walk a tree again and again and look for names that are not there,
in one run on: bento; bento without negative dentries (``bento-noneg``: ``-o
negative_timeout=0``); older code (``bento-before``, ``--before CHECKOUT``, as in
fuse_compare.py); fuse2fs and the kernel's ext4 on a loop device. Run as root:
``.venv/bin/python bench/probes.py [--targets ...] [--before DIR]``.

- compile: ``gcc -fsyntax-only`` of 20 small C files, each including a dozen system
  headers, from a copy of this machine's /usr/include on the mount, with four empty
  include directories searched first (as a project's ``-I`` list is): every header
  is first missed four times. 3 rounds over the 20 files.
- git status: 5 times over a clone of the Django repository (fuse_compare's asset):
  git looks in every directory for a ``.gitignore`` that is mostly not there.

Both warm (nothing dropped between rounds): what a developer's edit-compile loop
sees. For the bento targets, the lookups the kernel sent during each workload (from
``bento stat``) show where the time went.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from fuse_compare import BENTO, HERE, Target, assets, sh, timed

HEADERS = ["stdio.h", "stdlib.h", "string.h", "errno.h", "fcntl.h", "unistd.h", "sys/stat.h",
           "sys/types.h", "pthread.h", "signal.h", "time.h", "math.h", "ctype.h", "stdint.h"]
GCC_DIR = Path(sh("gcc", "-print-file-name=include").strip())
TARGETS = {"bento": (), "bento-noneg": ("negative_timeout=0",), "bento-before": (),
           "fuse2fs": (), "ext4": ()}


def lookups(t: Target) -> tuple[int, int]:
    """(lookups, of them answered "not there") the kernel sent the mount so far."""
    if not t.name.startswith("bento"):
        return 0, 0
    op = json.loads(sh(BENTO, "stat", str(t.mnt), "--json"))["stats"]["operations"]
    return op.get("lookup", {}).get("calls", 0), op.get("lookup", {}).get("errors", 0)


def prepare(m: Path, repo: Path) -> None:
    top = m / "probe"
    (top / "src").mkdir(parents=True)
    for i in range(4):
        (top / f"inc{i}").mkdir()
    sh("cp", "-a", "/usr/include", str(top / "include"))
    for i in range(20):
        body = "".join(f"#include <{h}>\n" for h in HEADERS[i % 3:])
        (top / "src" / f"f{i}.c").write_text(body + f"int f{i}(void) {{ return {i}; }}\n")
    sh("git", "-c", "safe.directory=*", "clone", "-q", "--no-local", str(repo), str(m / "clone"))


def compile_all(top: Path) -> None:
    include = ["-nostdinc", *(f"-I{top / f'inc{i}'}" for i in range(4)),
               f"-I{top / 'include' / 'x86_64-linux-gnu'}", f"-I{top / 'include'}",
               "-isystem", str(GCC_DIR)]
    for _ in range(3):
        for i in range(20):
            sh("gcc", "-fsyntax-only", *include, str(top / "src" / f"f{i}.c"))


def git_status(clone: Path) -> None:
    for _ in range(5):
        sh("git", "-c", "safe.directory=*", "-C", str(clone), "status", "--porcelain")


def run(t: Target, repo: Path) -> dict[str, float]:
    m, r = t.mnt, {}
    prepare(m, repo)
    for name, work in (("compile", lambda: compile_all(m / "probe")),
                       ("git_status", lambda: git_status(m / "clone"))):
        work()  # once untimed: the names that are there are in the kernel's caches
        before = lookups(t)
        r[f"{name}_s"] = timed(work)
        after = lookups(t)
        r[f"{name}_lookups"], r[f"{name}_missing"] = after[0] - before[0], after[1] - before[1]
    return r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", default="bento,bento-noneg,fuse2fs,ext4",
                   help="of " + ", ".join(TARGETS))
    p.add_argument("--before", type=Path, help="a checkout of older code, for bento-before")
    p.add_argument("--work", type=Path, default=Path("/var/tmp/bento-bench-probes"))
    p.add_argument("--out", type=Path, default=HERE / "probes.json")
    args = p.parse_args()
    _, repo, _ = assets()
    results: dict[str, dict[str, float]] = {}
    for name in args.targets.split(","):
        kind = name if name in ("bento-before", "fuse2fs", "ext4") else "bento"
        t = Target(kind, args.work / name, 256, args.before, TARGETS[name])
        try:
            t.mount()
            results[name] = run(t, repo)
            print(name, json.dumps(results[name]), flush=True)
        finally:
            t.unmount()
    print("| target | compile, s | lookups (missing) | git status ×5, s | lookups (missing) |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['compile_s']:.2f} | {r['compile_lookups']:,.0f} "
              f"({r['compile_missing']:,.0f}) | {r['git_status_s']:.2f} | "
              f"{r['git_status_lookups']:,.0f} ({r['git_status_missing']:,.0f}) |")
    args.out.write_text(json.dumps({"date": str(date.today()), "command": " ".join(sys.argv),
                                    "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
