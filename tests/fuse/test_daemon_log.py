"""The mount daemon's log (issue 19): one per mount point, named after it, rotated by
size, and ending with a line whatever stopped the daemon (an unmount, a signal, a
crash)."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from bento_user.cli._log import DaemonLog, log_name

from .conftest import Mount, bento

pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root and /dev/fuse")


def log_of(m: Mount) -> Path:
    return Path(json.loads(bento("stat", str(m.path), "--json").stdout)["status"]["log"])


def wait_for(path: Path, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while text not in (content := path.read_text()):
        assert time.monotonic() < deadline, f"{text!r} not in {path}:\n{content}"
        time.sleep(0.05)
    return content


def test_the_log_is_named_after_its_mount_point(tmp_path: Path, daemon_logs: Path) -> None:
    m = Mount(tmp_path, size="64M")
    m.mount()
    log = log_of(m)
    m.umount()
    readable = str(m.path.resolve()).strip("/").replace("/", "-")
    assert log.parent == daemon_logs and log.name.startswith(readable[:80]), log
    assert log.name == log_name(str(m.path))
    content = wait_for(log, "stops, exit status 0")
    assert f"mounted {m.image} on {m.path}" in content
    assert log.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_unmounts_and_is_logged(tmp_path: Path, sig: signal.Signals) -> None:
    m = Mount(tmp_path, size="64M")
    m.mount()
    log, pid = log_of(m), m.pid()
    os.kill(pid, sig)
    m.mounted = False
    m.wait_unmounted()
    content = wait_for(log, f"daemon {pid} stops, exit status 0")
    assert f"{sig.name}: unmounting" in content
    assert f"unmounted {m.path}\n" in content
    m.fsck()


def test_a_fatal_signal_leaves_its_dump_in_the_log(tmp_path: Path) -> None:
    m = Mount(tmp_path, size="64M")
    m.mount()
    log, pid = log_of(m), m.pid()
    os.kill(pid, signal.SIGSEGV)
    m.mounted = False
    m.wait_unmounted()  # auto_unmount
    assert "Fatal Python error: Segmentation fault" in wait_for(log, "Segmentation fault")


def test_the_log_rotates_and_raw_writes_follow(tmp_path: Path) -> None:
    path = tmp_path / "daemon.log"
    raw = os.open(os.devnull, os.O_WRONLY)  # stands for the daemon's stderr
    handler = DaemonLog(str(path), follow_fds=(raw,), max_bytes=2000, backups=2)
    logger = logging.getLogger("test.rotation")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(200):
            logger.warning("line %d %s", i, "x" * 40)
        os.write(raw, b"a traceback written straight to fd 2\n")
    finally:
        logger.removeHandler(handler)
        handler.close()
        os.close(raw)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["daemon.log", "daemon.log.1", "daemon.log.2"]
    assert all((tmp_path / f).stat().st_size <= 2000 for f in files)
    current = path.read_text()
    assert "line 199" in current and current.endswith("a traceback written straight to fd 2\n")
