"""``mount.fuse.bento``: what ``mount -t fuse.bento IMAGE DIR -o OPTS`` (and an fstab
line of type ``fuse.bento``) runs, following mount(8)'s helper convention:
``mount.fuse.bento SOURCE TARGET [-sfnv] [-o OPTIONS] [-t TYPE]``.

``fs=NAME`` among the options picks the file system (default xv6); the rest go to
``bento mount -o``.
"""

from __future__ import annotations

import argparse
import sys



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
    command = ["mount", args.source, args.target, "--fs", fs]
    if rest:
        command += ["-o", ",".join(rest)]
    from . import main as bento_main

    return bento_main(command)


if __name__ == "__main__":
    sys.exit(main())
