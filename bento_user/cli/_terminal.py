"""Where rich draws the CLI's tables and trees: on a terminal, styled and fitted to
its width; elsewhere (a pipe, a file, a test) plain text, no escape codes, no line
ever wrapped, so ``grep`` and scripts read what a person would."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def console(stream: TextIO | None = None) -> Console:
    from rich.console import Console

    stream = stream or sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False)
    return Console(file=stream, width=1 << 16, soft_wrap=True, no_color=True,
                   highlight=False, emoji=False, markup=False)


def is_terminal(stream: TextIO | None = None) -> bool:
    return (stream or sys.stdout).isatty()


def rich_table(columns: Sequence[str], title: str | None = None) -> Table:
    """A rich table of a name column and right-aligned figures."""
    from rich.table import Table

    table = Table(*columns, title=title, title_justify="left")
    for column in table.columns[1:]:
        column.justify = "right"
    return table


def print_table(columns: Sequence[str], rows: Sequence[Sequence[object]], indent: int = 2,
                stream: TextIO | None = None) -> None:
    """Rows under their columns, the first left-aligned and the rest right-aligned:
    rich's table on a terminal, plain aligned text elsewhere."""
    cells = [[str(c) for c in row] for row in rows]
    if is_terminal(stream):
        from rich.padding import Padding

        table = rich_table(columns)
        for row in cells:
            table.add_row(*row)
        console(stream).print(Padding(table, (0, 0, 0, indent)))
        return
    widths = [max(len(x) for x in col) for col in zip(columns, *cells)]
    for row in [list(columns), *cells]:
        print(" " * indent + "  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                                        for i, (x, w) in enumerate(zip(row, widths))),
              file=stream or sys.stdout)
