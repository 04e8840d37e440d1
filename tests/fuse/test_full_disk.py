"""A full disk through a real mount with the default options (issue 14 §1): a write
that cannot land fails at write() with ENOSPC, or it lands — also after unmount,
fsck and remount. Before the space guard, ``echo hello > f`` on a full disk exited 0
and the file was empty after remount (the kernel's write-back got the ENOSPC).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import subprocess
from pathlib import Path

from .conftest import Mount, mounted

MIB = 1 << 20


def known(i: int, size: int) -> bytes:
    return random.Random(i).randbytes(size)


def fill_with_cp(tmp_path: Path, dest: Path, size: int = MIB) -> dict[Path, bytes]:
    """``cp`` known files into ``dest`` until cp fails; those cp said it copied."""
    landed: dict[Path, bytes] = {}
    for i in range(1000):
        data = known(i, size)
        src = tmp_path / "src"
        src.write_bytes(data)
        target = dest / f"big{i}"
        if subprocess.run(["cp", str(src), str(target)], capture_output=True).returncode:
            return landed
        landed[target] = data
    raise AssertionError("the disk never filled")


def shell_writes(dest: Path, n: int) -> tuple[dict[Path, bytes], list[str]]:
    """``echo`` by shell redirection; bash reports a failed write() and exits 1."""
    landed, errors = {}, []
    for i in range(n):
        target = dest / f"echo{i}"
        done = subprocess.run(["bash", "-c", f"echo hello-{i} > {target}"],
                              capture_output=True, text=True)
        if done.returncode == 0:
            landed[target] = f"hello-{i}\n".encode()
        else:
            errors.append(done.stderr)
    return landed, errors


def python_writes(dest: Path, sizes: list[int]) -> tuple[dict[Path, bytes], int]:
    """os.write, then os.close: the error, if any, must come from the write."""
    landed, refused = {}, 0
    for i, size in enumerate(sizes):
        target = dest / f"py{i}"
        data = known(10_000 + i, size)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as e:
            assert e.errno == errno.ENOSPC
            refused += 1
            continue
        try:
            written = 0
            try:
                while written < size:
                    written += os.write(fd, data[written:])
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                refused += 1
        finally:
            os.close(fd)  # raises if an acknowledged write did not land: the bug
        if written == size:
            landed[target] = data
    return landed, refused


def assert_whole_after_remount(m: Mount, files: dict[Path, bytes]) -> None:
    """Unmount, fsck clean, mount again: every acknowledged file reads back whole."""
    m.remount()
    for path, data in files.items():
        got = path.read_bytes()
        assert got == data, f"{path.name}: {len(got)} bytes back of {len(data)} written"


def small_mount(tmp_path: Path, *mkfs: str) -> contextlib.AbstractContextManager[Mount]:
    return mounted(Mount(tmp_path, size="64M", mkfs=mkfs))


def test_a_full_disk_fails_writes_at_write_and_keeps_what_it_acknowledged(
        tmp_path: Path) -> None:
    with small_mount(tmp_path) as m:
        landed = fill_with_cp(tmp_path, m.path)
        echoed, errors = shell_writes(m.path, 20)
        pyfiles, refused = python_writes(m.path, [100, 5000, 70_000, MIB])
        assert errors and all("No space left on device" in e for e in errors), errors
        assert refused, "the disk was full, yet every Python write landed"
        assert_whole_after_remount(m, landed | echoed | pyfiles)


def test_a_writer_opened_before_the_disk_filled_keeps_its_cached_pages(
        tmp_path: Path) -> None:
    """A file written through the page cache, still open while others fill the disk:
    the reserve keeps room for its dirty pages, so its close succeeds and it lands."""
    with small_mount(tmp_path) as m:
        early = m.path / "early"
        data = known(-1, 2 * MIB)
        with open(early, "wb") as f:
            f.write(data)
            landed = fill_with_cp(tmp_path, m.path)
        assert_whole_after_remount(m, landed | {early: data})


def test_running_out_of_inodes_fails_the_create(tmp_path: Path) -> None:
    with small_mount(tmp_path, "--inodes", "64") as m:
        free = os.statvfs(m.path).f_ffree
        echoed, errors = shell_writes(m.path, free + 10)
        assert len(echoed) == free and len(errors) == 10, errors
        assert all("No space left on device" in e for e in errors), errors
        assert_whole_after_remount(m, echoed)
