"""The ``bento`` command: one entry point, one module per subcommand.

Each subcommand module has ``add_parser(subparsers)`` and a ``run(args) -> int``;
``main(argv)`` can be called in-process by tests. A ``UserError`` (or an ``OSError``
from bad input: a missing image, a busy device) becomes one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from . import (debug, demo, filesystems, fsck, fuzz, mkfs, mount, prov, replay, stats, sync,
               umount, upgrade)
from ._errors import UserError

SUBCOMMANDS = [mkfs, fsck, mount, umount, upgrade, prov, stats, sync, debug, replay, fuzz, demo,
               filesystems]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bento", description="Write, run, debug and fuzz file systems in Python.")
    parser.add_argument("--version", action="version", version=f"bento-user {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args))
    except UserError as e:
        print(f"bento {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"bento {args.command}: {e.strerror or e}" if e.filename is None
              else f"bento {args.command}: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
