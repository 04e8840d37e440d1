"""The loader: every spec form, and fresh imports that really reload what changed."""

from __future__ import annotations

import compileall
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bento_user.runtime import loader
from bento_user.runtime.loader import LoadError
from filesystems.xv6 import Xv6

PACKAGE_INIT = "from ._impl import Reporting\n"
IMPL = """from filesystems.xv6 import Xv6


class Reporting(Xv6):
    VERSION = {version}
"""


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    """A file-system package outside the repository, as a user's would be."""
    pkg = tmp_path / "reportfs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PACKAGE_INIT)
    (pkg / "_impl.py").write_text(IMPL.format(version=100))
    yield pkg
    for name in [n for n in sys.modules if n == "reportfs" or n.startswith("reportfs.")]:
        del sys.modules[name]


def test_builtin_module_and_class_specs() -> None:
    assert loader.load_filesystem_class("xv6") is Xv6
    assert loader.load_filesystem_class("filesystems.xv6") is Xv6
    assert loader.load_filesystem_class("filesystems.xv6:Xv6") is Xv6
    with pytest.raises(LoadError, match="has no Filesystem subclass Nope"):
        loader.load_filesystem_class("filesystems.xv6:Nope")
    with pytest.raises(LoadError, match="cannot import no_such_module"):
        loader.load_filesystem_class("no_such_module")
    with pytest.raises(LoadError, match=r"name the class as MODULE:CLASS \(.* defines none\)"):
        loader.load_filesystem_class("os")


def test_fresh_import_reloads_an_edit_of_the_same_size_in_the_same_second(package: Path) -> None:
    first = loader.load(str(package))
    assert first.cls.VERSION == 100 and first.cls.__module__ == "reportfs._impl"
    impl = package / "_impl.py"
    stamp = impl.stat()
    assert loader.load(str(package)).cls is first.cls  # not fresh: the cached module
    compileall.compile_dir(package, quiet=1)  # a __pycache__ that looks up to date...
    impl.write_text(IMPL.format(version=101))  # ...after an edit that keeps the size
    os.utime(impl, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    sys.path.insert(0, str(package.parent))
    try:  # the normal import system is fooled by it
        for name in ("reportfs", "reportfs._impl"):
            del sys.modules[name]
        assert importlib.import_module("reportfs").Reporting.VERSION == 100
    finally:
        sys.path.remove(str(package.parent))
    second = loader.load(str(package), fresh=True)
    assert second.cls.VERSION == 101
    assert second.cls is not first.cls and second.replaced["reportfs._impl"].Reporting.VERSION == 100
    assert sys.modules["reportfs._impl"].Reporting is second.cls
    assert str(impl) in second.source_files()


def test_a_broken_edit_fails_in_one_line_and_keeps_the_old_modules(package: Path) -> None:
    good = loader.load(str(package))
    (package / "_impl.py").write_text("class Reporting(:\n")
    with pytest.raises(LoadError) as e:
        loader.load(str(package), fresh=True)
    assert "SyntaxError" in str(e.value) and "_impl.py, line 1" in str(e.value)
    assert "\n" not in str(e.value)
    assert sys.modules["reportfs._impl"].Reporting is good.cls
    (package / "_impl.py").write_text(IMPL.format(version=102))
    again = loader.load(str(package), fresh=True)
    assert again.cls.VERSION == 102
    again.restore()  # a failed swap: the previous modules come back
    assert sys.modules["reportfs._impl"].Reporting is good.cls


def test_file_paths_relative_paths_and_names(tmp_path: Path) -> None:
    f = tmp_path / "onefile_fs.py"
    f.write_text(IMPL.format(version=7))
    try:
        assert loader.load(f"{f}:Reporting").cls.VERSION == 7
        assert loader.absolute("onefile_fs.py") == os.path.abspath("onefile_fs.py")
        assert loader.absolute("xv6") == "xv6"
        assert loader.absolute("filesystems.xv6:Xv6") == "filesystems.xv6:Xv6"
        with pytest.raises(LoadError, match="no such file or directory"):
            loader.load(str(tmp_path / "missing.py"))
        clash = tmp_path / "sub"
        clash.mkdir()
        (clash / "onefile_fs.py").write_text(IMPL.format(version=8))
        with pytest.raises(LoadError, match="a different module named onefile_fs"):
            loader.load(str(clash / "onefile_fs.py"))
    finally:
        sys.modules.pop("onefile_fs", None)


def test_the_framework_is_never_reloaded() -> None:
    with pytest.raises(LoadError, match="bento_user is the framework"):
        loader.load("bento_user.api:Filesystem", fresh=True)
