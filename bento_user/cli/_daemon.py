"""Running a mount in the background and returning only once it is ready.

The parent forks a daemon (double fork, new session, stdio to the log) and waits on
a pipe for one line: ``ok`` when the mount serves (``ok WARNING``: it serves, and the
person mounting should know something), ``error CODE MESSAGE`` when it could not be
made. A daemon that dies without a word is reported too. The fork
happens before anything starts a thread (the journal's commit thread, trio).

The daemon's last words go to its log whatever ends it: a line with its exit status
when it returns or raises, and faulthandler's dump when a fatal signal (SIGSEGV,
SIGABRT, ...) kills it. Only SIGKILL ends it silently; ``bento stat`` then says the
daemon died.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
from collections.abc import Callable
from typing import Protocol

from ._errors import UserError
from ._log import open_daemon_log


class Ready(Protocol):
    """Told once: the mount serves (``error`` None, perhaps with a ``warning`` for the
    person mounting) or could not be made (``error``, exit ``code``)."""

    def __call__(self, error: str | None, code: int = 1, warning: str | None = None) -> None: ...


def run_in_background(work: Callable[[Ready], int], log_path: str) -> int:
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            line = pipe.read().decode(errors="replace").strip()
        os.waitpid(pid, 0)  # the intermediate child exits at once
        if line == "ok" or line.startswith("ok "):
            if line[3:]:
                print(f"bento mount: warning: {line[3:]}", file=sys.stderr)
            return 0
        if line.startswith("error "):
            _, code, message = line.split(" ", 2)
            raise UserError(message, int(code))
        raise UserError(f"the mount daemon exited before the mount was ready; see {log_path}")
    # first child: detach from the terminal's session, then fork again so the daemon
    # is not a session leader and can never acquire a terminal
    os.close(r)
    os.setsid()
    if os.fork():
        os._exit(0)
    _detach_stdio(log_path)
    faulthandler.enable()
    told = False

    def ready(error: str | None, code: int = 1, warning: str | None = None) -> None:
        nonlocal told
        if told:
            return
        told = True
        answer = f"error {code} {error}" if error is not None else f"ok {warning or ''}"
        os.write(w, answer.strip().replace("\n", " ").encode() + b"\n")
        os.close(w)

    status = 1
    try:
        status = work(ready)
    except BaseException as e:  # report, then let the log keep the traceback
        ready(f"{type(e).__name__}: {e}", 1)
        import traceback

        traceback.print_exc()
    finally:
        logging.getLogger("bento.daemon").info("daemon %d stops, exit status %d",
                                               os.getpid(), status)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _detach_stdio(log_path: str) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    open_daemon_log(log_path)
    os.chdir("/")
