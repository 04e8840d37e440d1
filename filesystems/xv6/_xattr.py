"""Extended attributes: all of an inode's, packed into one journaled block.

Block layout: magic ``b"XATR"``, u32 count, then per attribute ``name_len u8, 0 u8,
value_len u16, name, value``. One block bounds an inode's attributes to about 4 KiB
in total, as ext4 without its EA inodes; a set that would not fit gets ENOSPC.
"""

from __future__ import annotations

import errno
import struct

from typing import TYPE_CHECKING

import numpy as np

from bento_user.api import FsError, corrupt

from ._bmap import NoSpace
from ._format import BLOCK_SIZE

if TYPE_CHECKING:
    from bento_user.ks_emul import Handle, KernelServices

    from ._bmap import BlockMap
    from ._inode import Inode

MAGIC = b"XATR"
_HEAD = struct.Struct("<4sI")
_ENTRY = struct.Struct("<BBH")
NAMESPACES = (b"user.", b"trusted.", b"security.")


def decode(data: bytes, ino: int) -> dict[bytes, bytes]:
    magic, count = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise corrupt(f"inode {ino}: extended-attribute block has no XATR magic")
    out: dict[bytes, bytes] = {}
    off = _HEAD.size
    for _ in range(count):
        if off + _ENTRY.size > BLOCK_SIZE:
            raise corrupt(f"inode {ino}: extended-attribute block overruns")
        nlen, _, vlen = _ENTRY.unpack_from(data, off)
        off += _ENTRY.size
        if off + nlen + vlen > BLOCK_SIZE or nlen == 0:
            raise corrupt(f"inode {ino}: extended-attribute entry overruns")
        out[data[off:off + nlen]] = data[off + nlen:off + nlen + vlen]
        off += nlen + vlen
    return out


def encode(attrs: dict[bytes, bytes]) -> bytes:
    parts = [_HEAD.pack(MAGIC, len(attrs))]
    for name, value in attrs.items():
        parts += [_ENTRY.pack(len(name), 0, len(value)), name, value]
    raw = b"".join(parts)
    if len(raw) > BLOCK_SIZE:
        raise FsError(errno.ENOSPC, "no room for more extended attributes on this inode")
    return raw + bytes(BLOCK_SIZE - len(raw))


def check_name(name: bytes) -> None:
    """Linux's rules: a known namespace prefix, at most 255 bytes."""
    if not name or len(name) > 255:
        raise FsError(errno.ERANGE if name else errno.EINVAL)
    if name in NAMESPACES:
        raise FsError(errno.EINVAL)  # a namespace with no name in it (Linux: EINVAL)
    if not name.startswith(NAMESPACES):
        raise FsError(errno.EOPNOTSUPP)


def load(ks: KernelServices, bmap: BlockMap, ip: Inode) -> dict[bytes, bytes]:
    """The inode's attributes, parsed once and kept in ``ip.xattrs``."""
    if ip.xattrs is None:
        if not ip.xattr_block:
            ip.xattrs = {}
        else:
            with ks.bread(bmap.check(ip, ip.xattr_block)) as bh:
                ip.xattrs = decode(bh.data.tobytes(), ip.ino)
    return ip.xattrs


def save(ks: KernelServices, bmap: BlockMap, h: Handle, ip: Inode,
         attrs: dict[bytes, bytes]) -> None:
    """Make ``attrs`` the inode's attributes, inside ``h``: the block is written,
    made or freed; the caller stores the inode."""
    raw = encode(attrs) if attrs else b""
    if not attrs:
        if ip.xattr_block:
            bmap.free(h, ip, ip.xattr_block, metadata=True)
            ip.xattr_block = 0
    else:
        if not ip.xattr_block:
            try:
                ip.xattr_block = bmap.new_block(h, ip, bmap.goal(ip))
            except NoSpace:
                raise FsError(errno.ENOSPC) from None
            bh = ks.getblk(ip.xattr_block)
        else:
            bh = ks.bread(ip.xattr_block)
        with bh:
            h.get_write_access(bh)
            bh.data[:] = np.frombuffer(raw, np.uint8)
            h.dirty_metadata(bh)
    ip.xattrs = attrs
