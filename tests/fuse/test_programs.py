"""Real programs on a real mount; after each, unmount, fsck clean, remount, verify."""

from __future__ import annotations

import hashlib
import mmap
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Mount, tree_digest

SITE = Path(pytest.__file__).resolve().parents[1]  # the virtualenv's site-packages
TREE = SITE / "pip" / "_internal"  # ~360 entries of real source


def run(*cmd: str, cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr}"
    return done.stdout


def test_git_init_commit_clone_fsck(mnt: Mount) -> None:
    repo = mnt.path / "repo"
    run("cp", "-a", str(TREE), str(repo))
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "gc.auto=0")
    run(*git, "init", "-q", cwd=repo)
    run(*git, "add", "-A", cwd=repo)
    run(*git, "commit", "-q", "-m", "import", cwd=repo)
    (repo / "__init__.py").write_text("changed\n")
    run(*git, "commit", "-q", "-am", "change", cwd=repo)
    run(*git, "clone", "-q", "--no-local", str(repo), str(mnt.path / "clone"))
    run(*git, "fsck", "--strict", cwd=mnt.path / "clone")
    head = run(*git, "rev-parse", "HEAD", cwd=repo)
    mnt.remount()
    run(*git, "fsck", "--strict", cwd=repo)
    assert run(*git, "status", "--porcelain", cwd=repo) == ""
    assert run(*git, "rev-parse", "HEAD", cwd=mnt.path / "clone") == head
    assert run("git", "diff", "--no-index", "--stat", str(repo / "commands"),
               str(mnt.path / "clone" / "commands")) == ""


def test_tar_extract_and_create(mnt: Mount, tmp_path: Path) -> None:
    tarball = tmp_path / "src.tar"
    run("tar", "-cf", str(tarball), "-C", str(TREE.parent), TREE.name)
    run("tar", "-xf", str(tarball), "-C", str(mnt.path))
    run("diff", "-r", str(TREE), str(mnt.path / TREE.name))
    run("tar", "-cf", str(mnt.path / "again.tar"), "-C", str(mnt.path), TREE.name)
    listing = run("tar", "-tf", str(tarball))
    assert run("tar", "-tf", str(mnt.path / "again.tar")) == listing
    mnt.remount()
    run("diff", "-r", str(TREE), str(mnt.path / TREE.name))
    assert run("tar", "-tf", str(mnt.path / "again.tar")) == listing


def make_rich_tree(src: Path) -> None:
    """Modes, times, xattrs, hard links, symlinks (dangling too), an empty dir."""
    (src / "sub" / "empty").mkdir(parents=True)
    for i, mode in enumerate((0o644, 0o600, 0o755, 0o4755, 0o2750, 0o444)):
        f = src / "sub" / f"f{i}"
        f.write_bytes(os.urandom(1000 * i + 1))
        os.chmod(f, mode)
        os.utime(f, ns=(1_600_000_000_123_456_789 + i, 1_500_000_000_987_654_321 + i))
        os.setxattr(f, b"user.note", f"file {i}".encode())
    os.link(src / "sub" / "f1", src / "hard1")
    os.link(src / "sub" / "f1", src / "sub" / "hard2")
    os.symlink("sub/f2", src / "rel")
    os.symlink("/nonexistent/target", src / "dangling")
    os.chown(src / "sub" / "f0", 1000, 1000)
    os.utime(src / "sub", ns=(1_400_000_000_000_000_001, 1_400_000_000_000_000_002))


def describe(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            link_group = inodes.setdefault(st.st_ino, rel)
            xattrs = {} if p.is_symlink() else {
                n: os.getxattr(p, n) for n in os.listxattr(p) if n.startswith("user.")}
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink,
                        link_group, os.readlink(p) if p.is_symlink() else None, xattrs,
                        hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
                        and not p.is_symlink() else None)
    return out


def test_cp_a_keeps_modes_times_xattrs_links(mnt: Mount, tmp_path: Path) -> None:
    src = tmp_path / "rich"
    src.mkdir()
    make_rich_tree(src)
    run("cp", "-a", str(src), str(mnt.path / "rich"))
    want = describe(src)
    got = describe(mnt.path / "rich")
    # directories' mtimes are set after their contents, so they must match too
    assert got == want
    mnt.remount()
    assert describe(mnt.path / "rich") == want


def test_sqlite_transactions(mnt: Mount) -> None:
    for mode in ("DELETE", "WAL"):
        path = mnt.path / f"db-{mode}.sqlite"
        db = sqlite3.connect(path)
        db.execute(f"PRAGMA journal_mode={mode}")
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        for batch in range(20):
            with db:
                db.executemany("INSERT INTO t VALUES (?, ?)",
                               [(batch * 100 + i, f"v{batch}-{i}" * 10) for i in range(100)])
        try:
            with db:
                db.execute("DELETE FROM t")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        with db:
            db.execute("UPDATE t SET v = 'x' WHERE k % 7 = 0")
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
    mnt.remount()
    for mode in ("DELETE", "WAL"):
        db = sqlite3.connect(mnt.path / f"db-{mode}.sqlite")
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*), sum(v = 'x') FROM t").fetchone() == (2000, 286)
        db.close()


def test_mmap_shared_read_write(mnt: Mount) -> None:
    path = mnt.path / "mapped"
    size = 3 * 1024 * 1024 + 123
    with open(path, "wb") as f:
        f.truncate(size)
    pattern = bytes(range(256)) * 16
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), size, mmap.MAP_SHARED) as m:
        for off in range(0, size - len(pattern), 65536):
            m[off:off + len(pattern)] = pattern
        m[-5:] = b"tail!"
        m.flush()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        assert m[65536:65536 + len(pattern)] == pattern
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    mnt.remount()
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected and data[-5:] == b"tail!"


APPENDER = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(int(sys.argv[3])):
    os.write(fd, f"{sys.argv[2]} {i:08d}".ljust(63).encode() + b"\\n")
os.close(fd)
"""


def test_o_append_from_two_processes(mnt: Mount) -> None:
    path = mnt.path / "log"
    n = 2000
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), who, str(n)])
             for who in ("A", "B")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    def check() -> None:
        lines = path.read_bytes().split(b"\n")[:-1]
        assert len(lines) == 2 * n and all(len(line) == 63 for line in lines)
        for who in (b"A", b"B"):
            mine = [int(line.split()[1]) for line in lines if line.startswith(who)]
            assert mine == list(range(n))  # each writer's records whole and in order
    check()
    mnt.remount()
    check()


def test_rename_over_open_file(mnt: Mount) -> None:
    target, new = mnt.path / "target", mnt.path / "new"
    target.write_bytes(b"old contents" * 1000)
    new.write_bytes(b"new contents")
    with open(target, "rb") as old:
        os.rename(new, target)
        assert target.read_bytes() == b"new contents"
        assert old.read() == b"old contents" * 1000  # the unlinked inode lives on
        os.fstat(old.fileno())
    mnt.remount()
    assert target.read_bytes() == b"new contents"
    assert sorted(os.listdir(mnt.path)) == ["target"]


def test_sparse_5_gib_file(mnt: Mount) -> None:
    path = mnt.path / "sparse"
    size = 5 << 30
    marks = {0: b"start", 5 << 29: b"middle", size - 4: b"end!"}
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in marks.items():
            f.seek(off)
            f.write(data)
    def check() -> None:
        st = path.stat()
        assert st.st_size == size and st.st_blocks * 512 < 64 << 20  # holes take nothing
        with open(path, "rb") as f:
            for off, data in marks.items():
                f.seek(off)
                assert f.read(len(data)) == data
            f.seek(3 << 30)
            assert f.read(1 << 20) == bytes(1 << 20)
    check()
    mnt.remount()
    check()


WRITER = """
import hashlib, os, sys
root, who = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{root}/w{who}", exist_ok=True)
for i in range(20):
    data = hashlib.sha256(f"{who}-{i}".encode()).digest() * (1024 * (i + 1))
    with open(f"{root}/w{who}/f{i}", "wb") as f:
        f.write(data)
    os.rename(f"{root}/w{who}/f{i}", f"{root}/shared-{who}-{i}")
"""


def test_eight_concurrent_writers(mnt: Mount) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(mnt.path), str(w)])
             for w in range(8)]
    assert [p.wait(timeout=300) for p in procs] == [0] * 8

    def check() -> None:
        for w in range(8):
            for i in range(20):
                data = (mnt.path / f"shared-{w}-{i}").read_bytes()
                assert data == hashlib.sha256(f"{w}-{i}".encode()).digest() * (1024 * (i + 1))
        assert len(os.listdir(mnt.path)) == 8 + 8 * 20
    check()
    before = tree_digest(mnt.path)
    mnt.remount()
    check()
    assert tree_digest(mnt.path) == before
