"""``mount.fuse.bento``: what ``mount -t fuse.bento IMAGE DIR -o OPTS`` (and an fstab
line of type ``fuse.bento``) runs, following mount(8)'s helper convention:
``mount.fuse.bento SOURCE TARGET [-sfnv] [-o OPTIONS] [-t TYPE]``.

``fs=NAME`` among the options picks the file system (default xv6); the rest go to
``bento mount -o``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any



def remount(target: str, options: list[str]) -> int:
    """``mount -o remount,OPTS TARGET``: bento's own options go to the daemon (``ro``
    commits and then refuses changes, ``rw`` takes changes again, ``commit=S``), and
    the kernel's flags are changed as mount(8) would without a helper (``mount -i``).
    Other options (an fstab line's ``cache_mib=`` ...) are fixed while mounted."""
    from ..runtime import control
    from .mount import KERNEL, TIMES

    request: dict[str, Any] = {}
    kernel = []
    for opt in options:
        name, _, value = opt.partition("=")
        if name in ("ro", "rw"):
            request["read_only"] = name == "ro"
            kernel.append(name)
        elif name == "commit":
            try:
                request["commit"] = float(value)
            except ValueError:
                print(f"mount.fuse.bento: {target}: commit= needs seconds", file=sys.stderr)
                return 2
        elif name in KERNEL | TIMES:
            kernel.append(name)
    try:
        control.call(target, "remount", **request)
    except OSError as e:
        print(f"mount.fuse.bento: {target}: cannot remount: {e.strerror}", file=sys.stderr)
        return 32  # mount(8)'s "mount failure"
    done = subprocess.run(["mount", "-i", "-o", ",".join(["remount", *kernel]), target],
                          env={**os.environ, "LC_ALL": "C"})
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mount.fuse.bento")
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("-o", dest="options", default="")
    p.add_argument("-t", dest="type", default="fuse.bento")
    for flag in ("-s", "-f", "-n", "-v"):  # sloppy, fake, no mtab, verbose: nothing to do
        p.add_argument(flag, action="store_true")
    args = p.parse_args(argv)
    fs = "xv6"
    rest = []
    for opt in filter(None, args.options.split(",")):
        if opt.startswith("fs="):
            fs = opt[3:]
        else:
            rest.append(opt)
    if args.f:
        return 0
    if "remount" in rest:
        return remount(args.target, [o for o in rest if o != "remount"])
    command = ["mount", args.source, args.target, "--fs", fs]
    if rest:
        command += ["-o", ",".join(rest)]
    from . import main as bento_main

    return bento_main(command)


if __name__ == "__main__":
    sys.exit(main())
