"""A name that is not there is asked for once: the kernel keeps the answer (a
negative dentry) for ``negative_timeout`` seconds, as it keeps names that are there
for ``entry_timeout``. Compilers probing include paths, Python probing sys.path and
git probing its config files ask again and again. Safe because every change to the
names goes through this kernel: it drops the negative dentry when it makes the name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .conftest import Mount, bento, mounted


def lookups(m: Mount) -> int:
    done = bento("stat", str(m.path), "--json")
    return int(json.loads(done.stdout)["stats"]["operations"].get("lookup", {"calls": 0})["calls"])


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


def test_negative_timeout_zero_asks_every_time(tmp_path: Path) -> None:
    with mounted(Mount(tmp_path, options=("-o", "negative_timeout=0"))) as m:
        before = lookups(m)
        for _ in range(20):
            assert not (m.path / "nothing").exists()
        assert lookups(m) - before == 20


HIDING = """
import errno
from bento_user.api import FsError
from filesystems.xv6 import Xv6

class HidingXv6(Xv6):
    '''xv6 with a lookup bug: the name "secret" is never found.'''

    def lookup(self, req, parent, name):
        if name == b"secret":
            raise FsError(errno.ENOENT)
        return super().lookup(req, parent, name)
"""


def test_an_upgrade_makes_the_kernel_ask_again(tmp_path: Path) -> None:
    """The developer fixes a lookup and upgrades: the name the old code missed is
    there at once, not when the kernel's negative dentry times out."""
    m = Mount(tmp_path)
    with mounted(m):
        (m.path / "secret").write_bytes(b"found")
    buggy = tmp_path / "hiding.py"
    buggy.write_text(HIDING)
    m.fs = str(buggy)
    with mounted(m):
        for _ in range(3):
            assert not (m.path / "secret").exists()
        bento("upgrade", str(m.path), "xv6")
        assert (m.path / "secret").read_bytes() == b"found"
