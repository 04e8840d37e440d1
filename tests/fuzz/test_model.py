"""The POSIX model (fuzz/model.py) on its own: its answers in tricky cases against the
kernel's tmpfs, and the crash explorer's use of it."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bento_user.api import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, RENAME_EXCHANGE,
                            RENAME_NOREPLACE, SEEK_DATA, SEEK_HOLE, Request)
from fuzz.crash import execute
from fuzz.model import ROOT, Err, Model
from fuzz.mount_client import MountClient
from fuzz.target import Target

ALICE = Request(uid=1000, gid=1000, umask=0o022)
E = errno


def model_call(m: Model, req: Request, op: str, *args: Any) -> Err:
    """The model's answer to one path-level call (the way ops.py asks it)."""
    if op in ("unlink", "rmdir", "rename", "link"):
        return getattr(m, op)(req, *args)
    dpath, d, name, n = m.lookup(args[0])
    if op == "mkdir":
        return m.mkdir(req, dpath, d, name, args[1])
    if op == "create":
        err = m.open_write(req, dpath, d, name, create=True)
        if err is None:
            m.write(req, d.children[name], 0, args[1])  # type: ignore[union-attr]
        return err
    if op == "chmod":
        return m.chmod(req, dpath, n, args[1])  # type: ignore[arg-type]
    if op == "chown":
        return m.chown(req, dpath, n, args[1], args[2])  # type: ignore[arg-type]
    if op == "setxattr":
        return m.setxattr(req, n, args[1], b"v")  # type: ignore[arg-type]
    if op == "trunc_open":
        return m.truncate_by_open(req, dpath, n)  # type: ignore[arg-type]
    raise ValueError(op)


def kernel_call(root: Path, req: Request, op: str, *args: Any) -> int | None:
    """The same call on the real file system under ``root``; the errno or None."""
    c = MountClient(os.fsencode(root), req)
    try:
        if op == "create":
            fd = c.open(args[0], os.O_WRONLY | os.O_CREAT, 0o644)
            c.pwrite(fd, args[1], 0)
            c.close(fd)
        elif op == "trunc_open":
            c.close(c.open(args[0], os.O_RDONLY | os.O_TRUNC))
        elif op == "setxattr":
            c.setxattr(args[0], args[1], b"v")
        elif op == "mkdir":
            c.mkdir(*args)
        else:
            getattr(c, op)(*args)
    except OSError as e:
        return e.errno
    return None


# Each case: calls in order, as (user, op, args..., the answer Linux gives).
CASES: dict[str, list[tuple[Any, ...]]] = {
    "search and write permission": [
        (ROOT, "mkdir", b"/d", 0o755, None),
        (ALICE, "mkdir", b"/d/x", 0o755, E.EACCES),
        (ALICE, "create", b"/d/f", b"x", E.EACCES),
        (ROOT, "mkdir", b"/d/s", 0o700, None),
        (ALICE, "unlink", b"/d/s/nothing", E.EACCES),
    ],
    "a long name where the caller may not write": [
        (ALICE, "mkdir", b"/" + b"n" * 256, 0o755, (E.ENAMETOOLONG, E.EACCES)),
        (ROOT, "mkdir", b"/" + b"n" * 256, 0o755, E.ENAMETOOLONG),
    ],
    "renames that Linux refuses": [
        (ROOT, "mkdir", b"/a", 0o755, None),
        (ROOT, "mkdir", b"/a/b", 0o755, None),
        (ROOT, "create", b"/f", b"data", None),
        (ROOT, "rename", b"/a", b"/a/b/c", 0, E.EINVAL),
        (ROOT, "rename", b"/f", b"/a", 0, E.EISDIR),
        (ROOT, "rename", b"/a", b"/f", 0, E.ENOTDIR),
        (ROOT, "mkdir", b"/e", 0o755, None),
        (ROOT, "rename", b"/e", b"/a", 0, E.ENOTEMPTY),
        (ROOT, "rename", b"/f", b"/g", RENAME_EXCHANGE, E.ENOENT),
        (ROOT, "rename", b"/f", b"/e", RENAME_NOREPLACE, E.EEXIST),
        (ROOT, "rename", b"/f", b"/f", RENAME_NOREPLACE, E.EEXIST),
        (ROOT, "rename", b"/f", b"/f", 0, None),
        (ROOT, "rename", b"/a/b", b"/e", RENAME_EXCHANGE, None),
    ],
    "names of directories": [
        (ROOT, "mkdir", b"/d", 0o755, None),
        (ROOT, "create", b"/f", b"", None),
        (ROOT, "link", b"/d", b"/d2", E.EPERM),
        (ROOT, "unlink", b"/d", E.EISDIR),
        (ROOT, "rmdir", b"/f", E.ENOTDIR),
        (ROOT, "link", b"/f", b"/d", E.EEXIST),
    ],
    "unprivileged writes to setuid files": [
        (ROOT, "create", b"/s", b"", None),
        (ROOT, "chmod", b"/s", 0o6777, None),
        (ALICE, "create", b"/s", b"alice", None),   # setuid and setgid go
        (ROOT, "chmod", b"/s", 0o6766, None),
        (ALICE, "create", b"/s", b"again", None),   # setgid without group x: Alice is
        (ROOT, "chmod", b"/s", 0o6766, None),       # not in the group, so it goes too
        (ROOT, "create", b"/s", b"root", None),     # root keeps both (CAP_FSETID)
        (ALICE, "chmod", b"/s", 0o777, E.EPERM),
    ],
    "an empty write keeps setuid (the write checks end it before the privileges go)": [
        (ROOT, "create", b"/s", b"", None),
        (ROOT, "chmod", b"/s", 0o6777, None),
        (ALICE, "create", b"/s", b"", None),
    ],
    "a read-only open that truncates": [
        (ROOT, "create", b"/f", b"secret", None),
        (ALICE, "trunc_open", b"/f", E.EACCES),
        (ROOT, "chmod", b"/f", 0o666, None),
        (ALICE, "trunc_open", b"/f", None),
    ],
    "chown and chgrp: who may, and what setuid and setgid become": [
        (ROOT, "create", b"/f", b"", None),
        (ROOT, "chmod", b"/f", 0o6755, None),
        (ROOT, "chown", b"/f", 1000, -1, None),      # root's chown clears setuid too;
        (ROOT, "chmod", b"/f", 0o6745, None),        # setgid with group x goes as well
        (ALICE, "chown", b"/f", -1, 1000, None),     # the owner, to her own group
        (ALICE, "chown", b"/f", 0, -1, E.EPERM),     # but not to another owner
        (ALICE, "chown", b"/f", -1, 0, E.EPERM),     # nor to a group she is not in
        (ALICE, "chown", b"/f", 1000, -1, None),     # her own uid: allowed, a no-op
        (ROOT, "chmod", b"/f", 0o2740, None),        # setgid without group x: Alice is in
        (ALICE, "chown", b"/f", -1, 1000, None),     # the group, so it stays
        (ROOT, "chown", b"/f", -1, 0, None),         # root: stays (not group-executable)
        (ROOT, "mkdir", b"/d", 0o755, None),
        (ROOT, "chmod", b"/d", 0o6755, None),
        (ROOT, "chown", b"/d", 1000, 1000, None),    # a directory keeps both
        (ALICE, "chown", b"/d", -1, 0, E.EPERM),
        (ROOT, "chown", b"/f", 1000, 0, None),       # Alice's file in root's group:
        (ALICE, "chmod", b"/f", 0o6766, None),       # her chmod cannot set setgid
    ],
    "extended attribute names": [
        (ROOT, "create", b"/f", b"", None),
        (ROOT, "setxattr", b"/f", b"user.", E.EINVAL),
        (ROOT, "setxattr", b"/f", b"user.a", None),
    ],
}


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root (mount, other users)")
    mnt = Path(tempfile.mkdtemp(prefix="bento-model-", dir="/var/tmp"))  # others may search it
    mnt.chmod(0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "tmpfs", str(mnt)],
                   check=True)
    old = os.umask(0o022)
    try:
        yield mnt
    finally:
        os.umask(old)
        subprocess.run(["umount", str(mnt)], check=True)
        mnt.rmdir()


def tree(root: Path) -> dict[bytes, tuple[int, int, bytes, int, int]]:
    """path -> (mode, link count, contents, owner, group) of everything under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = Path(os.fsdecode(p)).read_bytes() if name in filenames else b""
            out[p[len(os.fsencode(root)):]] = (st.st_mode, st.st_nlink if name in filenames else 0,
                                               data, st.st_uid, st.st_gid)
    return out


def model_tree(m: Model) -> dict[bytes, tuple[int, int, bytes, int, int]]:
    links = m.link_counts()
    return {(dpath.rstrip(b"/") + b"/" + name): (
        n.kind | n.mode, 0 if n.is_dir else links[n.ident], bytes(n.data), n.uid, n.gid)
        for dpath, _, name, n in m.entries()}


@pytest.mark.parametrize("case", list(CASES))
def test_the_model_answers_as_tmpfs_does(tmpfs: Path, case: str) -> None:
    m = Model()
    for req, op, *args, linux in CASES[case]:
        got = kernel_call(tmpfs, req, op, *args)
        expected = linux if isinstance(linux, tuple) else (linux,)
        assert got in expected, f"{op}{tuple(args)} as uid {req.uid}: tmpfs says {got}"
        answer = model_call(m, req, op, *args)
        assert answer == linux, f"{op}{tuple(args)} as uid {req.uid}: the model says {answer}"
    assert model_tree(m) == tree(tmpfs)


def test_a_directory_fsync_of_a_file_is_refused_by_both_the_fs_and_the_model() -> None:
    """The crash explorer's old model allowed fsyncdir of a name that had become a
    regular file (a rename over "A"): a false alarm, the open with O_DIRECTORY fails."""
    run = execute(Target.load("xv6"), [("creat", "foo"), ("rename", "foo", "A"),
                                       ("fsyncdir", "A"), ("fsync", "A")])
    assert run.succeeded == [True, True, False, True]


# -- holes: the model's fallocate and its SEEK_DATA/SEEK_HOLE oracle against tmpfs --

FILE_OPS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from([0, 100, 4096, 9000, 70_000]),
              st.integers(1, 9000)),
    st.tuples(st.just("truncate"), st.sampled_from([0, 1, 4097, 50_000, 100_000]), st.just(0)),
    st.tuples(st.sampled_from([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE]),
              st.sampled_from([0, 100, 4096, 30_000]), st.sampled_from([1, 4096, 10_000, 70_000]))),
    max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=FILE_OPS)
def test_the_hole_oracle_accepts_what_tmpfs_answers(tmpfs: Path, ops: list[tuple[Any, ...]]) -> None:
    """tmpfs reports holes (and calls preallocated pages holes, which the model
    allows): every answer it gives must pass the model's check, exactly (holes
    reported) — a model that cried wolf here would cry wolf at every file system."""
    m, n = Model(), None
    c = MountClient(os.fsencode(tmpfs), ROOT)
    (tmpfs / "f").unlink(missing_ok=True)
    fd = c.open(b"/f", os.O_RDWR | os.O_CREAT, 0o644)
    err = m.open_write(ROOT, b"/", m.root, b"f", create=True)
    assert err is None
    n = m.root.children[b"f"]
    try:
        for op, a, b in ops:
            if op == "write":
                c.pwrite(fd, b"w" * b, a)
                m.write(ROOT, n, a, b"w" * b)
            elif op == "truncate":
                os.ftruncate(fd, a)
                m.truncate(n, a)
            else:
                c.fallocate(fd, op, a, b)
                m.fallocate(ROOT, n, op, a, b)
        assert c.pread(fd, 1 << 20, 0) == bytes(n.data)
        for offset in (0, 1, 4096, 8000, 40_000, 99_999, 200_000):
            for whence in (SEEK_DATA, SEEK_HOLE):
                try:
                    answer: int | str = c.lseek(fd, offset, whence)
                except OSError as e:
                    answer = errno.errorcode[e.errno]
                problem = m.seek_problem(n, offset, whence, answer, reports_holes=True)
                assert problem is None, f"{ops}: lseek({offset}, {whence}) = {answer}: {problem}"
    finally:
        c.close(fd)
