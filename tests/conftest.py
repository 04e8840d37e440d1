"""Shared fixtures: scratch space on a disk that takes O_DIRECT, and on tmpfs."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def run_threads(target: Callable[[int], None], count: int) -> None:
    """Run ``target(i)`` for i in 0..count-1 on as many threads and wait for all."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def make_image(path: Path, nblocks: int, block_size: int = 4096) -> Path:
    with open(path, "wb") as f:
        f.truncate(nblocks * block_size)
    return path


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    """A directory on / (ext4 here), where O_DIRECT works."""
    return tmp_path


@pytest.fixture
def tmpfs_dir() -> Iterator[Path]:
    """A directory on tmpfs, which refuses O_DIRECT."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no tmpfs at /dev/shm on this machine")
    d = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="bento-test-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tiny_rt() -> Iterator[object]:
    """tiny on the direct runtime, on a fresh 16 MiB image."""
    from fuzz.target import Target
    target = Target.load("tiny")
    rt = target.open(target.fresh_device(4096))
    yield rt
    rt.close()


@pytest.fixture(autouse=True, scope="session")
def daemon_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Mount daemons started by the tests log under the run's own temporary directory
    (pytest keeps the last three runs), not in /var/log/bento."""
    logs = tmp_path_factory.mktemp("daemon-logs")
    os.environ["BENTO_LOG_DIR"] = str(logs)
    return logs
