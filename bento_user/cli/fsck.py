"""``bento fsck IMAGE``: check an xv6 v2 file system without changing it.

Exit status as e2fsck's: 0 clean, 4 errors left uncorrected, 8 operational error
(cannot open, not an xv6 file system).
"""

from __future__ import annotations

import argparse
import sys

from filesystems.xv6.fsck import EXIT_OPERATIONAL, fsck

from ..api import FsError
from ..blockdev import ImageDevice
from ._errors import UserError
from ._progress import Progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fsck", help="check a file system (read-only)")
    p.add_argument("image")
    p.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    p.add_argument("--progress", action="store_true", default=None,
                   help="show progress even when stderr is not a terminal")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    progress = Progress(args.progress)
    try:
        with ImageDevice(args.image, read_only=True) as dev:
            report = fsck(dev, progress)
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
        print(f"{args.image}: {verdict}; {report.inodes_used} inodes ({report.directories} "
              f"directories), {report.blocks_used} data blocks in use", file=sys.stdout)
    return report.exit_code
