"""``bento completion SHELL``: a completion script for bash, zsh or tcsh, made by shtab
from the CLI's own parser, so it can never list an option the CLI does not have.
``scripts/setup.sh`` installs bash's; by hand: ``bento completion bash >
/usr/share/bash-completion/completions/bento``."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "tcsh")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("completion", help="print a shell completion script",
                       description="Print a completion script for SHELL on stdout.")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import shtab

    from . import build_parser

    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return 0
