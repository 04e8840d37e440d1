"""``bento sync MOUNTPOINT``: commit the journal and flush the device now."""

from __future__ import annotations

import argparse

from ..runtime import control
from ._errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sync", help="commit and flush a mount")
    p.add_argument("mountpoint")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        answer = control.call(args.mountpoint, "sync")
    except control.NotMounted as e:
        raise UserError(str(e.strerror)) from None
    print(f"{args.mountpoint}: committed and flushed in {answer['seconds'] * 1000:.1f} ms")
    return 0
