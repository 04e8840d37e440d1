"""fsck finds each kind of damage, on hand-corrupted images; and the CLI's exit codes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bento_user.blockdev import RamDevice
from bento_user.cli import main
from filesystems.xv6._format import INODE_DTYPE, Geometry
from filesystems.xv6.fsck import fsck, geometry

from .conftest import Mounted, fresh_device


def populated() -> tuple[RamDevice, Geometry]:
    m = Mounted(fresh_device(4096, ninodes=256, journal_blocks=256))
    c = m.c
    c.mkdir("/d"); c.mkdir("/d/e")
    c.write_bytes("/d/f", os.urandom(60 * 4096))   # uses the single-indirect block
    c.write_bytes("/g", b"g")
    c.setxattr("/g", b"user.big", bytes(10000))      # an index and three stream blocks
    c.rt.close()
    dev = RamDevice.from_bytes(m.dev.image())
    return dev, geometry(dev)


def inode(dev: RamDevice, geo: Geometry, ino: int) -> np.void:
    block, slot = geo.inode_location(ino)
    return dev.blocks[block].view(INODE_DTYPE)[slot]


def set_bit(dev: RamDevice, start: int, n: int, value: bool) -> None:
    byte = dev.blocks[start + n // 32768].reshape(-1)
    if value:
        byte[(n % 32768) // 8] |= 1 << (n % 8)
    else:
        byte[(n % 32768) // 8] &= ~np.uint8(1 << (n % 8))


# inode numbers in populated(): 1 root, 2 /d, 3 /d/e, 4 /d/f, 5 /g
CORRUPTIONS: dict[str, tuple[Callable[[RamDevice, Geometry], None], str]] = {
    "pointer outside the device": (
        lambda d, g: inode(d, g, 5)["addrs"].__setitem__(0, 9_999_999), "outside the device"),
    "pointer into metadata": (
        lambda d, g: inode(d, g, 5)["addrs"].__setitem__(0, 3), "inside the metadata area"),
    "block claimed twice": (
        lambda d, g: inode(d, g, 5)["addrs"].__setitem__(0, int(inode(d, g, 4)["addrs"][0])),
        "claimed by inode 4 and inode 5"),
    "block count": (lambda d, g: inode(d, g, 4).__setitem__("blocks", 7), "block count 7"),
    "size too small for blocks": (lambda d, g: inode(d, g, 4).__setitem__("size", 10),
                                  "past its size"),
    "link count": (lambda d, g: inode(d, g, 5).__setitem__("nlink", 3), "link count 3"),
    "block bitmap": (lambda d, g: set_bit(d, g.bbitmap_start, int(inode(d, g, 5)["addrs"][0]), False),
                     "used but marked free"),
    "inode bitmap": (lambda d, g: set_bit(d, g.ibitmap_start, 100, True), "marked used but free"),
    "unreachable inode": (lambda d, g: (inode(d, g, 100).__setitem__("mode", 0o100644),
                                        inode(d, g, 100).__setitem__("nlink", 1),
                                        set_bit(d, g.ibitmap_start, 100, True)),
                          "no directory names it"),
    "bad directory record": (lambda d, g: d.blocks[int(inode(d, g, 2)["addrs"][0])].view("<u2").__setitem__(2, 3),
                             "bad record length"),
    "entry naming a free inode": (
        lambda d, g: d.blocks[int(inode(d, g, 2)["addrs"][0])].view("<u4").__setitem__(3, 200),
        "names free inode 200"),
    "wrong '..'": (lambda d, g: d.blocks[int(inode(d, g, 3)["addrs"][0])].view("<u4").__setitem__(3, 1),
                   "'..' names 1"),
    "directory loop": (lambda d, g: d.blocks[int(inode(d, g, 3)["addrs"][0])].view("<u4").__setitem__(0, 2),
                       "'.' names inode 2"),
    "huge size": (lambda d, g: inode(d, g, 2).__setitem__("size", 2**60), "does not match its blocks"),
    "xattr index length": (lambda d, g: xattr_index(d, g).__setitem__(1, 0),
                           "extended-attribute index holds 3 blocks for 0 bytes"),
    "xattr block claimed twice": (
        lambda d, g: xattr_index(d, g).__setitem__(3, int(inode(d, g, 4)["addrs"][0])),
        "claimed by inode 4 and inode 5"),
    "xattr entries overrun": (lambda d, g: d.blocks[int(xattr_index(d, g)[3])].view("<u4").__setitem__(1, 9),
                              "overrun"),
}


def xattr_index(dev: RamDevice, geo: Geometry) -> np.ndarray:
    """/g's extended-attribute index: XATI, length, count, blocks."""
    return dev.blocks[int(inode(dev, geo, 5)["xattr_block"])].view("<u4")


def test_a_fresh_populated_image_is_clean() -> None:
    dev, _ = populated()
    assert fsck(dev).problems == []


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_fsck_reports_each_corruption(kind: str) -> None:
    dev, geo = populated()
    corrupt, expected = CORRUPTIONS[kind]
    corrupt(dev, geo)
    problems = fsck(dev).problems
    assert any(expected in p for p in problems), problems


def test_cli_mkfs_fsck_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "x.img"
    assert main(["mkfs", str(img)]) == 2                                   # no --size
    assert main(["mkfs", str(img), "--size", "64M"]) == 0
    assert main(["mkfs", str(img), "--size", "64M"]) == 1                  # refuses
    assert "use --force" in capsys.readouterr().err
    assert main(["mkfs", str(img), "--size", "64M", "--force"]) == 0
    assert main(["fsck", str(img)]) == 0
    with open(img, "r+b") as f:                                            # break a bitmap bit
        geo = geometry(RamDevice.from_bytes(f.read(2 * 4096) + bytes(((64 << 20) // 4096 - 2) * 4096)))
        f.seek(geo.bbitmap_start * 4096)
        f.write(b"\0")
    assert main(["fsck", str(img)]) == 4
    with open(img, "r+b") as f:
        f.seek(4096)
        f.write(b"garbage!")
    assert main(["fsck", str(img)]) == 8
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"bento fsck: {img}: not an xv6 v2 file system"
    assert main(["fsck", str(tmp_path / "missing.img")]) == 8


def test_cli_mkfs_refuses_a_file_of_data_and_leaves_no_file_when_it_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "photos.bin"                      # no file system, but not empty
    data.write_bytes(os.urandom(100_000))
    assert main(["mkfs", str(data), "--size", "16M"]) == 1
    err = capsys.readouterr().err
    assert "holds data but no file system" in err and "--force" in err
    assert data.stat().st_size == 100_000               # not shrunk, grown or formatted
    sparse = tmp_path / "sparse.img"                    # truncate -s: empty, as is a zeroed one
    with open(sparse, "wb") as f:
        f.truncate(16 << 20)
    assert main(["mkfs", str(sparse)]) == 0
    zeros = tmp_path / "zeros.img"
    zeros.write_bytes(bytes(16 << 20))
    assert main(["mkfs", str(zeros)]) == 0
    assert main(["mkfs", str(data), "--size", "16M", "--force"]) == 0
    new = tmp_path / "new.img"                          # the file system's mkfs refuses
    assert main(["mkfs", str(new), "--size", "16M", "--fs", "tiny", "-O", "inodes=5"]) == 2
    assert not new.exists()


def test_cli_mkfs_says_what_it_rounded_and_the_minimum_it_needs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mkfs", str(tmp_path / "i.img"), "--size", "16M", "--inodes", "1000"]) == 0
    out = capsys.readouterr().out
    assert "1007 inodes (--inodes 1000, rounded up to fill whole inode-table blocks)" in out
    assert main(["mkfs", str(tmp_path / "exact.img"), "--size", "16M", "--inodes", "1007"]) == 0
    assert "rounded" not in capsys.readouterr().out
    assert main(["mkfs", str(tmp_path / "small.img"), "--size", "1M"]) == 2
    err = capsys.readouterr().err                     # one minimum, said by the file system
    assert "need at least 281 blocks" in err and "at least 1M" not in err
    assert main(["mkfs", str(tmp_path / "tiny.img"), "--size", "512K"]) == 2
    assert "less than 1 MiB" in capsys.readouterr().err
