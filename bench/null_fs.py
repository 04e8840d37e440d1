"""bento's own floor: a file system that keeps everything in Python dicts and does
no work of its own, mounted through bento's runtime like any other.

    bento mount --fs bench/null_fs.py IMAGE MNT     (the image is not touched)

What a workload costs on it is what the runtime, pyfuse3 and the kernel's round
trips cost under bento's mount options (writeback cache, ``default_permissions``),
and no file system can do better on them; the difference to xv6 is xv6's own
Python. Unlinked inodes are never freed (no counting, no reclaim: the cheapest a
file system can be), and nothing is durable: fsync returns at once.

It checks no permission, and does not claim ``vfs_checks``: so it also mounts with
``-o no_default_permissions,no_writeback_cache``, the C floor's options, to tell what
those two cost from what pyfuse3 and the runtime cost. For measuring only.
"""

from __future__ import annotations

import errno
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from bento_user.api import (ROOT_INODE, ROOT_REQUEST, Attr, DirEntry, FileHandle, Filesystem, FsError,
                            InodeNo, Request, SetAttr, StatFs)
from bento_user.ks_emul import KernelServices


@dataclass
class Node:
    attr: Attr
    data: bytearray = field(default_factory=bytearray)
    children: dict[bytes, int] = field(default_factory=dict)
    target: bytes = b""


class NullFs(Filesystem):
    name = "null"
    ordered_metadata = False

    def init(self, ks: KernelServices) -> None:
        self.ks = ks
        self.nodes: dict[int, Node] = {}
        self.next_ino = ROOT_INODE
        self.files: dict[int, int] = {}  # handle -> inode
        self.next_fh = 1
        self._node(ROOT_REQUEST, stat.S_IFDIR | 0o755)

    def _node(self, req: Request, mode: int) -> Node:
        now = self.ks.now_ns()
        ino, self.next_ino = self.next_ino, self.next_ino + 1
        node = self.nodes[ino] = Node(Attr(InodeNo(ino), mode, 1 + stat.S_ISDIR(mode), req.uid,
                                           req.gid, 0, 0, now, now, now))
        return node

    def _get(self, ino: int) -> Node:
        node = self.nodes.get(ino)
        if node is None:
            raise FsError(errno.ESTALE)
        return node

    def _child(self, parent: int, name: bytes) -> Node:
        ino = self._get(parent).children.get(name)
        if ino is None:
            raise FsError(errno.ENOENT)
        return self.nodes[ino]

    def _set(self, node: Node, **changes: int) -> None:
        node.attr = replace(node.attr, **changes)

    def _add(self, req: Request, parent: int, name: bytes, mode: int) -> Node:
        d = self._get(parent)
        if name in d.children:
            raise FsError(errno.EEXIST)
        node = self._node(req, mode)
        d.children[name] = node.attr.ino
        now = self.ks.now_ns()
        self._set(d, nlink=d.attr.nlink + stat.S_ISDIR(mode), mtime_ns=now, ctime_ns=now)
        return node

    # -- names ---------------------------------------------------------------------

    def lookup(self, req: Request, parent: InodeNo, name: bytes) -> Attr:
        return self._child(parent, name).attr

    def forget(self, items: object) -> None:
        pass

    def mknod(self, req: Request, parent: InodeNo, name: bytes, mode: int, rdev: int) -> Attr:
        return self._add(req, parent, name, mode).attr

    def mkdir(self, req: Request, parent: InodeNo, name: bytes, mode: int) -> Attr:
        return self._add(req, parent, name, stat.S_IFDIR | mode).attr

    def symlink(self, req: Request, parent: InodeNo, name: bytes, target: bytes) -> Attr:
        node = self._add(req, parent, name, stat.S_IFLNK | 0o777)
        node.target = target
        self._set(node, size=len(target))
        return node.attr

    def readlink(self, req: Request, ino: InodeNo) -> bytes:
        return self._get(ino).target

    def link(self, req: Request, ino: InodeNo, new_parent: InodeNo, new_name: bytes) -> Attr:
        node, d = self._get(ino), self._get(new_parent)
        if new_name in d.children:
            raise FsError(errno.EEXIST)
        d.children[new_name] = ino
        self._set(node, nlink=node.attr.nlink + 1)
        return node.attr

    def unlink(self, req: Request, parent: InodeNo, name: bytes) -> None:
        node = self._child(parent, name)
        if node.children:
            raise FsError(errno.ENOTEMPTY)
        d = self._get(parent)
        del d.children[name]
        now = self.ks.now_ns()
        self._set(node, nlink=0 if stat.S_ISDIR(node.attr.mode) else node.attr.nlink - 1,
                  ctime_ns=now)
        self._set(d, nlink=d.attr.nlink - stat.S_ISDIR(node.attr.mode), mtime_ns=now,
                  ctime_ns=now)

    rmdir = unlink

    def rename(self, req: Request, parent: InodeNo, name: bytes, new_parent: InodeNo,
               new_name: bytes, flags: int = 0) -> None:
        node = self._child(parent, name)
        target = self._get(new_parent).children.get(new_name)
        if target is not None:
            self.unlink(req, new_parent, new_name)
        del self._get(parent).children[name]
        self._get(new_parent).children[new_name] = node.attr.ino

    # -- attributes ----------------------------------------------------------------

    def getattr(self, req: Request, ino: InodeNo) -> Attr:
        return self._get(ino).attr

    def setattr(self, req: Request, ino: InodeNo, changes: SetAttr,
                fh: FileHandle | None = None) -> Attr:
        node, now = self._get(ino), self.ks.now_ns()
        new: dict[str, int] = {"ctime_ns": now if changes.ctime_ns is None else changes.ctime_ns}
        if changes.size is not None:
            del node.data[changes.size:]
            node.data.extend(bytes(changes.size - len(node.data)))
            new["size"] = changes.size
        if changes.mode is not None:
            new["mode"] = stat.S_IFMT(node.attr.mode) | changes.mode
        for key in ("uid", "gid", "atime_ns", "mtime_ns"):
            value = getattr(changes, key)
            if value is not None:
                new[key] = now if value == SetAttr.NOW else value
        self._set(node, **new)
        return node.attr

    def statfs(self, req: Request) -> StatFs:
        return StatFs(4096, 1 << 22, 1 << 21, 1 << 21, 1 << 22, 1 << 21)

    def getxattr(self, req: Request, ino: InodeNo, name: bytes) -> bytes:
        raise FsError(errno.ENODATA)  # answered, as xv6 answers: the kernel asks on

    def listxattr(self, req: Request, ino: InodeNo) -> list[bytes]:
        return []

    # -- files and directories -----------------------------------------------------

    def _handle(self, ino: int) -> FileHandle:
        fh, self.next_fh = self.next_fh, self.next_fh + 1
        self.files[fh] = ino
        return FileHandle(fh)

    def open(self, req: Request, ino: InodeNo, flags: int) -> FileHandle:
        return self._handle(ino)

    def release(self, fh: FileHandle) -> None:
        del self.files[fh]

    releasedir = release

    def create(self, req: Request, parent: InodeNo, name: bytes, mode: int,
               flags: int) -> tuple[Attr, FileHandle]:
        node = self._add(req, parent, name, stat.S_IFREG | mode)
        return node.attr, self._handle(node.attr.ino)

    def read(self, fh: FileHandle, offset: int, size: int) -> bytes:
        return bytes(self.nodes[self.files[fh]].data[offset:offset + size])

    def write(self, fh: FileHandle, offset: int, data: bytes | memoryview) -> int:
        node = self.nodes[self.files[fh]]
        if len(node.data) < offset:
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset:offset + len(data)] = data
        now = self.ks.now_ns()
        self._set(node, size=len(node.data), mtime_ns=now, ctime_ns=now)
        return len(data)

    def fsync(self, fh: FileHandle, datasync: bool) -> None:
        pass

    def opendir(self, req: Request, ino: InodeNo) -> FileHandle:
        return self._handle(ino)

    def readdir(self, fh: FileHandle, offset: int) -> Iterable[DirEntry]:
        entries = list(self.nodes[self.files[fh]].children.items())[offset:]
        return [DirEntry(name, InodeNo(ino), stat.S_IFMT(self.nodes[ino].attr.mode), offset + i + 1)
                for i, (name, ino) in enumerate(entries)]

    def fsyncdir(self, fh: FileHandle, datasync: bool) -> None:
        pass

