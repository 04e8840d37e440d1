"""``bento umount MOUNTPOINT``: unmount and wait until the daemon has committed,
flushed and exited, so the image is consistent and free when the command returns."""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import subprocess
import sys

from ..runtime import control
from ._errors import UserError

EXIT_BUSY = 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("umount", help="unmount and wait for the daemon to finish")
    p.add_argument("mountpoint")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds to wait for the daemon (default 300)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    mountpoint = os.path.abspath(args.mountpoint)
    try:
        pid = int(control.call(mountpoint, "status", timeout=10.0)["pid"])
    except control.DaemonDied as e:
        if not e.mount_left:
            raise UserError(str(e.strerror)) from None
        return _clean_up_after(mountpoint, e.socket)
    except control.NotMounted as e:
        raise UserError(str(e.strerror)) from None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None
    done = subprocess.run(["fusermount3", "-u", mountpoint], capture_output=True, text=True)
    if done.returncode:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        busy = "busy" in reason.lower()
        raise UserError(f"{mountpoint}: cannot unmount: "
                        f"{'busy (files open or a process inside)' if busy else reason}",
                        EXIT_BUSY if busy else 1)
    if pidfd is not None:
        try:
            if not select.select([pidfd], [], [], args.timeout)[0]:
                raise UserError(f"{mountpoint}: unmounted, but daemon {pid} is still "
                                f"writing back after {args.timeout:.0f} s")
        finally:
            os.close(pidfd)
    return 0


def _clean_up_after(mountpoint: str, socket: str) -> int:
    """A dead daemon left its kernel mount (ENOTCONN to every program): unmount it
    lazily and drop the daemon's socket, so the mount point and image are free."""
    done = subprocess.run(["fusermount3", "-u", "-z", mountpoint], capture_output=True, text=True)
    if done.returncode and control.kernel_mount_left(mountpoint):
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        raise UserError(f"{mountpoint}: the daemon died, and its kernel mount could not be "
                        f"unmounted: {reason}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket)
    print(f"bento umount: {mountpoint}: the daemon had died; its kernel mount is unmounted now",
          file=sys.stderr)
    return 0
