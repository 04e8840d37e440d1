"""The daemon polls for the next request after each answer (poll.patch, ``-o
poll_us``): under requests that never pause, the rest of the daemon still runs."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

from .conftest import Mount, bento


def hammer(path: Path, stop: threading.Event, counted: list[int]) -> None:
    """A request after every answer, as fast as the mount answers, until ``stop``."""
    while not stop.is_set():
        try:
            os.getxattr(path, "user.none")
        except OSError as e:
            assert e.errno == errno.ENODATA
        counted[0] += 1


def test_the_control_socket_answers_while_requests_never_pause(tmp_path: Path) -> None:
    """A polling loop that never went back to trio would leave ``bento stat`` (the
    control socket, a trio task) waiting for as long as the client keeps asking.
    Two clients keep the device busy while stat asks; stat must answer while they
    still run, and they must have been served meanwhile."""
    m = Mount(tmp_path)
    m.mount("-o", "poll_us=1000")  # a long poll: the loop's own turn-taking is what counts
    try:
        f = m.path / "f"
        f.write_bytes(b"x")
        stop, counts = threading.Event(), [[0], [0]]
        clients = [threading.Thread(target=hammer, args=(f, stop, c)) for c in counts]
        for c in clients:
            c.start()
        try:
            while min(c[0] for c in counts) < 1000:
                time.sleep(0.01)
            before = sum(c[0] for c in counts)
            bento("stat", str(m.path), timeout=60)  # raises if it fails
            assert all(c.is_alive() for c in clients)
            time.sleep(0.2)
            assert sum(c[0] for c in counts) > before  # still served after stat
        finally:
            stop.set()
            for c in clients:
                c.join(timeout=60)
    finally:
        m.umount()
    m.fsck()


def test_poll_us_is_checked(tmp_path: Path) -> None:
    m = Mount(tmp_path)
    for bad in ("poll_us=-1", "poll_us=20000", "poll_us=fast"):
        done = bento("mount", str(m.image), str(m.path), "-o", bad, check=False)
        assert done.returncode == 2 and "poll_us" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not os.path.ismount(m.path)
