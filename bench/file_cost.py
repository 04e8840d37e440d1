"""What one file of an untar, and of an rm, costs in our own Python, without the kernel.

    .venv/bin/python bench/file_cost.py [--fs xv6] [--files 3000] [--rounds 5]

The requests the kernel sends per file (bench/RESULTS.md, "Where the untar's time
goes") replayed at the FUSE handlers, in-process on a RAM device, so neither the
device nor the round trips are in it (request_cost.py times single requests the
same way). Untar, per file: a negative lookup, create, the ``security.capability``
getxattr, a 3,000-byte write, tar's chown, chmod and utimens, release, and the
parent's getattr. rm, per file: lookup, unlink, the parent's getattr, and the forget
that frees the inode. CPU time of this thread, best of ``--rounds`` fresh file
systems (the least disturbed by this VM's neighbours), µs per file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from types import SimpleNamespace

import pyfuse3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from request_cost import Context, build, handler  # noqa: E402

from bento_user.api import ROOT_INODE  # noqa: E402

DATA = os.urandom(3000)
STAMP = 1_700_000_000_000_000_000


def fields(**changed: bool) -> SimpleNamespace:
    """pyfuse3's SetattrFields is read-only: the same attributes, settable."""
    names = ("mode", "uid", "gid", "size", "atime", "mtime", "ctime")
    return SimpleNamespace(**{f"update_{n}": changed.get(n, False) for n in names})


def one_round(fs_name: str, files: int) -> tuple[float, float]:
    ops, _, _ = build(fs_name, blocks=262144)
    ctx = Context()

    def run(coro: object) -> object:
        return handler(lambda: coro)()

    d = run(ops.mkdir(ROOT_INODE, b"d", 0o755, ctx)).st_ino  # type: ignore[attr-defined]
    names = [b"f%06d" % i for i in range(files)]
    owner, mode, times = pyfuse3.EntryAttributes(), pyfuse3.EntryAttributes(), pyfuse3.EntryAttributes()
    mode.st_mode = 0o100644
    times.st_atime_ns = times.st_mtime_ns = STAMP
    start = time.thread_time()
    for name in names:
        try:
            run(ops.lookup(d, name, ctx))
        except pyfuse3.FUSEError:
            pass
        fi, attr = run(ops.create(d, name, 0o100644, os.O_WRONLY | os.O_CREAT, ctx))  # type: ignore[misc]
        try:
            run(ops.getxattr(attr.st_ino, b"security.capability", ctx))
        except pyfuse3.FUSEError:
            pass
        run(ops.write(fi.fh, 0, DATA))
        run(ops.setattr(attr.st_ino, owner, fields(uid=True, gid=True), None, ctx))
        run(ops.setattr(attr.st_ino, mode, fields(mode=True), None, ctx))
        run(ops.setattr(attr.st_ino, times, fields(atime=True, mtime=True), None, ctx))
        run(ops.release(fi.fh))
        run(ops.getattr(d, ctx))
    middle = time.thread_time()
    for name in names:
        ino = run(ops.lookup(d, name, ctx)).st_ino  # type: ignore[attr-defined]
        run(ops.unlink(d, name, ctx))
        run(ops.getattr(d, ctx))
        run(ops.forget([(ino, 2)]))  # create's lookup and this one
    end = time.thread_time()
    return (middle - start) / files * 1e6, (end - middle) / files * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fs", default="xv6")
    p.add_argument("--files", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    results = [one_round(args.fs, args.files) for _ in range(args.rounds)]
    untar, rm = min(r[0] for r in results), min(r[1] for r in results)
    print(f"{args.fs}: µs per file, best of {args.rounds} rounds of {args.files:,} files "
          f"(CPU time): untar {untar:.0f}, rm {rm:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
