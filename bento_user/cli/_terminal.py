"""Where rich draws the CLI's tables and trees: on a terminal, styled and fitted to
its width; elsewhere (a pipe, a file, a test) plain text, no escape codes, no line
ever wrapped, so ``grep`` and scripts read what a person would."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console


def console(stream: TextIO | None = None) -> Console:
    from rich.console import Console

    stream = stream or sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False)
    return Console(file=stream, width=1 << 16, soft_wrap=True, no_color=True,
                   highlight=False, emoji=False, markup=False)


def is_terminal(stream: TextIO | None = None) -> bool:
    return (stream or sys.stdout).isatty()
