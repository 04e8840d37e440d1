"""third_party/pyfuse3's patches: FUSE_LSEEK and FUSE_FALLOCATE reach a pyfuse3 file
system (the probe, no bento code), and its ENOSYS defaults keep the kernel's own
answers; a directory opened with ``cache_readdir`` is read once. Fails on an
unpatched pyfuse3, where the kernel never asks and never caches."""

from __future__ import annotations

import errno
import mmap
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyfuse3
import pytest

from fuzz.mount_client import fallocate

PROBE = Path(__file__).with_name("pyfuse3_probe.py")
SIZE, DATA_AT, DATA_LEN = 1 << 20, 64 << 10, 4 << 10
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


def probe_mount(tmp_path: Path, handlers: bool, poll: bool = False) -> Iterator[tuple[Path, Path]]:
    mnt, log = tmp_path / "mnt", tmp_path / "calls.log"
    mnt.mkdir()
    args = ([sys.executable, str(PROBE), str(mnt), str(log)] + (["--handlers"] if handlers else [])
            + (["--poll"] if poll else []))
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not os.path.ismount(mnt):
            assert proc.poll() is None, f"probe exited: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "probe did not mount in 10 s"
            time.sleep(0.05)
        yield mnt / "f", log
        assert proc.poll() is None, "the probe died while serving"
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        proc.communicate(timeout=10)


@pytest.fixture
def with_handlers(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield from probe_mount(tmp_path, handlers=True)


@pytest.fixture
def defaults_only(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield from probe_mount(tmp_path, handlers=False)


@pytest.fixture
def polling(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield from probe_mount(tmp_path, handlers=True, poll=True)


def test_patched_pyfuse3_is_installed() -> None:
    """Every patch with a Python face: the handlers, range invalidation, polling and
    directory caching. (DONT_MASK has none: tests/fuse/test_acl_handles.py sees
    modes come out as on ext4.)"""
    assert hasattr(pyfuse3.Operations, "lseek") and hasattr(pyfuse3.Operations, "fallocate"), \
        "pyfuse3 lacks the patch: run scripts/setup.sh"
    assert hasattr(pyfuse3, "invalidate_range"), "pyfuse3 lacks invalidate-range.patch"
    assert hasattr(pyfuse3, "set_spin"), "pyfuse3 lacks poll.patch"
    assert hasattr(pyfuse3.FileInfo(), "cache_readdir"), "pyfuse3 lacks cache-readdir.patch"
    with pytest.raises(ValueError):
        pyfuse3.set_spin(-1)


def fuse_device_flags(pid: int) -> int:
    """The open flags of the process's /dev/fuse descriptor."""
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        if os.readlink(fd) == "/dev/fuse":
            fields = dict(line.split(":\t", 1) for line in
                          Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text().splitlines()
                          if ":\t" in line)
            return int(fields["flags"], 8)
    raise AssertionError(f"process {pid} has no /dev/fuse open")


def test_a_polling_session_answers_every_request(polling: tuple[Path, Path]) -> None:
    """poll.patch: with set_spin the device is read non-blocking, and every request
    is still answered, each once: 2,000 O_DIRECT reads (a READ each) and seeks."""
    f, _ = polling
    probe = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                 and PROBE.name.encode() in Path(p, "cmdline").read_bytes()
                 and str(f.parent).encode() in Path(p, "cmdline").read_bytes())
    assert fuse_device_flags(probe) & os.O_NONBLOCK
    fd = os.open(f, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)
    try:
        for i in range(2000):
            offset = (i * 4096) % SIZE
            assert os.preadv(fd, [buf], offset) == 4096
            assert buf[:] == bytes(4096)
            in_data = DATA_AT <= offset < DATA_AT + DATA_LEN
            assert os.lseek(fd, offset, os.SEEK_HOLE) == (DATA_AT + DATA_LEN if in_data else offset)
    finally:
        os.close(fd)


def test_lseek_and_fallocate_reach_the_file_system(with_handlers: tuple[Path, Path]) -> None:
    f, log = with_handlers
    fd = os.open(f, os.O_RDWR)
    try:
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 0
        assert os.lseek(fd, 0, os.SEEK_DATA) == DATA_AT
        assert os.lseek(fd, DATA_AT, os.SEEK_HOLE) == DATA_AT + DATA_LEN
        with pytest.raises(OSError) as e:
            os.lseek(fd, DATA_AT + DATA_LEN, os.SEEK_DATA)
        assert e.value.errno == errno.ENXIO
        os.posix_fallocate(fd, 4096, 8192)
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096)
    finally:
        os.close(fd)
    calls = log.read_text().split("\n")
    assert calls[0].split()[2:] == ["0", "4096", "8192"]
    assert calls[1].split()[2:] == ["3", "0", "4096"]


def test_enosys_defaults_keep_the_kernels_answers(defaults_only: tuple[Path, Path]) -> None:
    f, log = defaults_only
    fd = os.open(f, os.O_RDWR)
    try:
        assert os.lseek(fd, 0, os.SEEK_HOLE) == SIZE  # the whole file is data
        assert os.lseek(fd, 4096, os.SEEK_DATA) == 4096
        with pytest.raises(OSError) as e:
            fallocate(fd, 0, 0, 4096)
        assert e.value.errno == errno.EOPNOTSUPP
    finally:
        os.close(fd)
    assert not log.exists()



def readdirs(log: Path) -> int:
    return log.read_text().count("readdir ") if log.exists() else 0


def test_a_directory_opened_with_cache_readdir_is_read_once(
        with_handlers: tuple[Path, Path]) -> None:
    f, log = with_handlers
    assert os.listdir(f.parent) == ["f"]
    first = readdirs(log)
    for _ in range(5):
        assert os.listdir(f.parent) == ["f"]
    assert first >= 1 and readdirs(log) == first


def test_an_integer_directory_handle_is_read_every_time(
        defaults_only: tuple[Path, Path]) -> None:
    f, log = defaults_only
    for _ in range(5):
        assert os.listdir(f.parent) == ["f"]
    assert readdirs(log) >= 5
