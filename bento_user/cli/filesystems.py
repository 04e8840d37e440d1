"""``bento filesystems``: the file systems installed by name, for ``--fs NAME``.

Any package registers its own in the ``bento_user.filesystems`` entry-point group
(pyproject.toml: ``[project.entry-points."bento_user.filesystems"]``,
``myfs = "mypackage:MyFs"``); once pip-installed it is listed here.
"""

from __future__ import annotations

import argparse

from ..runtime.loader import LoadError, load_filesystem_class, registered


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("filesystems", help="list the file systems installed by name")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    names = registered()
    width = max(map(len, names), default=0)
    for name, target in sorted(names.items()):
        try:
            doc = (load_filesystem_class(name).__doc__ or "").strip().splitlines()
            line = doc[0] if doc else ""
        except LoadError as e:
            line = f"cannot load: {e}"
        print(f"{name:<{width}}  {target:<40}  {line}")
    return 0
