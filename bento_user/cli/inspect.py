"""``bento inspect IMAGE COMMAND [TARGET]``: read an unmounted image, changing nothing.

``ls``, ``stat``, ``cat`` and ``blocks`` go through the file system itself, opened on
a memory overlay of the image (its journal replayed there, as fsck does), so they
work for every file system. ``super`` and ``journal`` are the file system's own views
of the disk as it is (``Filesystem.describe``), which also read an image too damaged
to open. A command stopped by corruption says where, in one line, and exits 4.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..api import EXIT_ERRORS, EXIT_OPERATIONAL, ROOT_REQUEST, Attr, Filesystem, FsError, InodeNo
from ..blockdev import ImageDevice, OverlayDevice
from ..ks_emul import KernelServices
from ..runtime.direct import DirectRuntime, PathClient
from ..runtime.loader import instantiate
from ._errors import UserError
from ._fs import add_fs_argument, filesystem_class

VIEWS = ("super", "journal")                 # the file system's own, from the disk
COMMANDS = ("ls", "stat", "cat", "blocks", *VIEWS)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="read an unmounted image: ls, stat, cat, blocks, "
                       "super, journal")
    p.add_argument("image")
    add_fs_argument(p)
    p.add_argument("view", choices=COMMANDS, metavar="COMMAND",
                   help=", ".join(COMMANDS))
    p.add_argument("target", nargs="?", default="/",
                   help="a path in the image (stat also takes #INODE); default /")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cls = filesystem_class(args.fs, EXIT_OPERATIONAL)
    if args.view in VIEWS:
        print(_view(cls, args.image, args.view))
        return 0
    with _opened(cls, args.image) as (rt, client):
        try:
            if args.view == "ls":
                _ls(args.image, client, args.target)
            elif args.view == "stat":
                print(_stat_text(rt, client, args.target))
            elif args.view == "cat":
                sys.stdout.flush()
                sys.stdout.buffer.write(client.read_bytes(args.target))
            else:
                _blocks(rt, client, args.target)
        except BrokenPipeError:
            raise                    # the reader stopped early (| head): main's to end
        except OSError as e:
            raise _stopped(args.image, args.target, e) from None
    return 0


def _view(cls: type[Filesystem], image: str, view: str) -> str:
    try:
        with ImageDevice(image, read_only=True) as device:
            return cls.describe(device, view)
    except FsError as e:
        if e.errno in (errno.ENOSYS, errno.ENOENT):
            raise UserError(f"{cls.name} offers no {view!r} view"
                            + ("" if e.errno == errno.ENOSYS else f": {e.strerror}"), 1) from None
        raise UserError(f"{image}: {e.strerror}", EXIT_ERRORS) from None


@contextmanager
def _opened(cls: type[Filesystem], image: str) -> Iterator[tuple[DirectRuntime, PathClient]]:
    """The file system on a memory overlay of ``image``: whatever it writes (journal
    replay, orphans) stays in memory, and nothing is written back at the end."""
    ks = KernelServices(OverlayDevice(ImageDevice(image, read_only=True)), cache_blocks=4096,
                        commit_interval=None)
    try:
        try:
            rt = DirectRuntime(instantiate(cls), ks)
        except FsError as e:
            code = EXIT_ERRORS if e.errno == errno.EUCLEAN else EXIT_OPERATIONAL
            raise UserError(f"{image}: cannot open the file system: {e.strerror} "
                            f"(bento inspect {image} super may still read it)", code) from None
        rt.guard.record_errors = False                     # and the guard's lines are ours
        guard_log = logging.getLogger("bento.guard")
        level = guard_log.level
        guard_log.setLevel(logging.CRITICAL)
        try:
            yield rt, rt.client(ROOT_REQUEST)
        finally:
            guard_log.setLevel(level)
    finally:
        ks.discard()


def _stopped(image: str, target: str, e: OSError) -> UserError:
    """One line: where the command stopped and why (exit 4 for corruption)."""
    if e.errno == errno.EUCLEAN:
        return UserError(f"{image}: {target}: stopped: {e.strerror}", EXIT_ERRORS)
    return UserError(f"{image}: {target}: {e.strerror}", 1)


def _ls(image: str, client: PathClient, path: str) -> None:
    """One line an entry, as ``ls -lin`` prints it, in directory order; reading stops
    at an entry that cannot be read, naming it."""
    for name, ino, _ in client.scandir(path):
        if name in (b".", b".."):
            continue
        shown = os.fsdecode(name)
        entry = os.path.join(path, shown)
        try:
            attr = client.lstat(entry)
        except OSError as e:
            raise _stopped(image, entry, e) from None
        print(f"{ino:>8} {stat.filemode(attr.mode)} {attr.nlink:>3} {attr.uid:>5} {attr.gid:>5} "
              f"{attr.size:>12,} {_when(attr.mtime_ns)} {shown}")


def _attr(rt: DirectRuntime, client: PathClient, target: str) -> Attr:
    if target.startswith("#"):
        try:
            ino = int(target[1:])
        except ValueError:
            raise UserError(f"{target}: not an inode number (#12)", 2) from None
        try:
            return rt.call("lookup_inode", ROOT_REQUEST, InodeNo(ino))
        except FsError as e:
            raise OSError(e.errno, e.strerror) from None
    return client.lstat(target)


def _stat_text(rt: DirectRuntime, client: PathClient, target: str) -> str:
    a = _attr(rt, client, target)
    rows = [("inode", a.ino), ("type", _KINDS.get(stat.S_IFMT(a.mode), "unknown")),
            ("mode", f"{stat.S_IMODE(a.mode):04o} ({stat.filemode(a.mode)})"),
            ("links", a.nlink), ("uid", a.uid), ("gid", a.gid), ("size", a.size),
            ("blocks", f"{a.blocks} (512-byte units)"), ("generation", a.generation),
            ("access", _when(a.atime_ns)), ("modify", _when(a.mtime_ns)),
            ("change", _when(a.ctime_ns))]
    if stat.S_ISLNK(a.mode):
        rows.append(("target", os.fsdecode(rt.call("readlink", ROOT_REQUEST, a.ino))))
    return "\n".join(f"{k}: {v}" for k, v in rows)


def _blocks(rt: DirectRuntime, client: PathClient, target: str) -> None:
    """The block map as extents: logical run -> physical run."""
    a = _attr(rt, client, target)
    try:
        pairs = rt.fs.block_map(a.ino)
    except FsError as e:
        if e.errno == errno.ENOSYS:
            raise UserError(f"{rt.fs.name} offers no block map", 1) from None
        raise OSError(e.errno, e.strerror) from None
    extents: list[list[int]] = []            # [logical, physical, length]
    for lblk, pblk in pairs:
        last = extents[-1] if extents else None
        if last and lblk == last[0] + last[2] and pblk == last[1] + last[2]:
            last[2] += 1
        else:
            extents.append([lblk, pblk, 1])
    print(f"inode {a.ino}: {_count(len(pairs), 'block')} in {_count(len(extents), 'extent')}")
    for lblk, pblk, n in extents:
        print(f"  logical {lblk}-{lblk + n - 1} -> physical {pblk}-{pblk + n - 1} ({n})")


_KINDS = {stat.S_IFREG: "regular file", stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink",
          stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFIFO: "fifo",
          stat.S_IFSOCK: "socket"}


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9)) + f".{ns % 10**9:09d} UTC"
