"""``bento fsck IMAGE``: check a file system without changing it, through its API.

Exit status as e2fsck's: 0 clean, 4 errors left uncorrected, 8 operational error
(cannot open, not that kind of file system).
"""

from __future__ import annotations

import argparse

from ..api import EXIT_OPERATIONAL, FsError
from ..blockdev import ImageDevice
from ._errors import UserError
from ._fs import add_fs_argument, filesystem_class
from ._progress import Progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fsck", help="check a file system (read-only)")
    p.add_argument("image")
    add_fs_argument(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    p.add_argument("--progress", action="store_true", default=None,
                   help="show progress even when stderr is not a terminal")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cls = filesystem_class(args.fs, EXIT_OPERATIONAL)
    progress = Progress(args.progress)
    try:
        with ImageDevice(args.image, read_only=True) as dev:
            report = cls.fsck(dev, progress)
    except FsError as e:
        raise UserError(str(e.strerror), EXIT_OPERATIONAL) from None
    except OSError as e:
        msg = str(e.strerror)
        raise UserError(msg if msg.startswith(args.image) else f"{args.image}: {msg}",
                        EXIT_OPERATIONAL) from None
    finally:
        progress.done()
    for p in report.problems:
        print(f"{args.image}: {p}")
    if not args.quiet:
        for n in report.notes:
            print(f"{args.image}: note: {n}")
        verdict = "clean" if report.clean else f"{len(report.problems)} problems"
        counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
        print(f"{args.image}: {verdict}" + (f"; {counts}" if counts else ""))
    return report.exit_code
