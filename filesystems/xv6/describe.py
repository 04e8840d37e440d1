"""What ``bento inspect`` shows of an xv6 image in xv6's own terms: the superblock, as
dumpe2fs shows ext4's header, and the journal's log. Both read the device as it is,
corrupt or not: a field that fails its check is shown, and said so, so a person can
see how far the image still makes sense."""

from __future__ import annotations

import errno
import time
import uuid as uuid_module

import numpy as np

from bento_user.api import FsError
from bento_user.blockdev import BlockDevice
from bento_user.ks_emul import BufferCache, JournalCorruptError, LogContents, read_log

from ._format import (
    JOURNAL_START,
    STATE_CLEAN,
    STATE_MOUNTED,
    SUPERBLOCK,
    read_errors,
    read_geometry,
    superblock_view,
)

VIEWS = ("super", "journal")


def describe(device: BlockDevice, view: str) -> str:
    if view == "super":
        return superblock(device)
    if view == "journal":
        return journal(device)
    raise FsError(errno.ENOENT, f"xv6 offers no {view!r} view ({', '.join(VIEWS)})")


def superblock(device: BlockDevice) -> str:
    block = np.frombuffer(device.read_block(SUPERBLOCK), np.uint8).copy()
    sb = superblock_view(block)
    try:
        read_geometry(block.copy(), device.nblocks, device.name)
        verdict = "valid"
    except FsError as e:
        verdict = f"NOT VALID: {e.strerror}"
    state = {STATE_CLEAN: "clean", STATE_MOUNTED: "mounted (or not unmounted cleanly)"}
    errors = read_errors(block)
    rows = [
        ("superblock", verdict),
        ("magic", bytes(sb["magic"]).decode(errors="replace")),
        ("version", int(sb["version"])),
        ("uuid", str(uuid_module.UUID(bytes=bytes(sb["uuid"])))),
        ("block size", int(sb["block_size"])),
        ("blocks", f"{int(sb['nblocks']):,} (the device has {device.nblocks:,})"),
        ("inodes", f"{int(sb['ninodes']):,}"),
        ("journal area", _area(sb, "journal_start", "journal_blocks")),
        ("inode table", _area(sb, "inode_start", "inode_blocks")),
        ("inode bitmap", _area(sb, "ibitmap_start", "ibitmap_blocks")),
        ("block bitmap", _area(sb, "bbitmap_start", "bbitmap_blocks")),
        ("data from block", int(sb["data_start"])),
        ("features", f"compat {int(sb['features_compat']):#x}, incompat "
                     f"{int(sb['features_incompat']):#x}, "
                     f"ro_compat {int(sb['features_ro_compat']):#x}"),
        ("root inode", int(sb["root_ino"])),
        ("orphan list head", int(sb["orphan_head"]) or "none"),
        ("hidden inode", int(sb["hidden_ino"]) or "none"),
        ("state", state.get(int(sb["state"]), f"unknown ({int(sb['state'])})")),
        ("created", _when(int(sb["mkfs_time_ns"]))),
        ("last mounted", _when(int(sb["mount_time_ns"]))),
        ("mount count", int(sb["mount_count"])),
        ("errors", errors.summary() if errors else "none recorded"),
        ("journal", _journal_position(device)),
    ]
    return "\n".join(f"{name}: {value}" for name, value in rows)


def _log(device: BlockDevice) -> LogContents | str:
    """The journal's log, as the superblock places it, or why it cannot be read."""
    sb = superblock_view(np.frombuffer(device.read_block(SUPERBLOCK), np.uint8))
    try:
        return read_log(BufferCache(device, capacity=16), JOURNAL_START,
                        int(sb["journal_blocks"]), bytes(sb["uuid"]))
    except (JournalCorruptError, ValueError) as e:
        return f"cannot be read: {e}"


def journal(device: BlockDevice) -> str:
    log = _log(device)
    if isinstance(log, str):
        return f"journal: {log}"
    j = log.superblock
    lines = [f"journal: blocks {JOURNAL_START}-{JOURNAL_START + j.maxlen - 1}, "
             f"next transaction {j.sequence}"
             + (f", log from position {j.start}" if j.start else ", log empty")]
    for tid, blocks, revoked in log.transactions:
        shown = ", ".join(map(str, blocks[:12])) + (", ..." if len(blocks) > 12 else "")
        lines.append(f"transaction {tid}: {len(blocks)} blocks ({shown})"
                     + (f", {len(revoked)} revoked" if revoked else ""))
    lines.append(f"scan: {log.stop_reason}")
    return "\n".join(lines)


def _journal_position(device: BlockDevice) -> str:
    log = _log(device)
    if isinstance(log, str):
        return log
    j = log.superblock
    if not log.transactions:
        return f"nothing to replay, next transaction {j.sequence}"
    return (f"{len(log.transactions)} committed transactions to replay from log position "
            f"{j.start} (bento inspect journal lists them)")


def _area(sb: np.void, start: str, count: str) -> str:
    first, n = int(sb[start]), int(sb[count])
    return f"blocks {first}-{first + n - 1} ({n:,})" if n else "none"


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9)) if ns else "never"
