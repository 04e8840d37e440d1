"""Progress as people see it (issue 19): on a terminal, rich's bars with the time left;
off it, with ``--progress``, one plain line per finished step; every step that
finished shows 100 %, a step cut short by an error does not."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from bento_user.blockdev import ImageDevice
from bento_user.cli import main
from bento_user.cli._progress import Progress
from filesystems.xv6 import Xv6

PASSES = ["pass 1: inodes", "pass 2: directories", "pass 3: connectivity",
          "pass 4: link counts", "pass 5: bitmaps"]


def test_fsck_progress_off_a_terminal_is_one_line_per_pass_at_100(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "disk.img"
    assert main(["mkfs", str(img), "--size", "64M"]) == 0
    capsys.readouterr()
    assert main(["fsck", str(img), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert [line.split(": 100%")[0] for line in lines] == PASSES, err
    assert all(re.fullmatch(r".*: 100% \(\d+\.\d\d s\)", line) for line in lines), err


def test_fsck_on_a_terminal_draws_bars_that_end_at_100(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    assert main(["mkfs", str(img), "--size", "64M"]) == 0
    out = io.StringIO()
    progress = Progress(console=Console(file=out, force_terminal=True, width=120))
    with ImageDevice(str(img), read_only=True) as dev:
        assert Xv6.fsck(dev, progress).clean
    progress.done()
    final = out.getvalue().rsplit("\x1b[?25l", 1)[-1]  # the last frame drawn
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", final)
    for name in PASSES:
        assert re.search(re.escape(name) + r"\s.*100%", text), text
    assert "left" in text


def test_mkfs_on_a_terminal_ends_at_100(tmp_path: Path) -> None:
    out = io.StringIO()
    progress = Progress(console=Console(file=out, force_terminal=True, width=120))
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    with ImageDevice(str(img)) as dev:
        Xv6.mkfs(dev, progress)
    progress.done()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert re.search(r"writing inode table\s.*100%", text), text


def test_a_step_cut_short_is_not_shown_done() -> None:
    err = io.StringIO()
    progress = Progress(enabled=True, stream=err)
    progress("pass 1: inodes", 1.0)
    progress("pass 2: directories", 0.3)
    progress.done(finished=False)
    assert err.getvalue().splitlines()[0].startswith("pass 1: inodes: 100%")
    assert "pass 2" not in err.getvalue()
