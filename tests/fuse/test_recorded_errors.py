"""Corruption met while serving is recorded, as ext4 records it (issue 19): EUCLEAN to
the program, a timestamped log line naming the inode, a count kept in the superblock
that the next mount warns about and ``bento stat`` and ``bento fsck`` show, and
``-o errors=remount-ro`` turning every later change into EROFS."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from filesystems.xv6._format import INODE_DTYPE
from filesystems.xv6.fsck import geometry
from bento_user.blockdev import ImageDevice

from .conftest import Mount, bento, mounted


def corrupt_inode(image: Path, ino: int) -> None:
    """Point the inode's first block outside the device (fsck: 'outside the device')."""
    with ImageDevice(str(image)) as dev:
        geo = geometry(dev)
        block, slot = geo.inode_location(ino)
        data = np.frombuffer(dev.read_block(block), np.uint8).copy()
        data.view(INODE_DTYPE)[slot]["addrs"][0] = 9_999_999
        dev.write_blocks(block, [data])


def broken_image(tmp_path: Path, options: tuple[str, ...] = ()) -> tuple[Mount, int]:
    """An image whose /bad has a corrupt block pointer; /good is fine."""
    m = Mount(tmp_path, size="64M", options=options)
    with mounted(m):
        (m.path / "good").write_bytes(b"good")
        (m.path / "bad").write_bytes(b"bad" * 2000)
        ino = os.stat(m.path / "bad").st_ino
    corrupt_inode(m.image, ino)
    return m, ino


def stats(m: Mount) -> dict:
    return json.loads(bento("stat", "--json", str(m.path)).stdout)


def test_corruption_met_is_logged_recorded_and_warned_about_at_the_next_mount(
        tmp_path: Path) -> None:
    m, ino = broken_image(tmp_path)
    with mounted(m):
        with pytest.raises(OSError) as e:
            (m.path / "bad").read_bytes()
        assert e.value.errno == errno.EUCLEAN
        assert (m.path / "good").read_bytes() == b"good"   # the rest serves on
        (m.path / "new").write_bytes(b"still writable")     # errors=continue, the default
        s = stats(m)
        assert s["stats"]["errors"]["recorded"]["count"] == 1
        text = bento("stat", str(m.path)).stdout
        assert "run bento fsck" in text and f"inode {ino}" in text
        log = Path(s["status"]["log"]).read_text()
        line = next(l for l in log.splitlines() if "inconsistency" in l)
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line), line   # timestamped
        assert f"inode {ino}" in line
    checked = bento("fsck", str(m.image), check=False)
    assert "recorded 1 error" in checked.stdout and f"inode {ino}" in checked.stdout
    again = bento("mount", str(m.image), str(m.path))
    try:
        assert "recorded 1 error" in again.stderr and "run bento fsck" in again.stderr
    finally:
        bento("umount", str(m.path))


def test_errors_remount_ro_refuses_every_later_change(tmp_path: Path) -> None:
    m, _ = broken_image(tmp_path, options=("-o", "errors=remount-ro"))
    with mounted(m):
        (m.path / "before").write_bytes(b"fine")
        with pytest.raises(OSError) as e:
            (m.path / "bad").read_bytes()
        assert e.value.errno == errno.EUCLEAN
        with pytest.raises(OSError) as e:
            (m.path / "after").write_bytes(b"refused")
        assert e.value.errno == errno.EROFS
        assert (m.path / "before").read_bytes() == b"fine"
        assert "errors=remount-ro" in bento("stat", str(m.path)).stdout


def test_a_bad_errors_option_is_one_line(tmp_path: Path) -> None:
    m = Mount(tmp_path, size="64M")
    done = bento("mount", str(m.image), str(m.path), "-o", "errors=panic", check=False)
    assert done.returncode == 2 and "errors=" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_read_only_mount_records_nothing(tmp_path: Path) -> None:
    m, _ = broken_image(tmp_path)
    before = m.image.read_bytes()[4096:8192]   # the superblock's block
    m.mount("-o", "ro")
    try:
        with pytest.raises(OSError):
            (m.path / "bad").read_bytes()
        assert stats(m)["stats"]["errors"]["met"] == 1
    finally:
        m.umount()
    assert m.image.read_bytes()[4096:8192] == before
