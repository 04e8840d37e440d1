"""``bento mkfs IMAGE``: make an xv6 v2 file system in an image file or on a block device."""

from __future__ import annotations

import argparse
import os
import re
import stat

from filesystems.xv6.fsck import geometry
from filesystems.xv6.mkfs import existing_signature, mkfs

from ..blockdev import ImageDevice
from ._errors import UserError
from ._progress import Progress

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'1G', '512M', '4096' -> bytes (binary units, an optional 'iB'/'B')."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 64M or 1G)")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mkfs", help="make an xv6 file system")
    p.add_argument("image", help="image file (created if missing) or block device")
    p.add_argument("--size", type=parse_size, help="image size, e.g. 1G (required for a new file)")
    p.add_argument("--inodes", type=int, help="number of inodes (default: one per 16 KiB)")
    p.add_argument("--journal-blocks", type=int, help="journal size in 4 KiB blocks")
    p.add_argument("--force", action="store_true", help="overwrite an existing file system")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = args.image
    exists = os.path.exists(path)
    is_block = exists and stat.S_ISBLK(os.stat(path).st_mode)
    if not exists and args.size is None:
        raise UserError(f"{path} does not exist; give --size to create it", 2)
    if args.size is not None and args.size < (1 << 20):
        raise UserError(f"--size {args.size}: too small (at least 1M)", 2)
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
    if args.size is not None:
        with open(path, "ab") as f:
            f.truncate(args.size // 4096 * 4096)
    progress = Progress()
    try:
        with ImageDevice(path) as dev:
            geo = mkfs(dev, ninodes=args.inodes, journal_blocks=args.journal_blocks,
                       progress=lambda f: progress("writing inode table", f))
    except ValueError as e:
        raise UserError(f"{path}: {e}", 2) from None
    progress.done()
    with ImageDevice(path, read_only=True) as dev:
        geo = geometry(dev)
    print(f"{path}: xv6 v2, {geo.nblocks} blocks of 4 KiB ({geo.nblocks * 4096 / 2**20:.0f} MiB), "
          f"{geo.ninodes - 1} inodes, {geo.journal_blocks}-block journal, "
          f"{geo.nblocks - geo.data_start} data blocks")
    return 0
