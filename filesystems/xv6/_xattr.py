"""Extended attributes: all of an inode's, packed into one stream of journaled blocks.

The stream: magic ``b"XATR"``, u32 count, then per attribute ``name_len u8,
value_high u8, value_len u16, name, value`` (a value's length is ``value_high << 16 |
value_len``: Linux allows 64 KiB, one more than a u16 holds). Where the stream lives:

- up to one block, in ``xattr_block`` itself — the common case (a few small
  attributes, ACLs) costs one block and one read, as it always did;
- longer, in ``xattr_block``'s *index* block: magic ``b"XATI"``, u32 stream length,
  u32 block count, then that many u32 block numbers holding the stream in order.

So names and values are bounded by free space and the journal, not by one block, up
to Linux's own limits: 64 KiB a value (XATTR_SIZE_MAX) and 64 KiB for the list of
names (XATTR_LIST_MAX). A change whose blocks one transaction cannot hold gets ENOSPC.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from bento_user.api import FsError, acl, corrupt

from ._bmap import NoSpace
from ._format import BLOCK_SIZE

if TYPE_CHECKING:
    from bento_user.ks_emul import Handle, KernelServices

    from ._bmap import BlockMap
    from ._inode import Inode

MAGIC = b"XATR"
INDEX_MAGIC = b"XATI"
_HEAD = struct.Struct("<4sI")
_ENTRY = struct.Struct("<BBH")
_INDEX = struct.Struct("<4sII")
MAX_BLOCKS = (BLOCK_SIZE - _INDEX.size) // 4   # stream blocks one index names
SIZE_MAX = 65536                               # XATTR_SIZE_MAX: one value
LIST_MAX = 65536                               # XATTR_LIST_MAX: the names, NUL-ended
NAMESPACES = (b"user.", b"trusted.", b"security.")


def decode(data: bytes, ino: int) -> dict[bytes, bytes]:
    """The attributes in a stream (one block, or an index's blocks joined)."""
    magic, count = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise corrupt(f"inode {ino}: extended-attribute block has no XATR magic")
    out: dict[bytes, bytes] = {}
    off = _HEAD.size
    for _ in range(count):
        if off + _ENTRY.size > len(data):
            raise corrupt(f"inode {ino}: extended attributes overrun their blocks")
        nlen, vhigh, vlen = _ENTRY.unpack_from(data, off)
        vlen |= vhigh << 16
        off += _ENTRY.size
        if off + nlen + vlen > len(data) or nlen == 0 or vlen > SIZE_MAX:
            raise corrupt(f"inode {ino}: extended-attribute entry overruns")
        out[data[off:off + nlen]] = data[off + nlen:off + nlen + vlen]
        off += nlen + vlen
    return out


def encode(attrs: dict[bytes, bytes]) -> bytes:
    if sum(len(name) + 1 for name in attrs) > LIST_MAX:
        raise FsError(errno.ENOSPC, "the names of this inode's extended attributes are "
                      "at Linux's limit (64 KiB)")
    parts = [_HEAD.pack(MAGIC, len(attrs))]
    for name, value in attrs.items():
        parts += [_ENTRY.pack(len(name), len(value) >> 16, len(value) & 0xFFFF), name, value]
    return b"".join(parts)


def stream_blocks(raw: bytes) -> int:
    """Blocks a stream of ``raw`` takes, its index included."""
    if len(raw) <= BLOCK_SIZE:
        return 1
    return 1 + -(-len(raw) // BLOCK_SIZE)


def check_name(name: bytes) -> None:
    """Linux's rules: a known namespace prefix, at most 255 bytes."""
    if not name or len(name) > 255:
        raise FsError(errno.ERANGE if name else errno.EINVAL)
    if name in acl.NAMES:  # system.* holds the ACLs and nothing else
        return
    if name in NAMESPACES:
        raise FsError(errno.EINVAL)  # a namespace with no name in it (Linux: EINVAL)
    if not name.startswith(NAMESPACES):
        raise FsError(errno.EOPNOTSUPP)


def layout(ks: KernelServices, bmap: BlockMap, ip: Inode) -> tuple[int, list[int], int]:
    """Where the inode's stream is: (index block or 0, stream blocks, stream length)."""
    if not ip.xattr_block:
        return 0, [], 0
    with ks.bread(bmap.check(ip, ip.xattr_block)) as bh:
        head = bh.data.tobytes()
    if head[:4] != INDEX_MAGIC:
        return 0, [ip.xattr_block], BLOCK_SIZE
    blocks, length = parse_index(head, ip.ino, lambda b: bmap.check(ip, b))
    return ip.xattr_block, blocks, length


def parse_index(head: bytes, ino: int, check: Callable[[int], int]) -> tuple[list[int], int]:
    """An index block's stream blocks and stream length, each block passed through
    ``check`` (which raises for one outside the data area)."""
    _, length, count = _INDEX.unpack_from(head, 0)
    if not BLOCK_SIZE < length <= count * BLOCK_SIZE or count > MAX_BLOCKS:
        raise corrupt(f"inode {ino}: extended-attribute index holds {count} blocks "
                      f"for {length} bytes")
    blocks = list(struct.unpack_from(f"<{count}I", head, _INDEX.size))
    return [check(b) for b in blocks], length


def load(ks: KernelServices, bmap: BlockMap, ip: Inode) -> dict[bytes, bytes]:
    """The inode's attributes, parsed once and kept in ``ip.xattrs``."""
    if ip.xattrs is None:
        _, blocks, length = layout(ks, bmap, ip)
        parts = []
        for b in blocks:
            with ks.bread(b) as bh:
                parts.append(bh.data.tobytes())
        ip.xattrs = decode(b"".join(parts)[:length], ip.ino) if blocks else {}
    return ip.xattrs


def save(ks: KernelServices, bmap: BlockMap, h: Handle, ip: Inode,
         attrs: dict[bytes, bytes], raw: bytes | None = None) -> None:
    """Make ``attrs`` (``raw``: already encoded) the inode's attributes, inside ``h``
    (with room for ``credits_for``'s blocks): blocks are reused, made or freed; the
    caller stores the inode. ENOSPC leaves everything as it was."""
    if raw is None:
        raw = encode(attrs) if attrs else b""
    index, old_stream, _ = layout(ks, bmap, ip)
    pool = old_stream + ([index] if index else [])   # blocks we hold: reuse first
    need = stream_blocks(raw) if raw else 0
    if need - 1 > MAX_BLOCKS:
        raise FsError(errno.ENOSPC, "this inode's extended attributes are past 4 MiB")
    fresh: list[int] = []
    try:
        while len(pool) + len(fresh) < need:
            fresh.append(bmap.new_block(h, ip, bmap.goal(ip)))
    except NoSpace:
        for b in fresh:
            bmap.free(h, ip, b, metadata=True)
        raise FsError(errno.ENOSPC) from None
    blocks = (pool + fresh)[:need]
    for b in pool[need:]:
        bmap.free(h, ip, b, metadata=True)
    if not raw:
        ip.xattr_block = 0
    elif need == 1:
        ip.xattr_block = blocks[0]
        _write(ks, h, blocks[0], raw, fresh)
    else:
        ip.xattr_block, stream = blocks[0], blocks[1:]
        head = _INDEX.pack(INDEX_MAGIC, len(raw), len(stream)) + struct.pack(
            f"<{len(stream)}I", *stream)
        _write(ks, h, ip.xattr_block, head, fresh)
        for i, b in enumerate(stream):
            _write(ks, h, b, raw[i * BLOCK_SIZE:(i + 1) * BLOCK_SIZE], fresh)
    ip.xattrs = attrs


def credits_for(ks: KernelServices, bmap: BlockMap, ip: Inode, raw: bytes) -> int:
    """Journal credits a ``save`` of the encoded attributes ``raw`` may use: every
    block it writes or frees, the bitmap blocks and the inode's block."""
    index, stream, _ = layout(ks, bmap, ip)
    return (stream_blocks(raw) if raw else 0) + len(stream) + bool(index) + 8


def credits_for_new(raw: bytes) -> int:
    """``credits_for`` an inode that has no attributes yet (0 when it gets none)."""
    return stream_blocks(raw) + 8 if raw else 0


def _write(ks: KernelServices, h: Handle, blockno: int, data: bytes, fresh: list[int]) -> None:
    """One block of the stream or index, through the journal, zero-padded."""
    with (ks.getblk(blockno) if blockno in fresh else ks.bread(blockno)) as bh:
        h.get_write_access(bh)
        bh.data[:] = 0
        bh.data[:len(data)] = np.frombuffer(data, np.uint8)
        h.dirty_metadata(bh)
