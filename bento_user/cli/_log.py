"""The mount daemon's log: where it lives, what it is called, and how it rotates.

One log per mount point, named after it so a person can find it with ``ls``
(``/mnt/data`` -> ``mnt-data.1a2b3c4d.log``; the hash keeps ``/mnt/a-b`` and
``/mnt/a/b`` apart), kept where logs outlive a reboot: ``/var/log/bento`` for root,
``$XDG_STATE_HOME/bento`` (``~/.local/state/bento``) for others, or
``$BENTO_LOG_DIR``. It rotates by size
with the standard library's handler, and the daemon's raw stdout and stderr follow
each rotation, so a traceback or a faulthandler dump lands in the current file and
not in a renamed one.
"""

from __future__ import annotations

import hashlib
import logging
import logging.handlers
import os
import re
from collections.abc import Sequence

MAX_BYTES = 8 << 20  # per file; with BACKUPS, a mount's log never passes 40 MiB
BACKUPS = 4
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_dir(uid: int | None = None) -> str:
    if os.environ.get("BENTO_LOG_DIR"):  # a test run's, a package's own place
        return os.environ["BENTO_LOG_DIR"]
    if (os.getuid() if uid is None else uid) == 0:
        return "/var/log/bento"
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(state, "bento")


def log_name(mountpoint: str) -> str:
    path = os.path.realpath(mountpoint)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", path.strip("/")).strip("-")[:80] or "root"
    key = hashlib.sha256(path.encode()).hexdigest()[:8]
    return f"{readable}.{key}.log"


def default_log_path(mountpoint: str) -> str:
    return os.path.join(log_dir(), log_name(mountpoint))


class DaemonLog(logging.handlers.RotatingFileHandler):
    """A rotating log file that the given descriptors (the daemon's 1 and 2) follow:
    whatever writes to them directly, bypassing logging, stays in the current file."""

    def __init__(self, path: str, follow_fds: Sequence[int] = (1, 2),
                 max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        self.follow_fds = tuple(follow_fds)
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.setFormatter(logging.Formatter(FORMAT))

    def _open(self):  # type: ignore[no-untyped-def]
        stream = super()._open()
        if os.path.isfile(self.baseFilename):  # not --log /dev/null's
            os.chmod(self.baseFilename, 0o600)  # requests' names and errors are private
        for fd in self.follow_fds:
            os.dup2(stream.fileno(), fd)
        return stream


def open_daemon_log(path: str) -> None:
    """Send the daemon's logging and its stdout/stderr to the log at ``path``. A path
    that is not a regular file (``--log /dev/null``) is never rotated: the standard
    handler rolls over regular files only."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(DaemonLog(path))
