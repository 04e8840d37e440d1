"""``--fs NAME``: how every command names a file system, and finds its class."""

from __future__ import annotations

import argparse

from ..api import Filesystem
from ..runtime.loader import LoadError, load_filesystem_class
from ._errors import UserError

HELP = ("a file system: an installed name (bento filesystems lists them), a module, "
        "module:Class or a path to a .py file or package (default xv6)")


def add_fs_argument(p: argparse.ArgumentParser, default: str | None = "xv6") -> None:
    p.add_argument("--fs", default=default, metavar="NAME", help=HELP)


def filesystem_class(spec: str, exit_code: int = 2) -> type[Filesystem]:
    """The class ``--fs`` names; a one-line error (and ``exit_code``) if none."""
    try:
        return load_filesystem_class(spec)
    except LoadError as e:
        raise UserError(str(e), exit_code) from None
