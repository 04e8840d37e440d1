"""Holes and preallocation through a real xv6 mount: the checks a user makes
(issue 14 §5, issue 22 §3) — ``fallocate -l``, ``fallocate -p``, ``cp
--sparse=always``, SEEK_HOLE/SEEK_DATA — and that a hole is never reported where the
kernel still caches data the file system has not seen."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import Mount

MIB = 1 << 20


def du_kib(p: Path) -> int:
    return os.stat(p).st_blocks // 2


def seek(fd: int, offset: int, whence: int) -> int | str:
    try:
        return os.lseek(fd, offset, whence)
    except OSError as e:
        return errno.errorcode[e.errno]


def test_a_file_made_by_truncate_is_one_hole(mnt: Mount) -> None:
    f = mnt.path / "t"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 70_000)
        assert seek(fd, 0, os.SEEK_HOLE) == 0        # before: 70000
        assert seek(fd, 0, os.SEEK_DATA) == "ENXIO"  # before: 0
        assert seek(fd, 70_000, os.SEEK_HOLE) == "ENXIO"
    finally:
        os.close(fd)


def test_data_and_holes_are_found(mnt: Mount) -> None:
    f = mnt.path / "s"
    with open(f, "wb") as out:
        out.seek(MIB)
        out.write(b"x" * 5000)   # blocks 256 and 257
        out.truncate(3 * MIB)
    fd = os.open(f, os.O_RDONLY)
    try:
        assert seek(fd, 0, os.SEEK_DATA) == MIB
        assert seek(fd, MIB + 10, os.SEEK_HOLE) == MIB + 8192
        assert seek(fd, MIB + 8192, os.SEEK_DATA) == "ENXIO"
        assert seek(fd, 100, os.SEEK_HOLE) == 100
    finally:
        os.close(fd)
    mnt.remount()
    fd = os.open(f, os.O_RDONLY)
    try:
        assert seek(fd, 0, os.SEEK_DATA) == MIB
    finally:
        os.close(fd)


def test_cached_writes_are_data_before_they_reach_the_file_system(mnt: Mount) -> None:
    """The kernel caches the write (writeback cache); an lseek through the same or
    another descriptor must still see it as data, and cp --sparse must copy it."""
    f = mnt.path / "w"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 70_000)
        os.pwrite(fd, b"y" * 10, 40_000)
        assert seek(fd, 0, os.SEEK_DATA) == 36_864  # without the write-back first: ENXIO
        other = os.open(f, os.O_RDONLY)
        try:
            assert seek(other, 40_000, os.SEEK_HOLE) == 40_960
        finally:
            os.close(other)
        os.pwrite(fd, b"z" * 10, 60_000)
        subprocess.run(["cp", "--sparse=always", str(f), str(mnt.path / "copy")], check=True)
    finally:
        os.close(fd)
    assert (mnt.path / "copy").read_bytes() == f.read_bytes()


def test_fallocate_punch_and_sparse_copy(mnt: Mount) -> None:
    f = mnt.path / "big"
    subprocess.run(["fallocate", "-l", "64M", str(f)], check=True)  # before: EOPNOTSUPP
    assert os.stat(f).st_size == 64 * MIB
    assert 64 * 1024 <= du_kib(f) < 65 * 1024       # 64 MiB of blocks and their maps
    subprocess.run(["fallocate", "-p", "-o", "4096", "-l", "1M", str(f)], check=True)
    assert du_kib(f) <= 63 * 1024 + 100
    with open(f, "r+b") as out:
        out.seek(2 * MIB)
        out.write(b"data" * 1000)
    fd = os.open(f, os.O_RDONLY)
    try:
        assert seek(fd, 0, os.SEEK_HOLE) == 4096
        assert seek(fd, 4096, os.SEEK_DATA) == 4096 + MIB
    finally:
        os.close(fd)
    sparse = mnt.path / "sparse"
    with open(sparse, "wb") as out:
        out.write(b"head")
        out.seek(8 * MIB)
        out.write(b"tail")
    subprocess.run(["cp", "--sparse=always", str(sparse), str(mnt.path / "sparse2")], check=True)
    assert (mnt.path / "sparse2").read_bytes() == sparse.read_bytes()
    assert du_kib(mnt.path / "sparse2") <= 16  # two data blocks and two of block map
    mnt.remount()
    assert du_kib(mnt.path / "sparse2") <= 16  # two data blocks and two of block map
    assert (mnt.path / "big").read_bytes()[2 * MIB:2 * MIB + 8] == b"datadata"


def test_fallocate_reports_a_full_disk(tmp_path: Path) -> None:
    m = Mount(tmp_path, size="64M")
    m.mount()
    try:
        done = subprocess.run(["fallocate", "-l", "100M", str(m.path / "f")],
                              capture_output=True, text=True)
        assert done.returncode != 0 and "No space left" in done.stderr
        assert os.stat(m.path / "f").st_size < 100 * MIB
    finally:
        m.umount()
    m.fsck()


@pytest.mark.parametrize("mode_flag", ["-z"])
def test_zero_range(mnt: Mount, mode_flag: str) -> None:
    f = mnt.path / "z"
    f.write_bytes(b"q" * 20_000)
    subprocess.run(["fallocate", mode_flag, "-o", "100", "-l", "10000", str(f)], check=True)
    data = f.read_bytes()
    assert data == b"q" * 100 + bytes(10_000) + b"q" * 9_900
