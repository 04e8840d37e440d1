"""``bento mkfs IMAGE``: make a file system in an image file or on a block device.

The file system does the formatting (``Filesystem.mkfs``); this command owns what is
the same for all of them: creating and sizing the image, refusing without --force to
overwrite a file system already there (ext2/3/4, xfs or any installed one) or a file
that holds data, and leaving no new file behind when the format fails.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import stat

import numpy as np

from ..api import Filesystem, FsError
from ..blockdev import ImageDevice
from ..runtime.loader import LoadError, load_filesystem_class, registered
from ._errors import UserError
from ._fs import add_fs_argument, filesystem_class
from ._progress import Progress

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'1G', '512M', '4096' -> bytes (binary units, an optional 'iB'/'B')."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 64M or 1G)")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def parse_option(text: str) -> tuple[str, int]:
    """'journal_blocks=512' -> ('journal_blocks', 512)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"not NAME=NUMBER: {text!r}")
    return name, int(value)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mkfs", help="make a file system")
    p.add_argument("image", help="image file (created if missing) or block device")
    add_fs_argument(p)
    p.add_argument("--size", type=parse_size, help="image size, e.g. 1G (required for a new file)")
    p.add_argument("--inodes", type=int, help="xv6: number of inodes (default: one per 16 KiB)")
    p.add_argument("--journal-blocks", type=int, help="xv6: journal size in 4 KiB blocks")
    p.add_argument("-O", dest="options", type=parse_option, action="append", default=[],
                   metavar="NAME=N", help="an option of the file system's own mkfs")
    p.add_argument("--force", action="store_true", help="overwrite an existing file system")
    p.set_defaults(run=run)


def existing_signature(device: ImageDevice) -> str | None:
    """The kind of file system already on ``device``, if one is recognisable: the
    kernel's common ones, or any installed bento file system."""
    if device.nblocks < 2:
        return None
    first = device.read_block(0) + device.read_block(1)
    if first[1080:1082] == b"\x53\xef":
        return "ext2/3/4"
    if first[:4] == b"XFSB":
        return "xfs"
    for spec in registered().values():
        try:
            found = load_filesystem_class(spec).identify(device)
        except (LoadError, OSError, ValueError):
            continue
        if found:
            return found
    return None


def run(args: argparse.Namespace) -> int:
    cls = filesystem_class(args.fs)
    options = dict(args.options)
    options.update({k: v for k, v in (("inodes", args.inodes),
                                      ("journal_blocks", args.journal_blocks)) if v is not None})
    path = args.image
    exists = os.path.exists(path)
    is_block = exists and stat.S_ISBLK(os.stat(path).st_mode)
    if not exists and args.size is None:
        raise UserError(f"{path} does not exist; give --size to create it", 2)
    if args.size is not None and args.size < (1 << 20):
        raise UserError(f"--size {args.size}: less than 1 MiB holds no file system", 2)
    if exists and not is_block and not os.path.isfile(path):
        raise UserError(f"{path}: not a regular file or block device", 2)
    if is_block and args.size is not None:
        raise UserError("--size cannot be used with a block device (it has its own size)", 2)
    if exists:
        with ImageDevice(path, read_only=True, direct_io=False) as probe:
            found = existing_signature(probe) if probe.nblocks else None
        if found and not args.force:
            raise UserError(f"{path} already holds a{'n' if found[0] in 'aeiox' else ''} {found} "
                            "file system; use --force to overwrite it", 1)
        if not found and not args.force and holds_data(path, is_block):
            raise UserError(f"{path} holds data but no file system I know; use --force to "
                            "format it", 1)
    try:
        if args.size is not None:
            with open(path, "ab") as f:
                f.truncate(args.size // 4096 * 4096)
        print(f"{path}: {format_image(cls, path, options)}")
    except BaseException:
        if not exists:  # ours alone: a failed format leaves nothing behind
            os.unlink(path)
        raise
    return 0


def holds_data(path: str, is_block: bool) -> bool:
    """Whether any byte is not zero: in the data extents of a file (holes are empty),
    in the first MiB of a block device (partition tables, other signatures)."""
    with open(path, "rb") as f:
        if is_block:
            return any(f.read(1 << 20))
        end, pos = os.fstat(f.fileno()).st_size, 0
        while pos < end:
            try:
                pos = os.lseek(f.fileno(), pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:  # only holes from here
                    return False
                raise
            f.seek(pos)
            chunk = f.read(1 << 20)
            if not chunk:
                return False
            if np.frombuffer(chunk, np.uint8).any():
                return True
            pos += len(chunk)
    return False


def format_image(cls: type[Filesystem], path: str, options: dict[str, int]) -> str:
    progress = Progress()
    finished = False
    try:
        with ImageDevice(path) as dev:
            label = cls.mkfs(dev, progress, **options)
        finished = True
        return label
    except FsError as e:
        if e.errno == errno.ENOSYS:
            raise UserError(f"{cls.name} has no mkfs", 2) from None
        raise UserError(f"{path}: {e.strerror}", 2) from None
    finally:
        progress.done(finished)
