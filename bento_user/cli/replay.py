"""``bento replay TRACE IMAGE``: make a mount's recorded calls again, in-process.

Start from a copy of the image as it was when the traced mount began. Divergences
(another errno, other attributes, other data read) are listed; ``--stop-at N`` stops
in pdb at the first line of call N, ``--pdb`` enters a post-mortem debugger on a
file-system bug.
"""

from __future__ import annotations

import argparse
import pdb
import sys

from ..api import FsError
from ..blockdev import ImageDevice
from ..runtime.direct import DirectRuntime
from ..runtime.loader import LoadError, instantiate, load_filesystem_class
from ..runtime.upgrade import UpgradeError
from ..runtime.trace import Replayer, read_trace
from ._errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay a mount's trace on the direct runtime")
    p.add_argument("trace")
    p.add_argument("image", help="a copy of the image as it was when the trace began")
    p.add_argument("--fs", help="file system (default: the one the trace names)")
    p.add_argument("--stop-at", type=int, metavar="N", help="stop in pdb at call N")
    p.add_argument("--pdb", action="store_true", help="post-mortem debugger on a bug")
    p.add_argument("--show", type=int, default=20, metavar="K",
                   help="divergences to print (default 20)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        header, records = read_trace(args.trace)
    except ValueError as e:
        raise UserError(str(e), 2) from None
    try:
        cls = load_filesystem_class(args.fs or header.get("fs") or "xv6")
    except LoadError as e:
        raise UserError(str(e), 2) from None
    try:
        runtime = DirectRuntime.open(instantiate(cls), ImageDevice(args.image))
    except FsError as e:
        raise UserError(f"{args.image}: cannot mount: {e.strerror}", 4) from None
    replayer = Replayer(runtime)
    try:
        for rec in records:
            n = rec.get("n", 0)
            try:
                replayer.step(rec, debug=n == args.stop_at)
            except (UpgradeError, LoadError) as e:
                raise UserError(f"record {n}: the upgrade could not be replayed: {e}") from None
            except Exception:
                if not args.pdb:
                    raise UserError(f"call {n} ({rec['op']}) raised a file-system bug; "
                                    "run with --pdb to debug it") from None
                pdb.post_mortem(sys.exc_info()[2])
                raise UserError(f"call {n} ({rec['op']}) raised a file-system bug") from None
    except ValueError as e:
        print(f"bento replay: {e}", file=sys.stderr)
    finally:
        runtime.close()
    report = replayer.report
    for d in report.divergences[:args.show]:
        print(f"call {d.n} {d.op}: recorded {d.expected}, replay gave {d.got}")
    upgrades = f" through {report.upgrades} live upgrades" if report.upgrades else ""
    print(f"{args.trace}: {report.calls} calls replayed{upgrades}, "
          f"{len(report.divergences)} diverged")
    return 1 if report.divergences else 0
