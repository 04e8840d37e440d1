"""Every tool by name, for the second file system as for xv6: mkfs, mount, real
programs, umount, fsck clean, remount, the data intact."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import Mount, bento, mounted, tree_digest

SOURCE = Path(__file__).resolve().parents[2] / "filesystems"  # a small tree of real files


@pytest.mark.parametrize("fs", ["tiny", "xv6"])
def test_mkfs_mount_copy_move_umount_fsck_remount(tmp_path: Path, fs: str) -> None:
    m = Mount(tmp_path, size="64M", fs=fs)
    with mounted(m):
        shutil.copytree(SOURCE, m.path / "src", ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run(["mkdir", "-p", str(m.path / "a/b/c")], check=True)
        subprocess.run(["mv", str(m.path / "src/xv6"), str(m.path / "a/b/c/xv6")], check=True)
        subprocess.run(["cp", "-a", str(m.path / "a"), str(m.path / "copy")], check=True)
        (m.path / "big").write_bytes(bytes(range(256)) * 20_000)  # 5 MB: indirect blocks
        before = tree_digest(m.path)
        assert "a/b/c/xv6/_fs.py" in before and "src/xv6" not in before
    assert "clean" in m.fsck()
    with mounted(m):
        assert tree_digest(m.path) == before
        subprocess.run(["rm", "-rf", str(m.path / "copy"), str(m.path / "big")], check=True)
    assert "clean" in m.fsck()


def test_tools_name_the_file_system_and_refuse_to_overwrite_one(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    made = bento("mkfs", str(image), "--size", "16M", "--fs", "tiny")
    assert made.stdout.startswith(f"{image}: tiny, 4096 blocks")
    again = bento("mkfs", str(image), "--fs", "xv6", check=False)
    assert again.returncode == 1 and "already holds a tiny file system" in again.stderr
    assert bento("fsck", str(image), "--fs", "tiny").returncode == 0
    wrong = bento("fsck", str(image), "--fs", "xv6", check=False)
    assert wrong.returncode == 8 and wrong.stderr.count("\n") == 1
    unknown = bento("mkfs", str(image), "--fs", "nosuchfs", "--force", check=False)
    assert unknown.returncode == 2 and "xv6" in unknown.stderr and "tiny" in unknown.stderr
    option = bento("mkfs", str(image), "--fs", "tiny", "--force", "-O", "inodes=5", check=False)
    assert option.returncode == 2 and option.stderr.count("\n") == 1
    listed = bento("filesystems").stdout
    assert {line.split()[0] for line in listed.splitlines()} >= {"xv6", "provenance", "tiny"}
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    unchecked = bento("mount", str(image), str(mountpoint), "--fs", "tiny", "-o",
                      "no_default_permissions", check=False)
    assert unchecked.returncode == 2 and "cannot be mounted with no_default_permissions" in unchecked.stderr
