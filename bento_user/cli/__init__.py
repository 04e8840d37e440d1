"""The ``bento`` command: one entry point, one module per subcommand.

Each subcommand module has ``add_parser(subparsers)`` and a ``run(args) -> int``;
``main(argv)`` can be called in-process by tests. A ``UserError`` (or an ``OSError``
from bad input: a missing image, a busy device) becomes one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from types import ModuleType

from .. import __version__
from ._errors import UserError

# command -> its module, in the order of ``bento --help``. A command imports only its
# own module: ``bento umount`` or ``bento stat`` need no NumPy, trio or file system,
# and start in a tenth of the time.
SUBCOMMANDS = {"mkfs": "mkfs", "fsck": "fsck", "inspect": "inspect", "mount": "mount",
               "umount": "umount",
               "upgrade": "upgrade", "prov": "prov", "stat": "stats", "sync": "sync",
               "debug": "debug", "replay": "replay", "fuzz": "fuzz", "demo": "demo",
               "filesystems": "filesystems", "completion": "completion", "manpage": "manpage"}


def _modules(argv: list[str]) -> list[ModuleType]:
    """The subcommand's module alone when argv names one (the first word that is not
    an option: the top-level options take no value); every module otherwise, for
    the full help and argparse's errors."""
    command = next((a for a in argv if not a.startswith("-")), None)
    names = [SUBCOMMANDS[command]] if command in SUBCOMMANDS else SUBCOMMANDS.values()
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``'s subcommand, or the whole CLI when argv is None (the
    shell completion and the man page are made from it)."""
    parser = argparse.ArgumentParser(
        prog="bento", description="Write, run, debug and fuzz file systems in Python.")
    parser.add_argument("--version", action="version", version=f"bento-user {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(title="commands", dest="command", required=True,
                                metavar="COMMAND")
    for module in _modules(argv or []):
        module.add_parser(sub)
    for subparser in sub.choices.values():
        subparser.set_defaults(parser=subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's own usage, not the top level's
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # here, where a reader that went away is caught
        return code
    except BrokenPipeError:  # ``bento ... | head``: the reader is gone; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the exit's flush must not fail again
        return 128 + signal.SIGPIPE
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
