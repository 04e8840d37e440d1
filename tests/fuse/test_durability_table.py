"""The README's table "What is durable when", line by line, through a real mount: each
promise is kept when the daemon is killed (SIGKILL) right after the call returns.
A power cut is the crash explorer's part (tests/fuzz); sync(1) and ``bento sync`` are
in test_mount_cli.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .conftest import Mount

DATA = bytes(range(256)) * 40  # 10 KiB: three new data blocks


def test_fsync_fdatasync_and_a_directory_fsync_keep_what_they_promise(tmp_path: Path) -> None:
    m = Mount(tmp_path, options=("-o", "commit=3600"))  # no timer commit in between
    m.mount()
    try:
        for name, sync in (("fsynced", os.fsync), ("fdatasynced", os.fdatasync)):
            fd = os.open(m.path / name, os.O_CREAT | os.O_WRONLY, 0o644)
            os.write(fd, DATA)
            sync(fd)  # the file stays open: close promises nothing more
            m.kill_and_remount()
            try:
                os.close(fd)
            except OSError:  # the dead mount's descriptor: its FLUSH finds no daemon
                pass
            assert (m.path / name).read_bytes() == DATA, name
        (m.path / "d").mkdir()
        (m.path / "d" / "named").write_bytes(b"")
        fd = os.open(m.path / "d", os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)
        m.kill_and_remount()
        assert os.listdir(m.path / "d") == ["named"]
    finally:
        m.umount()
    m.fsck()


def test_the_journal_timer_commits_closed_files(tmp_path: Path) -> None:
    """``commit=1``: a file written and closed more than a second ago survives a crash
    of the daemon (close sends the kernel's cached pages; the timer commits them)."""
    m = Mount(tmp_path, options=("-o", "commit=1"))
    m.mount()
    try:
        (m.path / "timed").write_bytes(DATA)
        time.sleep(3)
        m.kill_and_remount()
        assert (m.path / "timed").read_bytes() == DATA
    finally:
        m.umount()
    m.fsck()
