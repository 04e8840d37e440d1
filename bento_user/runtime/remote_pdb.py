"""pdb over a socket, for ``bento debug``: stop one request of a daemonised mount in
the terminal of whoever asked.

The debugger runs on the mount's trio thread, inside the request, so the whole mount
waits while the user looks around — as a kernel debugger stops the kernel. Quitting
(``q``, or closing the terminal) detaches instead of aborting: the request finishes
normally and the mount carries on.
"""

from __future__ import annotations

import os
import pdb
import socket
from collections.abc import Callable
from typing import Any


class SocketPdb(pdb.Pdb):
    def __init__(self, stream: Any) -> None:
        super().__init__(stdin=stream, stdout=stream, nosigint=True, readrc=False)
        self.prompt = "(bento-pdb) "

    def do_quit(self, arg: str) -> bool:
        """q(uit): detach; the request runs to its end and the mount carries on."""
        self.clear_all_breaks()
        self.set_continue()
        return True

    do_q = do_exit = do_quit

    def do_EOF(self, arg: str) -> bool:
        self.message("")
        return self.do_quit(arg)


def debug_call(conn_fd: int, op: str, method: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Run ``method(*args)`` under a debugger talking over the socket ``conn_fd``,
    stopped at the method's first line."""
    sock = socket.socket(fileno=os.dup(conn_fd))
    sock.setblocking(True)
    stream = _Stream(sock)
    try:
        stream.write(f"stopped in {op}{_describe(args)}; 'q' detaches, the request "
                     "then completes\n")
        return SocketPdb(stream).runcall(method, *args)
    finally:
        stream.close()
        sock.close()


class _Stream:
    """A text stream over the socket that never raises: an error raised inside the
    debugger would surface in the file-system code being traced, so a vanished
    client reads as end of input (detach) and writes to it are dropped."""

    def __init__(self, sock: socket.socket) -> None:
        # Two files: a text file open for both discards what it has read ahead
        # whenever it is written to, which would lose typed-ahead commands.
        self._in = sock.makefile("r", encoding="utf-8", errors="replace", newline="\n")
        self._out = sock.makefile("w", encoding="utf-8", errors="replace", newline="\n")
        self._broken = False

    def readline(self) -> str:
        self.flush()
        if self._broken:
            return ""
        try:
            return self._in.readline()
        except (OSError, ValueError):
            self._broken = True
            return ""

    def write(self, text: str) -> int:
        if not self._broken:
            try:
                self._out.write(text)
            except (OSError, ValueError):
                self._broken = True
        return len(text)

    def flush(self) -> None:
        if not self._broken:
            try:
                self._out.flush()
            except (OSError, ValueError):
                self._broken = True

    def close(self) -> None:
        self.flush()
        for f in (self._in, self._out):
            try:
                f.close()
            except OSError:
                pass


def _describe(args: tuple[Any, ...]) -> str:
    shown = [f"<{len(a)} bytes>" if isinstance(a, (bytes, memoryview)) and len(a) > 64
             else repr(a) for a in args]
    return "(" + ", ".join(shown) + ")"
