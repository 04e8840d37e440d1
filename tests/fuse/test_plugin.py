"""A user's own file system, installed as a package, is ``--fs NAME`` everywhere: the
entry-point group ``bento_user.filesystems`` is the whole plug-in interface."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import REPO, bento

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "bento-plugin-example"
version = "0.1"

[project.entry-points."bento_user.filesystems"]
mine = "myfs:Mine"
"""

MODULE = '''\
from filesystems.tiny import Tiny


class Mine(Tiny):
    """A plug-in: tiny under a name of its own."""

    name = "mine"
'''


def test_an_installed_package_is_mounted_by_name(tmp_path: Path) -> None:
    pkg, site = tmp_path / "pkg", tmp_path / "site"
    (pkg / "myfs").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "myfs" / "__init__.py").write_text(MODULE)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(pkg)], check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=f"{site}:{REPO}")
    listed = bento("filesystems", env=env).stdout
    assert "mine" in listed and "myfs:Mine" in listed and "A plug-in" in listed
    image, mnt = tmp_path / "disk.img", tmp_path / "mnt"
    mnt.mkdir()
    assert "tiny, 4096 blocks" in bento("mkfs", str(image), "--size", "16M", "--fs", "mine",
                                        env=env).stdout
    bento("mount", str(image), str(mnt), "--fs", "mine", env=env)
    try:
        (mnt / "hello").write_text("from a plug-in\n")
        assert "Mine" in bento("stat", str(mnt), env=env).stdout
    finally:
        bento("umount", str(mnt), env=env)
    assert bento("fsck", str(image), "--fs", "mine", env=env).returncode == 0
    bento("mount", str(image), str(mnt), "--fs", "mine", env=env)
    try:
        assert (mnt / "hello").read_text() == "from a plug-in\n"
    finally:
        bento("umount", str(mnt), env=env)
