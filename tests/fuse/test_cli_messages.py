"""The CLI's words when something is off (issue 19): a daemon that died is named as
dead, with what became of its kernel mount; a subcommand's usage error shows that
subcommand's usage."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import Mount, bento

pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root and /dev/fuse")


def killed(m: Mount) -> None:
    os.kill(m.pid(), signal.SIGKILL)
    m.mounted = False
    time.sleep(0.5)  # fusermount3's auto_unmount, when there is one


def test_a_dead_daemon_whose_mount_was_cleaned_up_is_named_so(tmp_path: Path) -> None:
    m = Mount(tmp_path, size="64M")
    m.mount()
    killed(m)
    m.wait_unmounted()
    for command in ("stat", "umount", "sync"):
        done = bento(command, str(m.path), check=False)
        assert done.returncode == 1
        assert done.stderr.strip().endswith(
            "the daemon died; the kernel mount was cleaned up"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_umount_cleans_up_after_a_dead_daemon_whose_mount_is_left(tmp_path: Path) -> None:
    m = Mount(tmp_path, size="64M")
    m.mount("-o", "dev")  # root's dev: mounted without auto_unmount
    try:
        killed(m)
        assert f" {m.path} fuse.bento " in Path("/proc/self/mounts").read_text()
        told = bento("stat", str(m.path), check=False)
        assert told.returncode == 1 and "the daemon died" in told.stderr
        assert f"bento umount {m.path}" in told.stderr
        done = bento("umount", str(m.path), check=False)
        assert done.returncode == 0, done.stderr
        assert "the daemon had died" in done.stderr
        assert f" {m.path} " not in Path("/proc/self/mounts").read_text()
        m.mount()        # the image and the mount point are free again
        m.umount()
    finally:              # never leave a dead mount behind
        subprocess.run(["fusermount3", "-u", "-z", str(m.path)], capture_output=True)


def test_a_subcommands_usage_error_shows_its_own_usage() -> None:
    done = bento("mkfs", "--bogus", "x", check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: bento mkfs"), done.stderr
    assert "unrecognized arguments: --bogus" in done.stderr
