"""fsck -y and -p repair what fsck -n finds (issue 19): every hand-made corruption of
the checker's own tests is repaired, or said to be left; a repaired image checks
clean, mounts and reads; what a repair cannot fix is exit 4, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bento_user.blockdev import RamDevice
from bento_user.cli import main
from bento_user.runtime.direct import DirectRuntime
from filesystems.xv6 import Xv6
from filesystems.xv6.fsck import fsck
from filesystems.xv6.repair import repair

from .test_fsck import CORRUPTIONS, inode, populated


def walk(image: RamDevice) -> tuple[int, RamDevice]:
    """Mount a copy, read every file, list every directory and make one; the entries
    seen, and the copy as the unmount left it."""
    dev = RamDevice.from_bytes(image.image())
    rt = DirectRuntime.open(Xv6(), dev, commit_interval=None)
    c = rt.client()
    seen, todo = 0, ["/"]
    try:
        while todo:
            d = todo.pop()
            for name, _, kind in c.scandir(d):
                if name in (b".", b".."):
                    continue
                path = os.path.join(d, os.fsdecode(name))
                seen += 1
                if kind == 0o040000:
                    todo.append(path)
                elif kind == 0o100000:
                    c.read_bytes(path)
        c.mkdir("/after-repair")                # and it takes changes
    finally:
        c.close_all()
        rt.close()
    return seen, RamDevice.from_bytes(dev.image())


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_repair_fixes_each_corruption_and_the_image_mounts(kind: str) -> None:
    dev, geo = populated()
    CORRUPTIONS[kind][0](dev, geo)
    assert fsck(dev).problems
    report = repair(dev)
    assert report.repaired, kind
    assert report.problems == [], (kind, report.problems)
    assert report.exit_code == 1
    assert fsck(dev).problems == []
    seen, after = walk(dev)
    assert seen >= 2
    assert fsck(after).problems == []         # what the mount changed is consistent too


def test_a_clean_image_is_left_alone() -> None:
    dev, _ = populated()
    before = dev.image()
    report = repair(dev)
    assert report.repaired == [] and report.exit_code == 0
    assert dev.image() == before


def test_an_unreachable_directory_is_reconnected_in_lost_and_found() -> None:
    dev, geo = populated()
    CORRUPTIONS["bad directory record"][0](dev, geo)   # /d's first block: /d/e, /d/f lost
    report = repair(dev)
    assert report.exit_code == 1
    assert any("lost+found" in fix for fix in report.repaired)
    rt = DirectRuntime.open(Xv6(), dev, commit_interval=None)
    try:
        names = rt.client().listdir("/lost+found")
        assert b"#3" in names and b"#4" in names     # /d/e (a directory) and /d/f
        assert len(rt.client().read_bytes("/lost+found/#4")) == 60 * 4096
    finally:
        rt.close()


def test_a_root_that_lost_its_block_is_made_again_and_its_tree_reconnected() -> None:
    """(Found by a 10-minute repair campaign: the root's block pointers overwritten.)"""
    dev, geo = populated()
    inode(dev, geo, 1)["addrs"][0] = 9_999_999
    report = repair(dev)
    assert report.exit_code == 1, report.problems
    rt = DirectRuntime.open(Xv6(), dev, commit_interval=None)
    try:
        assert set(rt.client().listdir("/lost+found")) == {b"#2", b"#5"}   # /d and /g
        assert rt.client().read_bytes("/lost+found/#5") == b"g"
        assert b"e" in rt.client().listdir("/lost+found/#2")
    finally:
        rt.close()


def test_preen_fixes_counts_and_bitmaps_but_leaves_what_needs_judgement() -> None:
    dev, geo = populated()
    CORRUPTIONS["block bitmap"][0](dev, geo)
    CORRUPTIONS["link count"][0](dev, geo)
    report = repair(dev, preen=True)
    assert report.exit_code == 1 and fsck(dev).problems == []
    dev, geo = populated()
    CORRUPTIONS["entry naming a free inode"][0](dev, geo)
    report = repair(dev, preen=True)
    assert report.exit_code == 4 and any("names free inode" in p for p in report.problems)


def test_cli_exit_codes_and_a_recorded_error_cleared(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev, geo = populated()
    CORRUPTIONS["block count"][0](dev, geo)
    img = tmp_path / "x.img"
    img.write_bytes(dev.image())
    assert main(["fsck", "-n", str(img)]) == 4
    assert main(["fsck", "-f", "-y", str(img)]) == 1
    out = capsys.readouterr().out
    assert "fixed: inode 4: block count 7 set to" in out and "clean now" in out
    assert main(["fsck", str(img)]) == 0
    with pytest.raises(SystemExit) as e:                     # one mode at a time
        main(["fsck", "-y", "-n", str(img)])
    assert e.value.code == 2
    assert main(["fsck", "-y", str(img), "--fs", "tiny"]) == 8
    assert "tiny cannot repair" in capsys.readouterr().err
