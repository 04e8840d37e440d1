"""The control socket of a mount: how ``bento stat``, ``sync``, ``debug`` and
``umount`` talk to a running daemon.

One Unix stream socket per mount, in a directory only its owner can enter, named
after the mount point; the peer's uid (SO_PEERCRED) must be the daemon's or root's.
Requests and answers are single JSON lines: ``{"cmd": "stats"}`` ->
``{"ok": true, ...}`` or ``{"ok": false, "error": "one line"}``. ``debug`` is the
exception: after its answer the connection carries an interactive pdb session.

The server runs on the mount's trio loop, between FUSE requests, so a command sees
the file system in a quiet state without any lock.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the server runs in the daemon; clients (bento umount, stat) need no trio
    import trio

    Handler = Callable[[dict[str, Any], trio.socket.SocketType], Awaitable[dict[str, Any] | None]]

MAX_LINE = 1 << 20


def control_dir(uid: int | None = None) -> str:
    uid = os.getuid() if uid is None else uid
    if uid == 0:
        return "/run/bento"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "bento") if runtime else f"/tmp/bento-{uid}"


def socket_name(mountpoint: str) -> str:
    key = hashlib.sha256(os.path.realpath(mountpoint).encode()).hexdigest()[:20]
    return f"{key}.sock"


def socket_path(mountpoint: str, uid: int | None = None) -> str:
    return os.path.join(control_dir(uid), socket_name(mountpoint))


def find_socket(mountpoint: str) -> str | None:
    """The control socket of the mount at ``mountpoint``, whoever owns it (root can
    reach every user's)."""
    name = socket_name(mountpoint)
    candidates = [os.path.join(control_dir(), name), os.path.join("/run/bento", name)]
    candidates += glob.glob(f"/tmp/bento-*/{name}") + glob.glob(f"/run/user/*/bento/{name}")
    for path in candidates:
        if os.path.exists(path):
            return path
    return None


def bind(mountpoint: str) -> socket.socket:
    """Create the listening socket (before mounting, so a failure is reported cleanly)."""
    directory = control_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    path = socket_path(mountpoint)
    if os.path.exists(path):
        try:
            with connect_path(path, timeout=1.0):
                raise OSError(errno.EBUSY, f"{mountpoint}: a bento daemon already serves it")
        except (ConnectionRefusedError, FileNotFoundError, socket.timeout):
            os.unlink(path)  # left by a daemon that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(16)
    return sock


def peer_uid(sock: socket.socket | trio.socket.SocketType) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class ControlServer:
    """Serves ``handlers[cmd](request, connection)`` to authorised peers."""

    def __init__(self, listener: socket.socket, handlers: dict[str, Handler]) -> None:
        import trio

        self.listener = trio.socket.from_stdlib_socket(listener)
        self.path = listener.getsockname()
        self.handlers = handlers
        self.owner = os.getuid()

    async def serve(self) -> None:
        import trio

        async with trio.open_nursery() as nursery:
            try:
                while True:
                    conn, _ = await self.listener.accept()
                    nursery.start_soon(self._serve_one, conn)
            finally:
                self.listener.close()
                try:
                    os.unlink(self.path)
                except OSError:
                    pass

    async def _serve_one(self, conn: trio.socket.SocketType) -> None:
        import trio

        with conn:
            try:
                uid = peer_uid(conn)
                if uid not in (0, self.owner):
                    await send_answer(conn, {"ok": False, "error": f"permission denied: uid {uid} "
                                       f"does not own this mount"})
                    return
                request = json.loads(await _recv_line(conn))
                handler = self.handlers.get(request.get("cmd"))
                if handler is None:
                    await send_answer(conn, {"ok": False,
                                       "error": f"unknown command {request.get('cmd')!r}"})
                    return
                answer = await handler(request, conn)
                if answer is not None:  # None: the handler used the connection itself
                    await send_answer(conn, answer)
            except (OSError, ValueError, trio.BrokenResourceError):
                pass  # the client went away or spoke nonsense; nothing to answer


async def _recv_line(conn: trio.socket.SocketType) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise ValueError("request too long")
    return data


async def send_answer(conn: trio.socket.SocketType, answer: dict[str, Any]) -> None:
    data = (json.dumps(answer) + "\n").encode()
    while data:
        n = await conn.send(data)
        data = data[n:]


# -- the client side (blocking; used by the CLI) ------------------------------------


class NotMounted(OSError):
    pass


class DaemonDied(NotMounted):
    """The mount's control socket is there, its daemon is not. ``mount_left``: the
    kernel mount outlived it (no auto_unmount: a root mount with dev or suid)."""

    def __init__(self, mountpoint: str, path: str) -> None:
        self.mount_left = kernel_mount_left(mountpoint)
        self.socket = path
        what = (f"its kernel mount is left (bento umount {mountpoint} cleans it up)"
                if self.mount_left else "the kernel mount was cleaned up")
        super().__init__(errno.ENOENT, f"{mountpoint}: the daemon died; {what}")


def kernel_mount_left(mountpoint: str) -> bool:
    """Whether the kernel still has a bento mount at ``mountpoint`` (a dead daemon's
    mount answers ENOTCONN, so ask /proc rather than the path)."""
    want = os.fsencode(os.path.realpath(mountpoint))
    try:
        with open("/proc/self/mounts", "rb") as f:
            for line in f:
                fields = line.split()
                where = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]),
                               fields[1])  # "\040" for a space
                if where == want and fields[2] == b"fuse.bento":
                    return True
    except OSError:
        pass
    return False


def connect_path(path: str, timeout: float | None = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def connect(mountpoint: str, timeout: float | None = 10.0) -> socket.socket:
    path = find_socket(mountpoint)
    if path is None:
        raise NotMounted(errno.ENOENT, f"{mountpoint}: no bento mount here")
    try:
        return connect_path(path, timeout)
    except (ConnectionRefusedError, FileNotFoundError):
        raise DaemonDied(mountpoint, path) from None
    except PermissionError:
        raise PermissionError(errno.EACCES, f"{mountpoint}: permission denied "
                                            "(only the mount's owner or root)") from None


def send(sock: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
    try:
        sock.sendall((json.dumps(request) + "\n").encode())
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused before reading (a stranger's uid): its answer says why
    chunks: list[bytes] = []  # answers can be megabytes (a provenance log): no += copies
    while not chunks or not chunks[-1].endswith(b"\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    if not chunks:
        raise OSError(errno.ECONNRESET, "the daemon closed the connection without answering")
    return json.loads(b"".join(chunks))


def call(mountpoint: str, cmd: str, timeout: float | None = 60.0, **args: Any) -> dict[str, Any]:
    """One request, one answer; raises OSError with the daemon's reason on failure."""
    with connect(mountpoint, timeout) as sock:
        answer = send(sock, {"cmd": cmd, **args})
    if not answer.get("ok"):
        raise OSError(errno.EIO, answer.get("error", "failed"))
    return answer
