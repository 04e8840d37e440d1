"""``bento inspect IMAGE COMMAND``: an unmounted image read as far as it goes (issue 19):
ls, stat, cat and blocks through the file system; super and journal from the disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bento_user.blockdev import RamDevice
from bento_user.cli import main

from .conftest import Mounted, fresh_device
from .test_fsck import geometry, inode


def image(tmp_path: Path, crash: bool = False) -> Path:
    """/d (inode 2), /d/f (3; 60 blocks: the single-indirect level), /g (4), a symlink;
    ``crash``: everything still in the journal's log, as a power cut leaves it (the
    superblock at home still says clean, never mounted)."""
    m = Mounted(fresh_device(4096, ninodes=256, journal_blocks=256))
    c = m.c
    c.mkdir("/d")
    c.write_bytes("/d/f", b"0123456789abcdef" * 15360)
    c.write_bytes("/g", b"hello, inspector\n")
    c.symlink("g", "/link")
    if crash:
        m.rt.ks.journal.force_commit()  # in the log, not yet checkpointed home
        c.write_bytes("/late", b"only in the log")
        m.rt.ks.journal.force_commit()
        m.rt.crash()
    else:
        m.rt.close()
    path = tmp_path / "x.img"
    path.write_bytes(m.dev.image())
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["inspect", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ls_stat_cat_and_blocks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = str(image(tmp_path))
    code, out, _ = run(capsys, img, "ls", "/")
    assert code == 0 and {"d", "g", "link"} <= {line.split()[-1] for line in out.splitlines()}
    code, out, _ = run(capsys, img, "stat", "/d/f")
    assert code == 0 and "size: 245760" in out and "inode: 3" in out
    code, by_number, _ = run(capsys, img, "stat", "#3")
    assert code == 0 and by_number == out
    code, out, _ = run(capsys, img, "cat", "/g")
    assert code == 0 and out == "hello, inspector\n"
    code, out, _ = run(capsys, img, "blocks", "/d/f")
    assert code == 0 and out.startswith("inode 3: 60 blocks in 2 extents")
    assert "logical 0-11 ->" in out and "logical 12-59 ->" in out  # the indirect block between
    code, _, err = run(capsys, img, "cat", "/nope")
    assert code == 1 and err.strip() == f"bento inspect: {img}: /nope: No such file or directory"


def test_super_and_journal_show_the_disk_as_it_is(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    img = str(image(tmp_path, crash=True))
    before = Path(img).read_bytes()
    code, out, _ = run(capsys, img, "super")
    assert code == 0
    for field in ("uuid:", "blocks:", "inodes:", "state: clean", "mount count: 0",
                  "errors: none recorded", "committed transactions to replay"):
        assert field in out, field
    code, out, _ = run(capsys, img, "journal")
    assert code == 0 and "transaction" in out and "blocks" in out
    code, out, _ = run(capsys, img, "cat", "/late")  # the log replayed, in memory only
    assert code == 0 and out == "only in the log"
    assert Path(img).read_bytes() == before


def test_a_corrupt_image_is_read_as_far_as_it_goes(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = image(tmp_path)
    dev = RamDevice.from_bytes(path.read_bytes())
    inode(dev, geometry(dev), 4)["addrs"][0] = 9_999_999     # /g's block
    path.write_bytes(dev.image())
    img = str(path)
    code, out, err = run(capsys, img, "cat", "/g")
    assert code == 4 and "inode 4: block pointer 9999999 outside the device" in err
    assert "stopped" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, img, "cat", "/d/f")            # the rest reads on
    assert code == 0 and len(out) == 245760
    with open(img, "r+b") as f:                               # the superblock itself
        f.seek(4096 + 16)
        f.write(os.urandom(8))
    code, out, err = run(capsys, img, "super")       # shown as it is, and said so
    assert code == 0 and "superblock: NOT VALID" in out and "checksum" in out
    assert "blocks:" in out
    code, _, err = run(capsys, img, "ls", "/")
    assert code == 4 and "cannot open" in err


def test_views_a_file_system_does_not_offer_say_so(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "t.img"
    assert main(["mkfs", str(img), "--size", "16M", "--fs", "tiny"]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, str(img), "--fs", "tiny", "ls", "/")
    assert code == 0
    code, _, err = run(capsys, str(img), "--fs", "tiny", "super")
    assert code == 1 and "tiny offers no 'super' view" in err


def test_a_reader_that_stops_early_gets_no_broken_pipe(tmp_path: Path) -> None:
    """``bento inspect IMG ls / | head -1``: head closes the pipe; bento stops quietly."""
    m = Mounted(fresh_device(4096, ninodes=1024, journal_blocks=256))
    for i in range(400):
        m.c.write_bytes(f"/file-with-a-long-name-{i:04d}", b"")
    m.rt.close()
    img = tmp_path / "x.img"
    img.write_bytes(m.dev.image())
    bento = Path(sys.executable).with_name("bento")
    done = subprocess.run(f"{bento} inspect {img} ls / | head -1", shell=True,
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2])))
    assert done.stdout.count("\n") == 1 and done.stderr == ""
