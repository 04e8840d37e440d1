"""The POSIX model both fuzzers check against: a tree of nodes and, for each system
call, the answer Linux gives.

Each operation returns the error the call must fail with — ``None`` when it must
succeed, and then the model has changed as the call changes the file system — or a
tuple of errors where the order of Linux's checks is left open (the kernel's VFS and
the file system may find different faults first). The model never imports a file
system: it is the oracle, written from Linux's rules (fs/namei.c, fs/open.c,
fs/attr.c), and tests/fuzz/test_model.py checks a handful of its tricky answers
against the kernel's own tmpfs.

The operation fuzzer (ops.py) drives it as root and as an unprivileged user, with
permissions; the crash explorer (crash.py) as root over a small namespace, adding
data versions and durability on top.
"""

from __future__ import annotations

import errno
import itertools
import stat
from dataclasses import dataclass, field

from bento_user.api import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE,
                            RENAME_EXCHANGE, RENAME_NOREPLACE, SEEK_DATA, Request)

ROOT = Request(uid=0, gid=0, umask=0o022)
NAME_MAX = 255
XATTR_SIZE_MAX = 65536  # the longest value Linux passes to a file system

Err = int | tuple[int, ...] | None


@dataclass(eq=False)
class Node:
    kind: int                     # stat.S_IFREG / S_IFDIR / S_IFLNK
    uid: int
    gid: int
    mode: int                     # permission bits (and setuid, setgid, sticky)
    ident: int                    # stable across names: hard links share it
    data: bytearray = field(default_factory=bytearray)
    children: dict[bytes, Node] = field(default_factory=dict)
    target: bytes = b""
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    # Blocks (of BLOCK bytes) that may hold data: given it by a write, fallocate or
    # zero range, and not freed since by a punch or a truncate. A block outside
    # is a hole on every file system that reports holes.
    mapped: set[int] = field(default_factory=set)

    @property
    def is_dir(self) -> bool:
        return self.kind == stat.S_IFDIR


def allowed(req: Request, n: Node, mask: int) -> bool:
    """Linux's permission check (mask: 4 read, 2 write, 1 execute/search)."""
    if req.uid == 0:
        return not mask & 1 or n.is_dir or bool(n.mode & 0o111)
    bits = (n.mode >> 6) if req.uid == n.uid else (n.mode >> 3) if req.gid == n.gid else n.mode
    return (bits & 7 & mask) == mask


BLOCK = 4096  # the granularity of holes the model is sure of (a page; xv6's block)
SECTOR = 512  # the least a hole can be on any file system


def _blocks(offset: int, end: int) -> range:
    """The blocks ``offset .. end`` touches."""
    return range(offset // BLOCK, -(-end // BLOCK))


def join(d: bytes, name: bytes) -> bytes:
    return d.rstrip(b"/") + b"/" + name


def killed_suid(req: Request, n: Node) -> int:
    """An unprivileged write or truncate, or anyone's chown: setuid goes; setgid too
    if group-executable or the caller is neither root nor in the file's group
    (setattr_should_drop_sgid)."""
    keep_sgid = not n.mode & 0o010 and (req.uid == 0 or req.gid == n.gid)
    return n.mode & (~0o4000 if keep_sgid else ~0o6000)


class Model:
    def __init__(self) -> None:
        self._ids = itertools.count()
        self.root = self._node(stat.S_IFDIR, ROOT, 0o755)

    def _node(self, kind: int, owner: Request, mode: int, **kw: object) -> Node:
        return Node(kind, owner.uid, owner.gid, mode, next(self._ids), **kw)  # type: ignore[arg-type]

    # -- walking -------------------------------------------------------------------

    def dirs(self) -> list[tuple[bytes, Node]]:
        """(path, node) of every directory, the root as b"/"."""
        out, todo = [], [(b"", self.root)]
        while todo:
            path, n = todo.pop()
            out.append((path or b"/", n))
            todo += [(path + b"/" + k, c) for k, c in sorted(n.children.items()) if c.is_dir]
        return out

    def entries(self) -> list[tuple[bytes, Node, bytes, Node]]:
        """(dir path, dir, name, node) of every entry."""
        return [(p, d, k, c) for p, d in self.dirs() for k, c in sorted(d.children.items())]

    def regular_files(self) -> list[tuple[bytes, Node, bytes, Node]]:
        return [e for e in self.entries() if e[3].kind == stat.S_IFREG]

    def lookup(self, path: bytes) -> tuple[bytes, Node | None, bytes, Node | None]:
        """(dir path, dir, name, node) of ``path``; the dir is None if the path
        leads through something missing or not a directory."""
        dpath, _, name = path.rstrip(b"/").rpartition(b"/")
        d: Node | None = self.root
        for part in [p for p in dpath.split(b"/") if p]:
            d = d.children.get(part) if d is not None and d.is_dir else None
        if d is None or not d.is_dir:
            return dpath or b"/", None, name, None
        return dpath or b"/", d, name, d.children.get(name)

    def searchable(self, req: Request, dpath: bytes) -> bool:
        """May ``req`` walk down to (and into) directory ``dpath``?"""
        return self.walk_error(req, dpath) is None

    def walk_error(self, req: Request, dpath: bytes) -> Err:
        """Why ``req`` cannot walk down to and into ``dpath`` (the kernel's path walk,
        which comes before any other check): EACCES, ENOENT or ENOTDIR."""
        n: Node | None = self.root
        for part in [p for p in dpath.split(b"/") if p]:
            assert n is not None
            if not n.is_dir:
                return errno.ENOTDIR
            if not allowed(req, n, 1):
                return errno.EACCES
            n = n.children.get(part)
            if n is None:
                return errno.ENOENT
        assert n is not None
        if not n.is_dir:
            return errno.ENOTDIR
        return None if allowed(req, n, 1) else errno.EACCES

    def link_counts(self) -> dict[int, int]:
        """Names per node (by ident) — a file's link count."""
        links: dict[int, int] = {}
        for _, _, _, n in self.entries():
            links[n.ident] = links.get(n.ident, 0) + 1
        return links

    # -- names made ----------------------------------------------------------------

    def create_error(self, req: Request, dpath: bytes, d: Node | None, name: bytes) -> Err:
        """Why a new name ``name`` in ``d`` cannot be made (None: it can)."""
        walk = self.walk_error(req, dpath)  # Linux walks the path first
        if walk is not None or d is None:
            return walk or errno.ENOENT
        if len(name) > NAME_MAX:  # the VFS may check write permission before the name
            return errno.ENAMETOOLONG if allowed(req, d, 3) else (errno.ENAMETOOLONG, errno.EACCES)
        if name in d.children:
            return errno.EEXIST
        if not allowed(req, d, 3):
            return errno.EACCES
        return None

    def mkdir(self, req: Request, dpath: bytes, d: Node | None, name: bytes, mode: int) -> Err:
        err = self.create_error(req, dpath, d, name)
        if err is None:
            assert d is not None
            d.children[name] = self._node(stat.S_IFDIR, req, mode & ~req.umask & 0o7777)
        return err

    def symlink(self, req: Request, dpath: bytes, d: Node | None, name: bytes,
                target: bytes) -> Err:
        err = self.create_error(req, dpath, d, name)
        if err is None:
            assert d is not None
            d.children[name] = self._node(stat.S_IFLNK, req, 0o777, target=target)
        return err

    def open_write(self, req: Request, dpath: bytes, d: Node | None, name: bytes,
                   create: bool) -> Err:
        """open(O_WRONLY, with O_CREAT if ``create``, mode 0644) of a file or of a
        symlink's target (ours dangle: ENOENT)."""
        n = d.children.get(name) if d is not None else None
        if n is None:
            if not create:
                return errno.ENOENT
            err = self.create_error(req, dpath, d, name)
            if err is None:
                assert d is not None
                d.children[name] = self._node(stat.S_IFREG, req, 0o644 & ~req.umask)
            return err
        if not self.searchable(req, dpath):
            return errno.EACCES
        if n.kind == stat.S_IFLNK:
            return errno.ENOENT
        if n.is_dir:
            return errno.EISDIR
        if not allowed(req, n, 2):
            return errno.EACCES
        return None

    def link(self, req: Request, src: bytes, dst: bytes) -> Err:
        spath, _, _, n = self.lookup(src)
        dpath, dd, name, over = self.lookup(dst)
        walk = self.walk_error(req, spath) or self.walk_error(req, dpath)
        if walk is not None or n is None or dd is None:
            return walk or errno.ENOENT
        if over is not None:
            return errno.EEXIST
        if n.is_dir:
            return errno.EPERM
        err = self.create_error(req, dpath, dd, name)
        if err is None:
            dd.children[name] = n
        return err

    # -- contents and attributes ---------------------------------------------------

    @staticmethod
    def write(req: Request, n: Node, offset: int, content: bytes) -> None:
        """pwrite through a descriptor open for writing (it cannot fail here)."""
        if content:
            if len(n.data) < offset:
                n.data.extend(bytes(offset - len(n.data)))
            n.data[offset:offset + len(content)] = content
            n.mapped.update(_blocks(offset, offset + len(content)))
        if req.uid and content:  # an empty write ends in the write checks, before
            n.mode = killed_suid(req, n)  # the privileges go (Linux, tmpfs, ext4)

    @staticmethod
    def truncate(n: Node, size: int) -> None:
        n.data = n.data[:size] + bytearray(max(0, size - len(n.data)))
        n.mapped = {b for b in n.mapped if b * BLOCK < size}

    @staticmethod
    def fallocate(req: Request, n: Node, mode: int, offset: int, length: int) -> None:
        """fallocate(2) in the modes FUSE passes on, through a writable descriptor;
        the caller has seen it succeed (a file system may refuse a mode:
        EOPNOTSUPP)."""
        end, size = offset + length, len(n.data)
        if mode & FALLOC_FL_PUNCH_HOLE:
            n.data[offset:min(end, size)] = bytes(max(0, min(end, size) - offset))
            n.mapped -= set(range(-(-offset // BLOCK), end // BLOCK))
        else:
            if mode & FALLOC_FL_ZERO_RANGE:
                n.data[offset:min(end, size)] = bytes(max(0, min(end, size) - offset))
            if not mode & FALLOC_FL_KEEP_SIZE and end > size:
                n.data.extend(bytes(end - size))
            n.mapped.update(_blocks(offset, end))
        if req.uid:
            n.mode = killed_suid(req, n)

    @staticmethod
    def seek_problem(n: Node, offset: int, whence: int, answer: int | str,
                     reports_holes: bool) -> str | None:
        """What is wrong with ``answer`` (an offset, or an errno's name) to
        lseek(SEEK_DATA/SEEK_HOLE) at ``offset``, or None. Linux leaves a file
        system free to call a hole data, so the model insists only on what must
        hold: ENXIO exactly at or past the end; no byte that is not zero skipped
        as a hole; and, where the file system reports holes (``reports_holes``),
        no block the model knows unmapped reported as data."""
        size, data = len(n.data), n.data
        if offset >= size:
            return None if answer == "ENXIO" else f"offset {offset} >= size {size}: ENXIO"
        if whence == SEEK_DATA:
            if answer == "ENXIO":
                return None if not data[offset:].strip(b"\0") else "ENXIO before data"
            if not isinstance(answer, int) or not offset <= answer < size:
                return f"SEEK_DATA gave {answer}"
            if data[offset:answer].strip(b"\0"):
                return f"SEEK_DATA {answer} skipped data"
            if reports_holes and answer // BLOCK not in n.mapped:
                return f"SEEK_DATA {answer} is in a hole"
            return None
        if not isinstance(answer, int) or not offset <= answer <= size:
            return f"SEEK_HOLE gave {answer}"
        if data[answer:(answer // SECTOR + 1) * SECTOR].strip(b"\0"):
            return f"SEEK_HOLE {answer} is data"
        if reports_holes:
            hole = next((max(offset, b * BLOCK) for b in range(offset // BLOCK, -(-size // BLOCK))
                         if b not in n.mapped), size)
            if answer > hole:
                return f"SEEK_HOLE {answer} missed the hole at {hole}"
        return None

    def truncate_by_open(self, req: Request, dpath: bytes, n: Node) -> Err:
        """open(O_RDONLY | O_TRUNC): Linux truncates even for a read-only open, and
        needs write permission for it."""
        if not (self.searchable(req, dpath) and allowed(req, n, 6)):
            return errno.EACCES
        n.data = bytearray()
        n.mapped = set()
        if req.uid:
            n.mode = killed_suid(req, n)
        return None

    def chmod(self, req: Request, dpath: bytes, n: Node, mode: int) -> Err:
        if not self.searchable(req, dpath):
            return errno.EACCES
        if req.uid not in (0, n.uid):
            return errno.EPERM
        if req.uid and req.gid != n.gid:   # an owner outside the file's group: no setgid
            mode &= ~0o2000
        n.mode = mode
        return None

    def chown(self, req: Request, dpath: bytes, n: Node, uid: int, gid: int) -> Err:
        """chown(2) with -1 for "unchanged" (at least one given): root changes both;
        the owner may give the file to a group of theirs, nothing else (chown_ok,
        chgrp_ok). A non-directory then loses setuid, and setgid when group-executable
        or the caller is neither in its group nor root (even root's chown clears
        setuid: notify_change's ATTR_KILL_SUID)."""
        if not self.searchable(req, dpath):
            return errno.EACCES
        if req.uid != 0 and (req.uid != n.uid or uid not in (-1, n.uid)
                             or gid not in (-1, n.gid, req.gid)):
            return errno.EPERM
        if not n.is_dir:
            n.mode = killed_suid(req, n)
        n.uid = n.uid if uid == -1 else uid
        n.gid = n.gid if gid == -1 else gid
        return None

    @staticmethod
    def setxattr(req: Request, n: Node, key: bytes, value: bytes) -> Err:
        if len(value) > XATTR_SIZE_MAX:  # the system call's own check, before any name's
            return errno.E2BIG
        if key == b"user.":  # a namespace with no name in it
            return errno.EINVAL
        n.xattrs[key] = value
        return None

    # -- names removed and moved ---------------------------------------------------

    def unlink(self, req: Request, path: bytes) -> Err:
        return self._remove(req, path, directory=False)

    def rmdir(self, req: Request, path: bytes) -> Err:
        return self._remove(req, path, directory=True)

    def _remove(self, req: Request, path: bytes, directory: bool) -> Err:
        dpath, d, name, n = self.lookup(path)
        walk = self.walk_error(req, dpath)
        if walk is not None or d is None or n is None:
            return walk or errno.ENOENT
        if not allowed(req, d, 3):
            return errno.EACCES
        if n.is_dir != directory:
            return errno.EISDIR if n.is_dir else errno.ENOTDIR
        if n.children:
            return errno.ENOTEMPTY
        del d.children[name]
        return None

    def rename(self, req: Request, src: bytes, dst: bytes, flags: int = 0) -> Err:
        spath, sd, sname, n = self.lookup(src)
        dpath, dd, name, target = self.lookup(dst)
        walk = self.walk_error(req, spath) or self.walk_error(req, dpath)
        if walk is not None or sd is None or n is None or dd is None:
            return walk or errno.ENOENT
        inside = n.is_dir and (dpath.rstrip(b"/") + b"/").startswith(src + b"/")
        exch_inside = (target is not None and target.is_dir
                       and (spath.rstrip(b"/") + b"/").startswith(dst + b"/"))
        if target is n:
            err: Err = None if flags != RENAME_NOREPLACE else errno.EEXIST
        elif flags == RENAME_EXCHANGE and target is None:
            err = errno.ENOENT
        elif flags == RENAME_NOREPLACE and target is not None:
            err = errno.EEXIST
        elif inside or (flags == RENAME_EXCHANGE and exch_inside):
            err = errno.EINVAL
        else:
            err = self._rename_error(req, sd, n, dd, target, flags)
        if err is not None or target is n:
            return err
        if flags == RENAME_EXCHANGE:
            assert target is not None
            sd.children[sname], dd.children[name] = target, n
        else:
            del sd.children[sname]
            dd.children[name] = n
        return None

    @staticmethod
    def _rename_error(req: Request, sd: Node, n: Node, dd: Node, target: Node | None,
                      flags: int) -> Err:
        """After the path walk and the checks on names: the kernel's permission checks
        (vfs_rename: write on both directories, and on a directory that changes its
        parent), then the kinds; the file system alone finds ENOTEMPTY. Without the
        kernel in front, either may come first."""
        kind = None
        if flags != RENAME_EXCHANGE and target is not None and n.is_dir != target.is_dir:
            kind = errno.ENOTDIR if n.is_dir else errno.EISDIR
        elif flags != RENAME_EXCHANGE and target is not None and target.is_dir and target.children:
            kind = errno.ENOTEMPTY
        moved = [x for x in (n, target if flags == RENAME_EXCHANGE else None)
                 if x is not None and x.is_dir and sd is not dd]
        if all(allowed(req, x, m) for x, m in [(sd, 3), (dd, 3), *((x, 2) for x in moved)]):
            return kind
        return errno.EACCES if kind is None else (errno.EACCES, kind)
