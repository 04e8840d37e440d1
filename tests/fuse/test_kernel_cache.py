"""What the kernel keeps of our answers (runtime/kernel_cache.py). A name that is
not there is asked for once: the kernel keeps the answer (a negative dentry) for
``negative_timeout`` seconds. A directory's entries are read once: the kernel keeps
them across opens until the directory changes. Compilers probing include paths,
git status and find walking a tree ask again and again. Each change made through
the mount must show at once, and so must what a live upgrade's new code answers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import Mount, bento, mounted, operations


def calls(m: Mount, op: str) -> int:
    return int(operations(m).get(op, {"calls": 0})["calls"])


def lookups(m: Mount) -> int:
    return calls(m, "lookup")


def test_a_missing_name_is_looked_up_once(tmp_path: Path) -> None:
    with mounted(Mount(tmp_path)) as m:
        (m.path / "d").mkdir()
        before = lookups(m)
        for _ in range(50):
            assert not (m.path / "d" / "nothing.h").exists()
        assert lookups(m) - before == 1


def test_names_made_after_a_negative_answer_are_seen(tmp_path: Path) -> None:
    """Each way of making a name drops the kernel's negative dentry for it."""
    m = Mount(tmp_path)
    with mounted(m):
        d = m.path / "d"
        d.mkdir()
        (d / "src").write_bytes(b"src")
        names = ("file", "dir", "link", "hard", "moved", "fifo")
        for name in names:
            assert not (d / name).exists()
        (d / "file").write_bytes(b"new")
        (d / "dir").mkdir()
        (d / "link").symlink_to("file")
        os.link(d / "src", d / "hard")
        (d / "src").rename(d / "moved")
        os.mkfifo(d / "fifo")
        assert (d / "file").read_bytes() == b"new"
        assert (d / "dir").is_dir()
        assert (d / "link").read_bytes() == b"new"
        assert (d / "hard").read_bytes() == (d / "moved").read_bytes() == b"src"
        assert (d / "fifo").is_fifo()
        assert not (d / "src").exists()  # the old name of the rename: negative again
        assert sorted(os.listdir(d)) == sorted(names)
        m.remount()
        assert sorted(os.listdir(d)) == sorted(names)
        assert (d / "moved").read_bytes() == b"src"
        m.umount()
    m.fsck()


@pytest.mark.parametrize("option", ["negative_timeout=0", "timeout=0"])
def test_negative_timeout_zero_asks_every_time(tmp_path: Path, option: str) -> None:
    with mounted(Mount(tmp_path, options=("-o", option))) as m:
        before = lookups(m)
        for _ in range(20):
            assert not (m.path / "nothing").exists()
        assert lookups(m) - before == 20


HIDING = """
import errno
from bento_user.api import FsError
from filesystems.xv6 import Xv6

class HidingXv6(Xv6):
    '''xv6 with two bugs: lookup never finds "secret", readdir never lists it.'''

    def lookup(self, req, parent, name):
        if name == b"secret":
            raise FsError(errno.ENOENT)
        return super().lookup(req, parent, name)

    def readdir(self, fh, offset):
        return [e for e in super().readdir(fh, offset) if e.name != b"secret"]
"""


def test_an_upgrade_makes_the_kernel_ask_again(tmp_path: Path) -> None:
    """The developer fixes lookup and readdir and upgrades: the name the old code
    missed is there at once, not when the kernel's negative dentry times out, and
    listed at once, not when the kernel drops the directory's cached entries."""
    m = Mount(tmp_path)
    # apart: the kernel drops a directory's cached entries with a negative dentry in it
    probed, listed = m.path / "probed", m.path / "listed"
    with mounted(m):
        for d in (probed, listed):
            d.mkdir()
            (d / "secret").write_bytes(b"found")
            (d / "plain").write_bytes(b"plain")
    buggy = tmp_path / "hiding.py"
    buggy.write_text(HIDING)
    m.fs = str(buggy)
    with mounted(m):
        for _ in range(3):
            assert not (probed / "secret").exists()
            assert os.listdir(listed) == ["plain"]
        bento("upgrade", str(m.path), "xv6")
        assert sorted(os.listdir(listed)) == ["plain", "secret"]
        assert (probed / "secret").read_bytes() == b"found"


def test_an_unchanged_directory_is_read_once(tmp_path: Path) -> None:
    with mounted(Mount(tmp_path)) as m:
        d = m.path / "d"
        d.mkdir()
        for i in range(50):
            (d / f"f{i}").write_bytes(b"")
        first = sorted(os.listdir(d))
        before = calls(m, "readdir"), lookups(m)
        for _ in range(10):
            assert sorted(os.listdir(d)) == first
            assert len(list(os.scandir(d))) == 50
        assert (calls(m, "readdir"), lookups(m)) == before


def test_a_cached_directory_shows_each_change_at_once(tmp_path: Path) -> None:
    m = Mount(tmp_path)
    with mounted(m):
        d, other = m.path / "d", m.path / "other"
        d.mkdir()
        other.mkdir()
        (d / "a").write_bytes(b"a")
        (other / "b").write_bytes(b"b")
        expect = {"a"}
        changes = [
            (lambda: (d / "new").write_bytes(b"n"), {"new"}, set()),
            (lambda: (d / "sub").mkdir(), {"sub"}, set()),
            (lambda: (d / "a").unlink(), set(), {"a"}),
            (lambda: (d / "sub").rmdir(), set(), {"sub"}),
            (lambda: (other / "b").rename(d / "b"), {"b"}, set()),
            (lambda: (d / "new").rename(d / "renamed"), {"renamed"}, {"new"}),
            (lambda: os.link(d / "b", d / "hard"), {"hard"}, set()),
            (lambda: (d / "sym").symlink_to("b"), {"sym"}, set()),
            (lambda: (d / "b").rename(other / "back"), set(), {"b"}),
        ]
        for change, added, removed in changes:
            assert set(os.listdir(d)) == expect  # read, and cached
            change()
            expect = (expect | added) - removed
            assert set(os.listdir(d)) == expect, change
        assert set(os.listdir(other)) == {"back"}
        m.remount()
        assert set(os.listdir(d)) == expect
        m.umount()
    m.fsck()


def test_no_keep_cache_reads_directories_every_time(tmp_path: Path) -> None:
    with mounted(Mount(tmp_path, options=("-o", "no_keep_cache"))) as m:
        (m.path / "x").write_bytes(b"")
        os.listdir(m.path)
        before = calls(m, "readdir")
        for _ in range(5):
            os.listdir(m.path)
        assert calls(m, "readdir") - before >= 5
