"""A Hypothesis state machine: random operations on a file system, checked against a
small model of POSIX (results and errnos), with fsck clean at the end.

It drives the direct runtime as two users (root and uid 1000), with long, odd and
non-UTF-8 names, hard links, symlinks, renames in every form, truncation and
extended attributes. Any file system with an fsck can be plugged in through
``FileSystemMachine.make_runtime`` / ``check_image``; xv6's are the defaults.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bento_user.api import RENAME_EXCHANGE, RENAME_NOREPLACE, Request
from bento_user.blockdev import RamDevice
from bento_user.runtime.direct import DirectRuntime, PathClient
from filesystems.xv6 import Xv6, mkfs
from filesystems.xv6.fsck import fsck

ROOT = Request(uid=0, gid=0, umask=0o022)
ALICE = Request(uid=1000, gid=1000, umask=0o022)
USERS = st.sampled_from([ROOT, ALICE])
NAMES = st.sampled_from([b"a", b"b", b"c", b"dir", b"\xff\xfe", b"caf\xc3\xa9", b"n" * 255])
BAD_NAMES = st.sampled_from([b"n" * 256])
DATA = st.binary(max_size=9000)
OFFSETS = st.sampled_from([0, 1, 4095, 4096, 12 * 4096 - 3, 5 * 2**20])


@dataclass(eq=False)
class Node:
    kind: int
    uid: int
    gid: int
    mode: int
    data: bytearray = field(default_factory=bytearray)
    children: dict[bytes, Node] = field(default_factory=dict)
    target: bytes = b""
    xattrs: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def is_dir(self) -> bool:
        return self.kind == stat.S_IFDIR


def allowed(req: Request, n: Node, mask: int) -> bool:
    if req.uid == 0:
        return not mask & 1 or n.is_dir or bool(n.mode & 0o111)
    bits = (n.mode >> 6) if req.uid == n.uid else (n.mode >> 3) if req.gid == n.gid else n.mode
    return (bits & 7 & mask) == mask


class FileSystemMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dev = RamDevice(4096)
        mkfs(self.dev, ninodes=512, journal_blocks=256)
        self.rt = self.make_runtime(self.dev)
        self.clients = {r.uid: self.rt.client(r) for r in (ROOT, ALICE)}
        self.root = Node(stat.S_IFDIR, 0, 0, 0o755)

    def make_runtime(self, dev: RamDevice) -> DirectRuntime:
        return DirectRuntime.open(Xv6(), dev, commit_interval=None)

    def check_image(self, dev: RamDevice) -> None:
        report = fsck(RamDevice.from_bytes(dev.image()))
        assert report.problems == [], report.problems

    # -- model helpers -----------------------------------------------------------

    def dirs(self) -> list[tuple[bytes, Node]]:
        out, todo = [], [(b"", self.root)]
        while todo:
            path, n = todo.pop()
            out.append((path or b"/", n))
            todo += [(path + b"/" + k, c) for k, c in sorted(n.children.items()) if c.is_dir]
        return out

    def entries(self) -> list[tuple[bytes, Node, bytes, Node]]:
        """(dir path, dir, name, node) of every entry."""
        return [(p, d, k, c) for p, d in self.dirs() for k, c in sorted(d.children.items())]

    def searchable(self, req: Request, path: bytes) -> bool:
        n = self.root
        for part in [p for p in path.split(b"/") if p]:
            if not allowed(req, n, 1):
                return False
            n = n.children[part]
        return allowed(req, n, 1)

    def client(self, req: Request) -> PathClient:
        return self.clients[req.uid]

    def expect(self, err: int | None, fn, *args):  # type: ignore[no-untyped-def]
        try:
            result = fn(*args)
        except OSError as e:
            assert err is not None and e.errno == err, f"{fn.__name__}{args}: got {e!r}, expected {err and errno.errorcode[err]}"
            return None
        assert err is None, f"{fn.__name__}{args}: succeeded, expected {errno.errorcode[err]}"
        return result

    @staticmethod
    def join(d: bytes, name: bytes) -> bytes:
        return (d.rstrip(b"/") + b"/" + name)

    def create_error(self, req: Request, dpath: bytes, d: Node, name: bytes) -> int | None:
        if not self.searchable(req, dpath):  # Linux checks search permission first
            return errno.EACCES
        if len(name) > 255:
            return errno.ENAMETOOLONG
        if name in d.children:
            return errno.EEXIST
        if not allowed(req, d, 3):
            return errno.EACCES
        return None

    # -- rules ---------------------------------------------------------------------

    @rule(data=st.data(), name=NAMES | BAD_NAMES, req=USERS, mode=st.sampled_from([0o755, 0o700, 0o777]))
    def mkdir(self, data: st.DataObject, name: bytes, req: Request, mode: int) -> None:
        dpath, d = data.draw(st.sampled_from(self.dirs()))
        err = self.create_error(req, dpath, d, name)
        self.expect(err, self.client(req).mkdir, self.join(dpath, name), mode)
        if err is None:
            d.children[name] = Node(stat.S_IFDIR, req.uid, req.gid, mode & ~req.umask)

    @rule(data=st.data(), name=NAMES, req=USERS, content=DATA, offset=OFFSETS)
    def write(self, data: st.DataObject, name: bytes, req: Request, content: bytes, offset: int) -> None:
        dpath, d = data.draw(st.sampled_from(self.dirs()))
        path = self.join(dpath, name)
        n = d.children.get(name)
        c = self.client(req)
        if n is None:
            err = self.create_error(req, dpath, d, name)
        elif not self.searchable(req, dpath):
            err = errno.EACCES
        elif n.kind == stat.S_IFLNK:
            return  # following symlinks is covered by the symlink rule
        elif n.is_dir:
            err = errno.EISDIR
        elif not allowed(req, n, 2):
            err = errno.EACCES
        else:
            err = None
        fd = self.expect(err, c.open, path, os.O_WRONLY | os.O_CREAT, 0o644)
        if fd is None:
            return
        if n is None:
            n = d.children[name] = Node(stat.S_IFREG, req.uid, req.gid, 0o644 & ~req.umask)
        assert c.pwrite(fd, content, offset) == len(content)
        c.close(fd)
        if content:
            if len(n.data) < offset:
                n.data.extend(bytes(offset - len(n.data)))
            n.data[offset:offset + len(content)] = content
        if req.uid:
            n.mode &= ~0o4000 if not n.mode & 0o010 else ~0o6000

    @rule(data=st.data(), size=st.sampled_from([0, 1, 4097, 50_000]))
    def truncate(self, data: st.DataObject, size: int) -> None:
        files = [e for e in self.entries() if e[3].kind == stat.S_IFREG]
        if not files:
            return
        dpath, _, name, n = data.draw(st.sampled_from(files))
        self.client(ROOT).truncate(self.join(dpath, name), size)
        n.data = n.data[:size] + bytearray(max(0, size - len(n.data)))

    @rule(data=st.data(), req=USERS)
    def unlink(self, data: st.DataObject, req: Request) -> None:
        if not self.entries():
            return
        dpath, d, name, n = data.draw(st.sampled_from(self.entries()))
        err = (errno.EACCES if not self.searchable(req, dpath) or not allowed(req, d, 3)
               else errno.EISDIR if n.is_dir else None)
        if n.is_dir:
            err = err or errno.EISDIR
        self.expect(err, self.client(req).unlink, self.join(dpath, name))
        if err is None:
            del d.children[name]

    @rule(data=st.data(), req=USERS)
    def rmdir(self, data: st.DataObject, req: Request) -> None:
        if not self.entries():
            return
        dpath, d, name, n = data.draw(st.sampled_from(self.entries()))
        if not self.searchable(req, dpath) or not allowed(req, d, 3):
            err = errno.EACCES
        elif not n.is_dir:
            err = errno.ENOTDIR
        elif n.children:
            err = errno.ENOTEMPTY
        else:
            err = None
        self.expect(err, self.client(req).rmdir, self.join(dpath, name))
        if err is None:
            del d.children[name]

    @rule(data=st.data(), name=NAMES, flags=st.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE]))
    def rename(self, data: st.DataObject, name: bytes, flags: int) -> None:
        if not self.entries():
            return
        spath, sd, sname, n = data.draw(st.sampled_from(self.entries()))
        dpath, dd = data.draw(st.sampled_from(self.dirs()))
        src, dst = self.join(spath, sname), self.join(dpath, name)
        target = dd.children.get(name)
        inside = n.is_dir and (dpath + b"/").startswith(src + b"/")
        exch_inside = (target is not None and target.is_dir
                       and (spath + b"/").startswith(dst + b"/"))
        if target is n:
            err = None if flags != RENAME_NOREPLACE else errno.EEXIST
        elif flags == RENAME_EXCHANGE and target is None:
            err = errno.ENOENT
        elif flags == RENAME_NOREPLACE and target is not None:
            err = errno.EEXIST
        elif inside or (flags == RENAME_EXCHANGE and exch_inside):
            err = errno.EINVAL
        elif flags != RENAME_EXCHANGE and target is not None and n.is_dir != target.is_dir:
            err = errno.ENOTDIR if n.is_dir else errno.EISDIR
        elif flags != RENAME_EXCHANGE and target is not None and target.is_dir and target.children:
            err = errno.ENOTEMPTY
        else:
            err = None
        self.expect(err, self.client(ROOT).rename, src, dst, flags)
        if err is not None or target is n:
            return
        if flags == RENAME_EXCHANGE:
            sd.children[sname], dd.children[name] = target, n  # type: ignore[assignment]
        else:
            del sd.children[sname]
            dd.children[name] = n

    @rule(data=st.data(), name=NAMES)
    def link(self, data: st.DataObject, name: bytes) -> None:
        files = [e for e in self.entries() if not e[3].is_dir]
        if not files:
            return
        spath, _, sname, n = data.draw(st.sampled_from(files))
        dpath, dd = data.draw(st.sampled_from(self.dirs()))
        err = errno.EEXIST if name in dd.children else None
        self.expect(err, self.client(ROOT).link, self.join(spath, sname), self.join(dpath, name))
        if err is None:
            dd.children[name] = n

    @rule(data=st.data(), name=NAMES, link_to=st.sampled_from([b"a", b"../b", b"/x/y", b"t" * 300]))
    def symlink(self, data: st.DataObject, name: bytes, link_to: bytes) -> None:
        dpath, d = data.draw(st.sampled_from(self.dirs()))
        err = errno.EEXIST if name in d.children else None
        path = self.join(dpath, name)
        self.expect(err, self.client(ROOT).symlink, link_to, path)
        if err is None:
            d.children[name] = Node(stat.S_IFLNK, 0, 0, 0o777, target=link_to)
        if d.children[name].kind == stat.S_IFLNK:
            assert self.client(ROOT).readlink(path) == d.children[name].target

    @rule(data=st.data(), mode=st.sampled_from([0o600, 0o644, 0o755, 0o777, 0o000]), req=USERS)
    def chmod(self, data: st.DataObject, mode: int, req: Request) -> None:
        nodes = [e for e in self.entries() if e[3].kind != stat.S_IFLNK]
        if not nodes:
            return
        dpath, _, name, n = data.draw(st.sampled_from(nodes))
        if not self.searchable(req, dpath):
            err = errno.EACCES
        elif req.uid not in (0, n.uid):
            err = errno.EPERM
        else:
            err = None
        self.expect(err, self.client(req).chmod, self.join(dpath, name), mode)
        if err is None:
            n.mode = mode

    @rule(data=st.data(), key=st.sampled_from([b"user.a", b"user.b", b"trusted.t"]),
          value=st.binary(max_size=300))
    def setxattr(self, data: st.DataObject, key: bytes, value: bytes) -> None:
        nodes = [e for e in self.entries() if e[3].kind in (stat.S_IFREG, stat.S_IFDIR)]
        if not nodes:
            return
        dpath, _, name, n = data.draw(st.sampled_from(nodes))
        self.client(ROOT).setxattr(self.join(dpath, name), key, value)
        n.xattrs[key] = value

    @rule()
    def remount(self) -> None:
        """Unmount cleanly and mount again: everything must be as before."""
        self.rt.close()
        self.check_image(self.dev)
        self.dev = RamDevice.from_bytes(self.dev.image())
        self.rt = self.make_runtime(self.dev)
        self.clients = {r.uid: self.rt.client(r) for r in (ROOT, ALICE)}

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def tree_matches(self) -> None:
        c = self.client(ROOT)
        links: dict[int, int] = {}
        for dpath, d in self.dirs():
            assert sorted(c.listdir(dpath)) == sorted(d.children), dpath
            st_ = c.stat(dpath)
            assert st_.nlink == 2 + sum(1 for x in d.children.values() if x.is_dir)
            assert st_.mode & 0o7777 == d.mode, dpath
            for name, n in d.children.items():
                a = c.lstat(self.join(dpath, name))
                assert stat.S_IFMT(a.mode) == n.kind
                links[id(n)] = links.get(id(n), 0) + 1
                if n.kind == stat.S_IFREG:
                    assert a.size == len(n.data)
                    assert c.read_bytes(self.join(dpath, name)) == n.data
                    assert a.mode & 0o7777 == n.mode
                if n.kind == stat.S_IFLNK:
                    assert c.readlink(self.join(dpath, name)) == n.target
                if n.xattrs:
                    for k, v in n.xattrs.items():
                        assert c.getxattr(self.join(dpath, name), k, False) == v
        for dpath, d, name, n in self.entries():
            if not n.is_dir:
                assert c.lstat(self.join(dpath, name)).nlink == links[id(n)]

    def teardown(self) -> None:
        if not self.rt.closed:
            for c in self.clients.values():
                c.close_all()
            self.rt.close()
            self.check_image(self.dev)
