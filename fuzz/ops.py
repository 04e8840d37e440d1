"""``bento fuzz ops``: random operations checked against a model of POSIX.

A Hypothesis state machine drives the file system as two users (root and uid 1000)
with long, odd and non-UTF-8 names, hard links, symlinks, renames in every form,
truncation, extended attributes, files kept open or only looked up (as the kernel
holds inodes) while they are unlinked, and clean remounts; every result and errno is
checked against the POSIX model (model.py), the whole tree after every step, and
fsck after every unmount. ``FileSystemMachine`` runs in-process on the direct runtime;
``MountMachine`` (ops_mount.py) makes the same calls through a real FUSE mount
(entry and attribute time-outs 0, so the kernel's caches hide nothing).
"""

from __future__ import annotations

import copy
import errno
import hashlib
import logging
import os
import stat
import time
import traceback
import unittest
import zlib
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.database import ExampleDatabase
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule,
                                 run_state_machine_as_test)

from bento_user.api import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE,
                            RENAME_EXCHANGE, RENAME_NOREPLACE, SEEK_DATA, SEEK_HOLE, Request,
                            SetAttr)
from bento_user.blockdev import RamDevice
from bento_user.ks_emul import FAULTS, InjectedFault

from .constants import fixed_constants
from .model import ROOT, Err, Model, Node, join
from .ops_draws import (ALICE, BAD_NAMES, DATA, FAR_OFFSETS, NAMES, OFFSETS, TIMES, USERS,
                        XATTR_VALUES)
from .ops_references import KernelReferences
from .target import Target

# The default budget, in sequences: about 45 s on a 2-core VM, near the crash and image
# fuzzers' minute. At 100, truncate-stale-tail, run-bitmap-short and readdir-cookie-index
# each went unnoticed at one of seeds 1-3 (bench/RESULTS.md, issue 17).
EXAMPLES = 200
NBLOCKS = 4096   # 16 MiB: room for the 5 MiB sparse offsets, small enough to copy


class FileSystemMachine(KernelReferences, RuleBasedStateMachine):
    """The machine on the direct runtime (``target`` is set per run by ``machine``)."""

    target: Target
    result: OpsResult | None = None            # counts, when run by ``run``
    injects_faults = True                      # in-process: FAULTS reaches the file system
    scans_directories = True                   # in-process: readdir by cookie, between calls
    progress: Callable[[OpsResult], None] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.held: list[tuple[Any, Node]] = []   # inode references without a file
        self.kept: list[tuple[int, Node]] = []   # descriptors kept open (as root)
        self.dev: RamDevice | None = None
        self.live = False
        self.holes = self.target.supports("lseek")  # else the kernel's answer: all data
        self.open_fs()

    # -- the file system's life (overridden for a real mount) ------------------------

    def open_fs(self) -> None:
        """Mount: a fresh image the first time, what the last unmount left after."""
        self.dev = (self.target.fresh_device(NBLOCKS) if self.dev is None
                    else RamDevice.from_bytes(self.dev.image()))
        self.rt = self.target.open(self.dev)
        self.clients: dict[int, Any] = {r.uid: self.rt.client(r) for r in (ROOT, ALICE)}
        self.live = True

    def close_fs(self) -> None:
        """Drop every reference, unmount cleanly, fsck."""
        self.live = False
        for h, _ in self.held:
            self._release(h)
        self.held.clear()
        self.kept.clear()
        for c in self.clients.values():
            c.close_all()
        self.rt.close()
        assert self.dev is not None
        problems = self.target.fsck(self.dev.image())
        assert problems == [], problems

    def _hold(self, path: bytes) -> Any:
        """A lookup the kernel keeps (a cached dentry, an O_PATH descriptor)."""
        c = self.client(ROOT)
        parent, name = path.rsplit(b"/", 1)
        return self.rt.call("lookup", ROOT, c.stat(parent or b"/").ino, name).ino

    def _held_stat(self, h: Any) -> Any:
        return self.rt.call("getattr", ROOT, h)

    def _release(self, h: Any) -> None:
        self.rt.call("forget", [(h, 1)])

    # -- helpers -------------------------------------------------------------------

    def client(self, req: Request) -> Any:
        """A ``PathClient`` (direct) or ``MountClient`` (mount): the same calls."""
        return self.clients[req.uid]

    def expect(self, err: int | tuple[int, ...] | None, fn, *args):  # type: ignore[no-untyped-def]
        """Call ``fn``; it must fail with ``err`` (or one of them: where POSIX leaves
        the order of checks open, the model accepts each answer) or succeed if None."""
        allowed_errors = err if isinstance(err, tuple) else (err,)
        names = "/".join(errno.errorcode[e] for e in allowed_errors if e is not None)
        try:
            result = fn(*args)
        except OSError as e:
            assert err is not None and e.errno in allowed_errors, (
                f"{fn.__name__}{args}: got {e!r}, expected {names}")
            return None
        assert err is None, f"{fn.__name__}{args}: succeeded, expected {names}"
        return result

    # -- rules ---------------------------------------------------------------------
    # Each draws its arguments from the model's tree, asks the model what Linux
    # answers (model.py: it changes the tree when the call succeeds) and makes the
    # call, which must answer the same.

    @rule(data=st.data(), name=NAMES | BAD_NAMES, req=USERS, mode=st.sampled_from([0o755, 0o700, 0o777]))
    def mkdir(self, data: st.DataObject, name: bytes, req: Request, mode: int) -> None:
        dpath, d = data.draw(st.sampled_from(self.model.dirs()))
        err = self.model.mkdir(req, dpath, d, name, mode)
        self.expect(err, self.client(req).mkdir, join(dpath, name), mode)

    @rule(data=st.data(), name=NAMES, req=USERS, content=DATA, offset=OFFSETS)
    def write(self, data: st.DataObject, name: bytes, req: Request, content: bytes, offset: int) -> None:
        dpath, d = data.draw(st.sampled_from(self.model.dirs()))
        n = d.children.get(name)
        if n is not None and n.kind == stat.S_IFLNK:
            return  # following symlinks is covered by the symlink rule
        c = self.client(req)
        err = self.model.open_write(req, dpath, d, name, create=True)
        fd = self.expect(err, c.open, join(dpath, name), os.O_WRONLY | os.O_CREAT, 0o644)
        if fd is None:
            return
        assert c.pwrite(fd, content, offset) == len(content)
        c.close(fd)
        self.model.write(req, d.children[name], offset, content)

    def _root_writes(self, path: bytes, content: bytes) -> None:
        """Root creates (or overwrites) ``path`` with ``content``, as the model says."""
        dpath, d, name, _ = self.model.lookup(path)
        c = self.client(ROOT)
        fd = self.expect(self.model.open_write(ROOT, dpath, d, name, create=True), c.open, path,
                         os.O_WRONLY | os.O_CREAT, 0o644)
        if fd is not None:
            assert c.pwrite(fd, content, 0) == len(content)
            c.close(fd)
            self.model.write(ROOT, d.children[name], 0, content)

    @rule(data=st.data(), size=st.sampled_from([0, 1, 4097, 50_000]), grow=st.booleans())
    def truncate(self, data: st.DataObject, size: int, grow: bool) -> None:
        """``grow``: then back up to 50,000 bytes, so what a shrink left past the end
        of its last block is read as the zeros it must be."""
        files = self.model.regular_files()
        if not files:
            return
        dpath, _, name, n = data.draw(st.sampled_from(files))
        for length in (size, 50_000) if grow else (size,):
            self.client(ROOT).truncate(join(dpath, name), length)
            self.model.truncate(n, length)

    @rule(data=st.data(), req=USERS)
    def unlink(self, data: st.DataObject, req: Request) -> None:
        if not self.model.entries():
            return
        dpath, _, name, _ = data.draw(st.sampled_from(self.model.entries()))
        path = join(dpath, name)
        self.expect(self.model.unlink(req, path), self.client(req).unlink, path)

    @rule(data=st.data(), req=USERS)
    def rmdir(self, data: st.DataObject, req: Request) -> None:
        if not self.model.entries():
            return
        dpath, _, name, _ = data.draw(st.sampled_from(self.model.entries()))
        path = join(dpath, name)
        self.expect(self.model.rmdir(req, path), self.client(req).rmdir, path)

    @rule(data=st.data(), name=NAMES, flags=st.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE]),
          req=USERS)
    def rename(self, data: st.DataObject, name: bytes, flags: int, req: Request) -> None:
        if not self.model.entries():
            return
        spath, _, sname, _ = data.draw(st.sampled_from(self.model.entries()))
        dpath, _ = data.draw(st.sampled_from(self.model.dirs()))
        src, dst = join(spath, sname), join(dpath, name)
        if flags & ~self.target.cls.rename_flags:  # not implemented: refused, as on Linux,
            self.expect(self.unsupported_rename(req, src, dst, flags), self.client(req).rename,
                        src, dst, flags)
            return
        self.expect(self.model.rename(req, src, dst, flags), self.client(req).rename, src, dst,
                    flags)

    def unsupported_rename(self, req: Request, src: bytes, dst: bytes, flags: int) -> Err:
        """What Linux answers for flags the file system does not implement: the VFS's
        own checks first (the path walk, a missing or existing target, a directory
        moved under itself, a rename onto itself, which succeeds), then the file
        system's EINVAL; permissions may come before or after it."""
        err = copy.deepcopy(self.model).rename(req, src, dst, flags)
        if err is None:
            return None if self.model.lookup(src)[3] is self.model.lookup(dst)[3] else errno.EINVAL
        if err == errno.EACCES or isinstance(err, tuple):
            return (errno.EACCES, errno.EINVAL)
        return err

    @precondition(lambda self: self.target.supports("link"))
    @rule(data=st.data(), name=NAMES)
    def link(self, data: st.DataObject, name: bytes) -> None:
        files = [e for e in self.model.entries() if not e[3].is_dir]
        if not files:
            return
        spath, _, sname, _ = data.draw(st.sampled_from(files))
        dpath, _ = data.draw(st.sampled_from(self.model.dirs()))
        src, dst = join(spath, sname), join(dpath, name)
        self.expect(self.model.link(ROOT, src, dst), self.client(ROOT).link, src, dst)

    @precondition(lambda self: self.target.supports("symlink"))
    @rule(data=st.data(), name=NAMES, link_to=st.sampled_from([b"a", b"../b", b"/x/y", b"t" * 300]))
    def symlink(self, data: st.DataObject, name: bytes, link_to: bytes) -> None:
        dpath, d = data.draw(st.sampled_from(self.model.dirs()))
        path = join(dpath, name)
        err = self.model.symlink(ROOT, dpath, d, name, link_to)
        self.expect(err, self.client(ROOT).symlink, link_to, path)
        if d.children[name].kind == stat.S_IFLNK:
            assert self.client(ROOT).readlink(path) == d.children[name].target

    @rule(data=st.data(), mode=st.sampled_from([0o600, 0o644, 0o755, 0o777, 0o000, 0o6777, 0o6766]),
          req=USERS)
    def chmod(self, data: st.DataObject, mode: int, req: Request) -> None:
        nodes = [e for e in self.model.entries() if e[3].kind != stat.S_IFLNK]
        if not nodes:
            return
        dpath, _, name, n = data.draw(st.sampled_from(nodes))
        if n.is_dir:
            mode &= 0o777  # setgid directories pass their group on: not modelled
        err = self.model.chmod(req, dpath, n, mode)
        self.expect(err, self.client(req).chmod, join(dpath, name), mode)

    @rule(data=st.data(), req=USERS, owner=st.sampled_from(
        [(-1, 1000), (1000, -1), (0, -1), (-1, 0), (1000, 1000), (0, 0)]),
        setid=st.sampled_from([None, 0o4755, 0o2755, 0o2745, 0o6777]))
    def chown(self, data: st.DataObject, req: Request, owner: tuple[int, int],
              setid: int | None) -> None:
        """Who may give what to whom, and what setuid and setgid become (the
        invariant compares every owner, group and mode with the model's). With
        ``setid``, root first gives a regular file that mode: a chown's effect on
        setuid and setgid is what goes wrong, and random chmods rarely leave them."""
        if setid is not None and not self.model.regular_files():
            self._root_writes(b"/setid", b"#!/bin/sh\n")
        nodes = [e for e in self.model.entries() if e[3].kind != stat.S_IFLNK]
        if setid is not None:
            nodes = [e for e in nodes if e[3].kind == stat.S_IFREG] or nodes
        if not nodes:
            return
        dpath, _, name, n = data.draw(st.sampled_from(nodes))
        if setid is not None and n.kind == stat.S_IFREG:
            self.expect(self.model.chmod(ROOT, dpath, n, setid), self.client(ROOT).chmod,
                        join(dpath, name), setid)
        err = self.model.chown(req, dpath, n, *owner)
        self.expect(err, self.client(req).chown, join(dpath, name), *owner)

    @precondition(lambda self: self.target.supports("setxattr"))
    @rule(data=st.data(), key=st.sampled_from([b"user.a", b"user.b", b"trusted.t", b"user."]),
          value=st.binary(max_size=300) | XATTR_VALUES)
    def setxattr(self, data: st.DataObject, key: bytes, value: bytes) -> None:
        nodes = [e for e in self.model.entries() if e[3].kind in (stat.S_IFREG, stat.S_IFDIR)]
        if not nodes:
            return
        dpath, _, name, n = data.draw(st.sampled_from(nodes))
        err = self.model.setxattr(ROOT, n, key, value)
        self.expect(err, self.client(ROOT).setxattr, join(dpath, name), key, value)

    @rule(data=st.data(), req=USERS)
    def truncate_by_open(self, data: st.DataObject, req: Request) -> None:
        """open(O_RDONLY | O_TRUNC) truncates on Linux; descriptors kept open on the
        file must read zeros past the new end (the invariant reads them)."""
        files = self.model.regular_files()
        if not files:
            return
        dpath, _, name, n = data.draw(st.sampled_from(files))
        c = self.client(req)
        err = self.model.truncate_by_open(req, dpath, n)
        fd = self.expect(err, c.open, join(dpath, name), os.O_RDONLY | os.O_TRUNC)
        if fd is not None:
            c.close(fd)

    @rule(data=st.data(), offset=FAR_OFFSETS, content=DATA, remount=st.booleans())
    def far_write(self, data: st.DataObject, offset: int, content: bytes, remount: bool) -> None:
        """A write around the third level of a block map (past 4 GiB), read back a
        block either side (after a remount, maybe), then truncated away: the model
        cannot hold such a file, so the rule checks it and leaves the file as it was.
        A file system whose files stop short of it must answer EFBIG and not change."""
        files = self.model.regular_files()
        if not files or not content:
            return
        dpath, _, name, n = data.draw(st.sampled_from(files))
        c, path, size = self.client(ROOT), join(dpath, name), len(n.data)
        fd = c.open(path, os.O_WRONLY)
        try:
            c.pwrite(fd, content, offset)
        except OSError as e:
            assert e.errno == errno.EFBIG, f"pwrite at {offset}: {e!r}"
            assert c.stat(path).size == size, "a refused write changed the size"
            return
        finally:
            c.close(fd)
        if remount:
            self.remount()
            c = self.client(ROOT)      # the new instance's
        assert c.stat(path).size == offset + len(content), f"size after a write at {offset}"
        start = offset - 4096
        fd = c.open(path, os.O_RDONLY)
        got = c.pread(fd, len(content) + 8192, start)
        c.close(fd)
        expected = bytes(4096) + content
        assert got == expected, f"{path!r} around {offset}: differs from byte " + str(start + next(
            (i for i, (x, y) in enumerate(zip(got, expected)) if x != y), min(len(got), len(expected))))
        c.truncate(path, size)

    @rule(data=st.data(), times=st.tuples(*[st.sampled_from(TIMES)] * 2))
    def utime(self, data: st.DataObject, times: tuple[int, int]) -> None:
        """Explicit times, before 1970 too (-1 ns is a time, not "now")."""
        files = self.model.regular_files()
        if not files:
            return
        dpath, _, name, _ = data.draw(st.sampled_from(files))
        c, path = self.client(ROOT), join(dpath, name)
        c.utime(path, ns=times)
        got = c.stat(path)
        expected = tuple(SetAttr(atime_ns=t).atime_ns for t in times)  # clamped
        assert (got.atime_ns, got.mtime_ns) == expected, f"utime{times}: {got}"

    @rule()
    def remount(self) -> None:
        """Unmount cleanly and mount again: everything must be as before."""
        self.close_fs()
        self.open_fs()

    def _open_a_file(self, data: st.DataObject, flags: int) -> tuple[Any, int, bytes, Node] | None:
        """Root opens one of the model's regular files: (client, fd, name, node)."""
        files = self.model.regular_files()
        if not files:
            return None
        dpath, _, name, n = data.draw(st.sampled_from(files))
        c = self.client(ROOT)
        return c, c.open(join(dpath, name), flags), name, n

    @staticmethod
    def _seek(c: Any, fd: int, offset: int, whence: int) -> int | str:
        """lseek's answer: the offset, or the errno's name."""
        try:
            return int(c.lseek(fd, offset, whence))
        except OSError as e:
            return errno.errorcode[e.errno]

    @rule(data=st.data(), offset=st.sampled_from([0, 1, 4096, 40_000, 5 * 2**20 + 1]))
    def seek(self, data: st.DataObject, offset: int) -> None:
        """SEEK_DATA and SEEK_HOLE on a fresh descriptor, and the pair a sparse copy
        makes from each hole it is told of."""
        opened = self._open_a_file(data, os.O_RDONLY)
        if opened is None:
            return
        c, fd, name, n = opened
        try:
            for whence in (SEEK_DATA, SEEK_HOLE):
                answer = self._seek(c, fd, offset, whence)
                problem = self.model.seek_problem(n, offset, whence, answer, self.holes)
                assert problem is None, f"lseek({name!r}, {offset}, {whence}): {problem}"
                if whence == SEEK_HOLE and isinstance(answer, int) and answer < len(n.data):
                    after = self._seek(c, fd, answer, SEEK_DATA)
                    assert after == "ENXIO" or after > answer, f"hole at {answer}, data at {after}"
        finally:
            c.close(fd)

    @precondition(lambda self: self.target.supports("fallocate"))
    @rule(data=st.data(), offset=OFFSETS, length=st.sampled_from([1, 4096, 10_000, 70_000]),
          mode=st.sampled_from([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE]))
    def fallocate(self, data: st.DataObject, offset: int, length: int, mode: int) -> None:
        opened = self._open_a_file(data, os.O_RDWR)
        if opened is None:
            return
        c, fd, _, n = opened
        try:
            c.fallocate(fd, mode, offset, length)
        except OSError as e:  # a mode the file system does not do
            assert e.errno == errno.EOPNOTSUPP and mode, f"fallocate {mode:#x}: {e!r}"
            return
        finally:
            c.close(fd)
        self.model.fallocate(ROOT, n, mode, offset, length)

    @precondition(lambda self: self.injects_faults and self.target.supports("prepare_upgrade"))
    @rule(data=st.data(), at=st.integers(1, 40), name=NAMES, req=USERS,
          kind=st.sampled_from(["mkdir", "rename", "unlink", "truncate", "chmod"]))
    def fault(self, data: st.DataObject, at: int, name: bytes, req: Request, kind: str) -> None:
        """An unexpected error at the ``at``-th kernel-services call of one operation
        (ks_emul/_faults.py: a bug, a failing block): the operation fails and leaves
        no trace — the invariants find the tree as before, fsck the disk — and the
        file system serves on (runtime/guard.py undoes and reloads). If the operation
        makes fewer calls, it is an ordinary one, checked as ever."""
        c, model = self.client(req), self.model
        dpath, d = data.draw(st.sampled_from(model.dirs()))
        dst = join(dpath, name)
        targets = [e for e in model.entries() if e[3].kind != stat.S_IFLNK]
        if kind == "mkdir" or not targets:
            kind = "mkdir"
            call, answer = (lambda: c.mkdir(dst, 0o755)), (lambda: model.mkdir(req, dpath, d, name, 0o755))
        else:
            spath, _, sname, n = data.draw(st.sampled_from(targets))
            src = join(spath, sname)
            if kind == "rename":
                call, answer = (lambda: c.rename(src, dst)), (lambda: model.rename(req, src, dst))
            elif kind == "unlink":
                call, answer = (lambda: c.unlink(src)), (lambda: model.unlink(req, src))
            elif kind == "truncate" and not n.is_dir:
                c = self.client(ROOT)
                call, answer = (lambda: c.truncate(src, 4097)), (lambda: model.truncate(n, 4097))
            else:
                kind = "chmod"
                call, answer = (lambda: c.chmod(src, 0o700)), (lambda: model.chmod(req, spath, n, 0o700))
        free = self.rt.call("statfs", ROOT)
        FAULTS.arm(at, frozenset({"setattr" if kind in ("truncate", "chmod") else kind}))
        try:
            call()
            got = None
        except InjectedFault:
            if self.result is not None:
                self.result.faults += 1
            # Nothing changed: the invariants check the tree; space must not leak.
            assert self.rt.call("statfs", ROOT) == free, f"{kind} failed and leaked space"
            return
        except OSError as e:
            got = e.errno
        finally:
            FAULTS.disarm()
        expected = answer()
        allowed = expected if isinstance(expected, tuple) else (expected,)
        assert got in allowed, f"{kind} (no fault): got {got}, expected {expected}"

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def tree_matches(self) -> None:
        if self.result is not None:
            self.result.steps += 1
        c = self.client(ROOT)
        links = self.model.link_counts()
        for dpath, d in self.model.dirs():
            listed = sorted(c.listdir(dpath))
            assert listed == sorted(d.children), f"{dpath!r}: {listed} != {sorted(d.children)}"
            st_ = c.stat(dpath)
            assert st_.nlink == 2 + sum(1 for x in d.children.values() if x.is_dir)
            assert st_.mode & 0o7777 == d.mode, dpath
            assert (st_.uid, st_.gid) == (d.uid, d.gid), f"{dpath!r}: owner and group"
            for name, n in d.children.items():
                path = join(dpath, name)
                a = c.lstat(path)
                assert stat.S_IFMT(a.mode) == n.kind
                assert (a.uid, a.gid) == (n.uid, n.gid), f"{path!r}: owner and group"
                if not n.is_dir:
                    assert a.nlink == links[n.ident], path
                if n.kind == stat.S_IFREG:
                    assert a.size == len(n.data)
                    got = c.read_bytes(path)
                    assert got == n.data, f"{path!r}: its bytes differ from the model's" + next(
                        (f" from byte {i}" for i, (x, y) in enumerate(zip(got, n.data)) if x != y), "")
                    assert a.mode & 0o7777 == n.mode, (
                        f"{path!r}: mode {a.mode & 0o7777:o}, the model says {n.mode:o}")
                if n.kind == stat.S_IFLNK:
                    assert c.readlink(path) == n.target
                for k, v in n.xattrs.items():
                    assert c.getxattr(path, k, False) == v

    def teardown(self) -> None:
        try:
            if self.live:
                self.close_fs()
        finally:
            if self.result is not None:
                self.result.examples += 1
                self.result.drawn.update(repr([  # what the sequence left: its fingerprint
                    (join(dpath, name), n.kind, n.mode, zlib.crc32(n.data))
                    for dpath, _, name, n in self.model.entries()]).encode())
                self.result.seconds = time.monotonic() - self.result.started
                if self.progress is not None:
                    self.progress(self.result)


# -- running it ------------------------------------------------------------------------


@dataclass
class OpsResult:
    """What a run did; ``failure`` is Hypothesis' minimal example and the error."""

    examples: int = 0
    steps: int = 0
    faults: int = 0  # operations failed on purpose (and undone)
    seconds: float = 0.0
    failure: str | None = None
    problem: str | None = None  # the failure's exception in one line
    started: float = 0.0
    drawn: Any = field(default_factory=hashlib.sha256, repr=False)  # see ``digest``

    @property
    def digest(self) -> str:
        """A fingerprint of the sequences run: equal for runs that ran the same ones."""
        return self.drawn.hexdigest()[:16]

    @property
    def rate(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0


def machine(target: Target, mount: bool = False) -> type[FileSystemMachine]:
    """A machine class bound to ``target`` (a subclass: runs do not share state)."""
    base: type[FileSystemMachine] = FileSystemMachine
    if mount:
        from .ops_mount import MountMachine  # it subclasses the machine above
        base = MountMachine
    return type(f"{target.name}{base.__name__}", (base,), {"target": target})


def run(target: Target, *, examples: int = EXAMPLES, seed: int = 0, mount: bool = False,
        steps: int = 40, progress: Any = None, shrink: bool = True,
        database: ExampleDatabase | None = None, replay_only: bool = False) -> OpsResult:
    """Run ``examples`` random sequences of up to ``steps`` operations each.

    ``progress(result)`` is called after every example. The same seed replays the
    same examples: a run depends on its arguments only. ``shrink=False`` reports the
    first failing sequence as found (a campaign's workers; tests that only need to
    know a bug is caught). ``database`` keeps the failing sequence a run found and,
    with ``replay_only``, the run replays the database's sequences and draws none.
    """
    result = OpsResult()
    cls = machine(target, mount)
    cls.result, cls.progress = result, staticmethod(progress) if progress else None
    started = result.started = time.monotonic()
    phases = ([Phase.reuse] if replay_only else [p for p in Phase if p is not Phase.reuse]
              if shrink else [Phase.generate])
    config = settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                      database=database, print_blob=False, report_multiple_bugs=False,
                      suppress_health_check=list(HealthCheck), phases=phases)
    hypothesis_seed(seed)(cls)
    guard_log = logging.getLogger("bento.guard")
    level = guard_log.level
    guard_log.setLevel(logging.ERROR)  # each fault on purpose is undone, with a warning
    try:
        with fixed_constants(target.cls):  # the same seed, the same draws (constants.py)
            run_state_machine_as_test(cls, settings=config)
    except unittest.SkipTest:
        pass  # replay_only with nothing saved: nothing to run
    except Exception as e:  # noqa: BLE001 - the finding itself
        result.failure = "".join(traceback.format_exception(e, limit=-6))
        result.problem = (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0]
    finally:
        guard_log.setLevel(level)
    result.seconds = time.monotonic() - started
    return result
