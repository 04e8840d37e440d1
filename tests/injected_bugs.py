"""Deliberate bugs, to prove the fuzzers find bugs (bench/bug_catch.py, tests/fuzz).

Each is a monkeypatch applied at test time — never in the shipped code — through
``inject(name)``, a context manager. ``FUZZER`` says which fuzzer is meant to catch
it; the table in bench/RESULTS.md says which did.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bento_user.api import DirEntry, SetAttr
from bento_user.ks_emul import Journal
from bento_user.ks_emul import _journal_format as fmt
from bento_user.ks_emul import _recovery
from filesystems.xv6 import _bmap, _dir
from filesystems.xv6._alloc import Allocator
from filesystems.xv6._bmap import BlockMap
from filesystems.xv6._format import BLOCK_SIZE, NDIRECT, PTRS_PER_BLOCK, kind_code
from filesystems.xv6._file import FileIO
from filesystems.xv6._fs import Xv6
from filesystems.xv6._inode import Inode, touch
from filesystems.xv6._names import Names


@dataclass(frozen=True)
class Bug:
    name: str
    what: str
    fuzzer: str                       # the one meant to catch it: ops, crash or image
    patches: Callable[[], list[tuple[Any, str, Any]]]  # (object, attribute, replacement)


def _journal_drops_a_block() -> list[tuple[Any, str, Any]]:
    plain = Journal._snapshot

    def snapshot(self: Journal, t: Any) -> Any:
        if len(t.dirtied) > 1:              # the last metadata block never reaches the log
            t.dirtied.discard(max(t.dirtied))
        return plain(self, t)
    return [(Journal, "_snapshot", snapshot)]


def _bitmap_wrong_bit() -> list[tuple[Any, str, Any]]:
    plain = Allocator._set_bit

    def set_bit(self: Allocator, h: Any, area: int, n: int, value: bool) -> None:
        plain(self, h, area, n + (0 if value or area != self.geo.bbitmap_start else 1), value)
    return [(Allocator, "_set_bit", set_bit)]


def _fsync_without_commit() -> list[tuple[Any, str, Any]]:
    def sync_inode(self: FileIO, ip: Any) -> None:
        dirty = [bh for b in ip.take_owed() if (bh := self.ks.cache.cached(b)) is not None]
        self.ks.cache.writeback(dirty)      # data written, metadata never committed
        self.ks.device.flush()
    return [(FileIO, "sync", sync_inode)]


def _fsync_trusts_the_cache() -> list[tuple[Any, str, Any]]:
    def sync_inode(self: FileIO, ip: Any) -> None:  # the code before issue 14 §6
        with ip.lock.read():
            dirty = [bh for b in ip.take_owed() if (bh := self.ks.cache.cached(b)) is not None]
            unflushed, ip.unflushed = ip.unflushed, False
        if dirty:
            self.ks.cache.writeback(dirty)
        self.journal.force_commit()
        if dirty or unflushed:           # a block written home and evicted owes nothing
            self.ks.device.flush()
    return [(FileIO, "sync", sync_inode)]


def _rename_not_atomic() -> list[tuple[Any, str, Any]]:
    plain = Xv6.rename

    def rename(self: Xv6, req: Any, parent: int, name: bytes, new_parent: int,
               new_name: bytes, flags: int = 0) -> None:
        src = self.names.child(self.directory(parent), name)
        if (flags or src is None or src.is_dir
                or self.names.child(self.directory(new_parent), new_name)):
            return plain(self, req, parent, name, new_parent, new_name, flags)
        self.link(req, src.ino, new_parent, new_name)   # the new name, committed alone
        self.forget([(src.ino, 1)])
        self.journal.force_commit()
        self.unlink(req, parent, name)
    return [(Xv6, "rename", rename)]


def _rename_over_not_atomic() -> list[tuple[Any, str, Any]]:
    plain = Xv6.rename

    def rename(self: Xv6, req: Any, parent: int, name: bytes, new_parent: int,
               new_name: bytes, flags: int = 0) -> None:
        src = self.names.child(self.directory(parent), name)
        dst = self.names.child(self.directory(new_parent), new_name)
        if flags or src is None or dst is None or src is dst or src.is_dir or dst.is_dir:
            return plain(self, req, parent, name, new_parent, new_name, flags)
        self.unlink(req, new_parent, new_name)   # the file replaced goes first, alone
        self.journal.force_commit()
        plain(self, req, parent, name, new_parent, new_name, flags)
    return [(Xv6, "rename", rename)]


def _special_bits_not_stored() -> list[tuple[Any, str, Any]]:
    plain = Inode.store

    def store(self: Inode, block: Any, slot: int) -> None:
        mode, self.mode = self.mode, self.mode & ~0o7000   # 0o777 where 0o7777 was meant
        try:
            plain(self, block, slot)
        finally:
            self.mode = mode
    return [(Inode, "store", store)]


def _indirect_off_by_one() -> list[tuple[Any, str, Any]]:
    plain = _bmap._path

    def path(lblk: int) -> tuple[int, list[int]]:
        return (NDIRECT - 1, []) if lblk == NDIRECT else plain(lblk)   # "<=" for "<"
    return [(_bmap, "_path", path)]


def _orphans_not_reclaimed() -> list[tuple[Any, str, Any]]:
    def recover(self: FileIO) -> None:
        pass
    return [(FileIO, "recover_orphans", recover)]


class _Matches:
    """Equal to every checksum: verification that never fails."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False


def _recovery_skips_checksums() -> list[tuple[Any, str, Any]]:
    lax = types.SimpleNamespace(**vars(fmt))
    lax.data_checksum = lambda seed, tid, data: _Matches()
    lax.crc = lambda chain, block: _Matches()
    return [(_recovery, "fmt", lax)]


def _lookup_count_dropped() -> list[tuple[Any, str, Any]]:
    plain = Xv6.forget

    def forget(self: Xv6, items: Any) -> None:
        plain(self, [(ino, 1 << 40) for ino, _ in items])   # every lookup, not n of them
    return [(Xv6, "forget", forget)]


def _truncate_keeps_stale_tail() -> list[tuple[Any, str, Any]]:
    def zero_tail(self: FileIO, h: Any, ip: Any, size: int) -> None:
        pass
    return [(FileIO, "zero_tail", zero_tail)]


def _block_pointers_unchecked() -> list[tuple[Any, str, Any]]:
    return [(BlockMap, "check", lambda self, ip, p: p),
            (BlockMap, "check_array", lambda self, ip, ptrs: ptrs)]


def _dirent_inode_unchecked() -> list[tuple[Any, str, Any]]:
    plain = _dir.parse_block

    def parse_block(data: bytes, dir_ino: int, lblk: int, ninodes: int) -> Any:
        return plain(data, dir_ino, lblk, 1 << 62)      # any inode number goes
    return [(_dir, "parse_block", parse_block)]


def _commit_block_unflushed() -> list[tuple[Any, str, Any]]:
    def write_commit(self: Journal, t: Any, plan: Any) -> None:
        self.cache.writeback(list(t.data.values()))
        blocks = plan.seal(t.tid, self.seed, self.clock.now_ns())
        self._write_log(t.log_start, blocks[:-1])      # no flush before the commit block
        self._write_log(self._wrap(t.log_start + t.log_len - 1), blocks[-1:])
        self.device.flush()
    return [(Journal, "_write_commit", write_commit)]


def _chown_keeps_setuid() -> list[tuple[Any, str, Any]]:
    plain = Xv6.setattr

    def setattr(self: Xv6, req: Any, ino: int, changes: SetAttr, fh: Any = None) -> Any:
        if changes.uid is None and changes.gid is None:
            return plain(self, req, ino, changes, fh)
        ip = self.icache.iget(ino)
        mode = ip.mode
        plain(self, req, ino, changes, fh)
        with ip.lock.write(), self.transaction() as h:
            ip.mode = mode                  # setuid and setgid survive the chown
            self.icache.iupdate(h, ip)
        return ip.attr(BLOCK_SIZE)
    return [(Xv6, "setattr", setattr)]


def _double_indirect_first_block() -> list[tuple[Any, str, Any]]:
    plain = _bmap._path
    first = NDIRECT + PTRS_PER_BLOCK                     # the double-indirect level's first

    def path(lblk: int) -> tuple[int, list[int]]:
        return (NDIRECT, [PTRS_PER_BLOCK - 1]) if lblk == first else plain(lblk)
    return [(_bmap, "_path", path)]


def _triple_indirect_first_block() -> list[tuple[Any, str, Any]]:
    plain = _bmap._path
    first = NDIRECT + PTRS_PER_BLOCK + PTRS_PER_BLOCK**2  # the triple-indirect level's first

    def path(lblk: int) -> tuple[int, list[int]]:
        return ((NDIRECT + 1, [PTRS_PER_BLOCK - 1, PTRS_PER_BLOCK - 1]) if lblk == first
                else plain(lblk))
    return [(_bmap, "_path", path)]


def _readdir_cookie_is_an_index() -> list[tuple[Any, str, Any]]:
    plain = Xv6.readdir

    def readdir(self: Xv6, fh: Any, offset: int) -> Any:
        entries, pos = [], 0
        while batch := list(plain(self, fh, pos)):
            entries += batch
            pos = batch[-1].next_offset
        # the n-th live entry's cookie is n: right until an earlier entry goes
        return [DirEntry(e.name, e.ino, e.kind, i + 1) for i, e in enumerate(entries)][offset:]
    return [(Xv6, "readdir", readdir)]


def _run_bitmap_short() -> list[tuple[Any, str, Any]]:
    plain = Allocator.alloc_runs

    def alloc_runs(self: Allocator, h: Any, goal: int, count: int, max_runs: int) -> Any:
        set_bits = self._set_bits
        self._set_bits = lambda h, area, b, n: set_bits(h, area, b, max(1, n - 1))
        try:                                # memory has the whole run, the disk one less
            return plain(self, h, goal, count, max_runs)
        finally:
            del self._set_bits
    return [(Allocator, "alloc_runs", alloc_runs)]


def _link_count_not_stored() -> list[tuple[Any, str, Any]]:
    def link(self: Names, h: Any, dp: Any, name: bytes, ip: Any) -> None:
        self.dirs.add(h, dp, name, ip.ino, kind_code(ip.mode))
        ip.nlink += 1                       # counted in memory, never written
        touch(self.ks.now_ns(), dp)
        self.icache.iupdate(h, dp)
    return [(Names, "link", link)]


BUGS = [
    Bug("journal-drops-block", "a commit leaves one metadata block out of the log", "crash",
        _journal_drops_a_block),
    Bug("bitmap-wrong-bit", "freeing a block clears its neighbour's bit", "ops",
        _bitmap_wrong_bit),
    Bug("fsync-no-commit", "fsync writes data but does not commit the journal", "crash",
        _fsync_without_commit),
    Bug("fsync-trusts-cache", "fsync flushes only if a block it covers is still cached",
        "crash", _fsync_trusts_the_cache),
    Bug("rename-not-atomic", "rename commits the new name before removing the old", "crash",
        _rename_not_atomic),
    Bug("rename-over-not-atomic", "rename over a file removes that file in a commit of its own",
        "crash", _rename_over_not_atomic),
    Bug("special-bits-not-stored", "setuid, setgid and sticky are kept in memory only", "ops",
        _special_bits_not_stored),
    Bug("indirect-off-by-one", "block 12 (the first indirect one) maps onto block 11", "ops",
        _indirect_off_by_one),
    Bug("orphan-not-reclaimed", "mount does not finish the frees a crash interrupted", "crash",
        _orphans_not_reclaimed),
    Bug("recovery-no-checksums", "recovery trusts logged blocks without their checksums",
        "crash", _recovery_skips_checksums),
    Bug("lookup-count-dropped", "forget drops every lookup, not the count given", "ops",
        _lookup_count_dropped),
    Bug("truncate-stale-tail", "shrinking leaves old bytes in the last block", "ops",
        _truncate_keeps_stale_tail),
    Bug("block-pointer-unchecked", "indirect block entries are used without a range check",
        "image", _block_pointers_unchecked),
    Bug("dirent-inode-unchecked", "directory entries may name inodes past the table",
        "image", _dirent_inode_unchecked),
    Bug("commit-unflushed", "the commit block is written before the log blocks are durable",
        "crash", _commit_block_unflushed),
    Bug("chown-keeps-setuid", "chown leaves setuid and setgid in place", "ops",
        _chown_keeps_setuid),
    Bug("double-indirect-first-block", "the first double-indirect block maps onto the last "
        "single-indirect one", "ops", _double_indirect_first_block),
    Bug("triple-indirect-first-block", "the first triple-indirect block maps onto the last "
        "double-indirect one", "ops", _triple_indirect_first_block),
    Bug("readdir-cookie-index", "a readdir cookie counts live entries, so a removal skips one",
        "ops", _readdir_cookie_is_an_index),
    Bug("run-bitmap-short", "a run of blocks is one bit short in the on-disk bitmap", "ops",
        _run_bitmap_short),
    Bug("link-count-not-stored", "link counts the new name in memory, never on disk", "ops",
        _link_count_not_stored),
]
BY_NAME = {b.name: b for b in BUGS}


@contextlib.contextmanager
def inject(name: str) -> Iterator[Bug]:
    bug = BY_NAME[name]
    saved = []
    for obj, attr, new in bug.patches():
        saved.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, new)
    try:
        yield bug
    finally:
        for obj, attr, old in reversed(saved):
            setattr(obj, attr, old)
