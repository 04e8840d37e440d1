"""Real mounts: an image (xv6 unless a test says) mounted through FUSE by ``bento``.

Each test works through the mount with real programs, then the fixture unmounts,
checks the image with fsck, and (through ``remount``) a test verifies its data
survived. Needs root and /dev/fuse, as CI has.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BENTO = str(Path(sys.executable).with_name("bento"))
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root and /dev/fuse")


def bento(*args: str, check: bool = True, timeout: float = 300,
          env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    env = env or dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([BENTO, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, **kw)  # type: ignore[call-overload]
    if check and done.returncode:
        raise AssertionError(f"bento {' '.join(args)} exited {done.returncode}: "
                             f"{done.stderr.strip()}")
    return done


class Mount:
    """An image and its mount point; ``mount()``/``umount()`` drive the real CLI."""

    def __init__(self, root: Path, size: str = "1G", fs: str = "xv6",
                 options: tuple[str, ...] = (), mkfs: tuple[str, ...] = ()) -> None:
        self.image = root / "disk.img"
        self.path = root / "mnt"
        self.path.mkdir()
        self.fs = fs
        self.options = options
        bento("mkfs", str(self.image), "--size", size, "--fs", fs, *mkfs)
        self.mounted = False

    def mount(self, *extra: str) -> None:
        bento("mount", str(self.image), str(self.path), "--fs", self.fs, *self.options, *extra)
        self.mounted = True

    def umount(self) -> None:
        bento("umount", str(self.path))
        self.mounted = False

    def fsck(self) -> str:
        done = bento("fsck", str(self.image), "--fs", self.fs, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def remount(self) -> None:
        """Unmount, fsck clean, mount again."""
        self.umount()
        self.fsck()
        self.mount()

    def kill_and_remount(self) -> None:
        """The daemon crashes (SIGKILL); the journal is replayed at the next mount."""
        os.kill(self.pid(), signal.SIGKILL)
        self.mounted = False
        self.wait_unmounted()
        self.mount()

    def pid(self) -> int:
        status = bento("stat", str(self.path), "--json").stdout
        return int(json.loads(status)["status"]["pid"])

    def mount_traced(self) -> tuple[Path, Path]:
        """Copy the fresh image aside, then mount with a trace: (trace, the copy) is
        what ``bento replay`` needs."""
        pristine = self.image.with_name("pristine.img")
        shutil.copy(self.image, pristine)
        trace = self.image.with_name("trace.jsonl")
        self.mount("--trace", str(trace))
        return trace, pristine

    def wait_unmounted(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while os.path.ismount(self.path):
            assert time.monotonic() < deadline, f"{self.path} still mounted"
            time.sleep(0.05)


def operations(m: Mount) -> dict[str, dict[str, float]]:
    """``bento stat``'s per-operation counts: calls, errors, time."""
    done = bento("stat", str(m.path), "--json")
    return json.loads(done.stdout)["stats"]["operations"]


@contextlib.contextmanager
def mounted(m: Mount) -> Iterator[Mount]:
    """Mount ``m`` for the body; unmount what the body left mounted."""
    m.mount()
    try:
        yield m
    finally:
        if m.mounted:
            m.umount()


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Mount]:
    m = Mount(tmp_path)
    m.mount()
    try:
        yield m
    finally:
        if os.path.ismount(m.path):
            if m.mounted:
                m.umount()
            else:  # a test left it half-done: do not leave a mount behind
                subprocess.run(["fusermount3", "-u", "-z", str(m.path)], check=False)
    m.fsck()


def tree_digest(root: Path) -> dict[str, tuple[int, str]]:
    """Relative path -> (mode, content hash or link target), for comparing trees."""
    import hashlib

    out: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                what = "-> " + os.readlink(p)
            elif p.is_file():
                what = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                what = "dir"
            out[str(p.relative_to(root))] = (st.st_mode, what)
    return out
