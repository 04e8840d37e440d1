"""``bento debug MOUNTPOINT [--on OPERATION]``: stop the next request of a running
mount in pdb, here in this terminal; ``q`` detaches and the mount carries on."""

from __future__ import annotations

import argparse
import sys
import threading

from ..runtime import control
from ._errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("debug", help="stop the next request of a mount in pdb")
    p.add_argument("mountpoint")
    p.add_argument("--on", metavar="OPERATION",
                   help="only a request of this kind (lookup, write, rename, ...)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        sock = control.connect(args.mountpoint, timeout=None)
    except control.NotMounted as e:
        raise UserError(str(e.strerror)) from None
    with sock:
        answer = control.send(sock, {"cmd": "debug", "on": args.on})
        if not answer.get("ok"):
            raise UserError(answer.get("error", "failed"))
        print(f"waiting for the next {args.on or 'request'} on {args.mountpoint} "
              f"(daemon {answer['pid']})...", file=sys.stderr, flush=True)

        def pump_input() -> None:
            for line in sys.stdin:
                try:
                    sock.sendall(line.encode())
                except OSError:
                    return
            try:
                sock.sendall(b"q\n")
            except OSError:
                pass

        threading.Thread(target=pump_input, daemon=True).start()
        out = sys.stdout.buffer
        while chunk := sock.recv(65536):
            out.write(chunk)
            out.flush()
    print("debugger detached; the mount carries on", file=sys.stderr)
    return 0
