"""``bento upgrade MOUNTPOINT TARGET``: replace a mounted file system's code while
programs keep using it (runtime/upgrade.py has the protocol).

TARGET is what ``bento mount --fs`` takes: ``xv6``, ``provenance``, a module,
``module:Class`` or a path to a Python file or package. It is imported afresh in
the daemon, so the code on disk now is what runs. A failed upgrade leaves the old
version serving and exits 1 with the reason.
"""

from __future__ import annotations

import argparse
import json

from ..runtime import control
from ..runtime.loader import absolute
from ..runtime.upgrade import DEFAULT_TIMEOUT
from ._errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upgrade", help="replace a mounted file system's code, live",
                       description="Live-upgrade the file system mounted on MOUNTPOINT to "
                       "TARGET: xv6, provenance, a module or module:Class (imported with the "
                       "daemon's sys.path), or a path with a / to a .py file or package "
                       "directory (optionally :Class). Open files and working directories "
                       "stay valid.")
    p.add_argument("mountpoint")
    p.add_argument("target")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"give up (and keep the old version) after S seconds (default "
                   f"{DEFAULT_TIMEOUT:g})")
    p.add_argument("--json", action="store_true", help="print the daemon's report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise UserError("--timeout must be positive", 2)
    try:
        answer = control.call(args.mountpoint, "upgrade", timeout=None,
                              target=absolute(args.target), timeout_s=args.timeout)
    except control.NotMounted as e:
        raise UserError(str(e.strerror)) from None
    except OSError as e:
        raise UserError(f"{args.mountpoint}: upgrade failed: {e.strerror}") from None
    if args.json:
        print(json.dumps(answer))
    else:
        print(f"{args.mountpoint}: {answer['old']} -> {answer['new']}: "
              f"pause {answer['pause_s'] * 1e3:.2f} ms "
              f"(commit {answer['commit_s'] * 1e3:.2f}, prepare {answer['prepare_s'] * 1e3:.2f}, "
              f"build {answer['build_s'] * 1e3:.2f}), total {answer['total_s'] * 1e3:.0f} ms")
    return 0
