"""``bento prov``'s tree (issue 19) is drawn by rich: styled on a terminal; in a pipe
plain text, one line per node however long, and a program's argv printed as it was
(never read as rich markup)."""

from __future__ import annotations

import io
import re

from rich.console import Console

from bento_user.cli._terminal import console
from bento_user.cli.prov import lineage_tree
from filesystems.provenance.query import Generation, Lineage, Process


def lineage() -> Lineage:
    cc = Process("p1", 101, exe="/usr/bin/cc", argv=["cc", "-o", "out", "[bold]x.c", "y" * 300],
                 uid=0)
    src = Lineage(ino=4, path="/x.c", read_at=2_000_000_000)
    src.generations = [Generation(1_000_000_000, "create", Process("p0", 100, exe="/bin/ed",
                                                                    argv=["ed"], uid=1000))]
    out = Lineage(ino=3, path="/out", read_at=None)
    out.generations = [Generation(3_000_000_000, "create", cc, inputs=[src, Lineage(5, "/h", 1)])]
    return out


def test_in_a_pipe_the_tree_is_plain_and_unwrapped() -> None:
    out = io.StringIO()
    console(out).print(lineage_tree(lineage()))
    text = out.getvalue()
    lines = text.splitlines()
    assert "\x1b" not in text
    assert lines[0] == "/out (inode 3)"
    assert lines[1].startswith("└── created ") and "by cc (pid 101, uid 0): cc -o out [bold]x.c" \
        in lines[1] and lines[1].endswith("y" * 300)
    assert lines[2].startswith("    ├── read /x.c (inode 4) at ")
    assert lines[3].startswith("    │   └── created ") and "by ed (pid 100, uid 1000)" in lines[3]
    assert lines[4].startswith("    └── read /h (inode 5)")
    assert lines[5] == "        └── no recorded writer"
    assert len(lines) == 6


def test_on_a_terminal_the_tree_is_styled_and_fits() -> None:
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=80).print(lineage_tree(lineage()))
    text = out.getvalue()
    assert "\x1b[1m" in text                                      # names in bold
    assert max(len(line) for line in
               re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()) <= 80
