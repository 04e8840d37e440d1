"""``bento fsck [-n|-p|-y] IMAGE``: check a file system, or repair it, through its API.

``-n`` (the default) only looks; ``-p`` (preen) fixes what needs no judgement; ``-y``
fixes everything the file system can (``Filesystem.repair``). A repair holds the
image exclusively (the device's lock), so a mounted image is refused. Exit status as
e2fsck's: 0 clean, 1 errors corrected, 4 errors left uncorrected, 8 operational error
(cannot open, not that kind of file system, cannot repair).
"""

from __future__ import annotations

import argparse
import errno

from ..api import EXIT_OPERATIONAL, FsckReport, FsError
from ..blockdev import ImageDevice
from ._errors import UserError
from ._fs import add_fs_argument, filesystem_class
from ._progress import Progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fsck", help="check a file system, or repair it (-p, -y)")
    p.add_argument("image")
    add_fs_argument(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-n", dest="mode", action="store_const", const="check",
                      help="check only, change nothing (the default)")
    mode.add_argument("-p", dest="mode", action="store_const", const="preen",
                      help="repair what needs no judgement (counts, bitmaps, the journal)")
    mode.add_argument("-y", dest="mode", action="store_const", const="repair",
                      help="repair everything the file system can")
    p.add_argument("-f", action="store_true", help="accepted for e2fsck's sake: every "
                   "check is a full one")
    p.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    p.add_argument("--progress", action="store_true", default=None,
                   help="show progress even when stderr is not a terminal")
    p.set_defaults(run=run, mode="check")


def run(args: argparse.Namespace) -> int:
    cls = filesystem_class(args.fs, EXIT_OPERATIONAL)
    progress = Progress(args.progress)
    finished = False
    try:
        report = _check(cls, args.image, args.mode, progress)
        finished = True
    except FsError as e:
        if e.errno == errno.ENOSYS:
            raise UserError(f"{cls.name} cannot repair (bento fsck -n checks it)",
                            EXIT_OPERATIONAL) from None
        raise UserError(str(e.strerror), EXIT_OPERATIONAL) from None
    except OSError as e:
        msg = str(e.strerror)
        raise UserError(msg if msg.startswith(args.image) else f"{args.image}: {msg}",
                        EXIT_OPERATIONAL) from None
    finally:
        progress.done(finished)
    for fix in report.repaired:
        print(f"{args.image}: fixed: {fix}")
    for p in report.problems:
        print(f"{args.image}: {p}")
    if not args.quiet:
        for n in report.notes:
            print(f"{args.image}: note: {n}")
        verdict = "clean" if report.clean else f"{len(report.problems)} problems"
        if report.repaired:
            n = len(report.repaired)
            verdict = f"{n} fix{'es' if n != 1 else ''}; " + (
                "clean now" if report.clean else f"{len(report.problems)} problems left")
        counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
        print(f"{args.image}: {verdict}" + (f"; {counts}" if counts else ""))
    return report.exit_code


def _check(cls: type, image: str, mode: str, progress: Progress) -> FsckReport:
    if mode == "check":
        with ImageDevice(image, read_only=True) as dev:
            return cls.fsck(dev, progress)
    with ImageDevice(image) as dev:  # an exclusive lock: a mounted image is refused
        return cls.repair(dev, progress, preen=mode == "preen")
