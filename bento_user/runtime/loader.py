"""Finding a file-system class from what a user typed, and importing it afresh.

A spec is a registered name (``xv6``, ``provenance``, ``tiny`` or any installed
package's: the entry-point group ``bento_user.filesystems``, see ``registered``), a
module (``filesystems.provenance``), ``module:Class``, or a path to a Python file or
package directory (``~/myfs.py``, ``/src/myfs``, each optionally ``:Class``). Without
a class name, the module's one most-derived ``Filesystem`` subclass is taken.

A live upgrade must run the code that is on disk *now*: ``load(spec, fresh=True)``
drops every loaded module of the target's top-level package from ``sys.modules`` and
imports them again, compiling from source — never from ``__pycache__``, whose
freshness check (mtime in whole seconds plus size) misses an edit made within the
same second that keeps the size. The dropped modules are kept in a ``Loaded`` so a
failed upgrade can put them back (``restore``): the running instance's code stays
what ``sys.modules`` says it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api import Filesystem

GROUP = "bento_user.filesystems"  # the entry-point group file systems register in

# The framework is the "kernel": it is never reloaded under a running file system.
_NEVER_RELOADED = ("bento_user",)


class LoadError(Exception):
    """The spec names nothing loadable; ``str()`` says why, in one line."""


@dataclass
class Loaded:
    """A file-system class and what importing it replaced."""

    cls: type[Filesystem]
    target: str                        # what was asked for (to load it again)
    package: str                       # the top-level package that was (re)imported
    replaced: dict[str, types.ModuleType] = field(default_factory=dict)

    @classmethod
    def of(cls, fs_class: type[Filesystem], target: str) -> Loaded:
        """A class imported earlier, as ``target``."""
        return cls(fs_class, target, fs_class.__module__.partition(".")[0])

    def restore(self) -> None:
        """Undo a fresh import: the previous modules come back into ``sys.modules``."""
        _drop_package(self.package)
        sys.modules.update(self.replaced)

    @property
    def name(self) -> str:
        return f"{self.cls.__module__}:{self.cls.__qualname__}"

    def source_files(self) -> list[str]:
        """The source files of every loaded module of the package (what ``--watch``
        watches)."""
        return sorted({f for name, m in list(sys.modules.items())
                       if _in_package(name, self.package)
                       and (f := getattr(m, "__file__", None)) and f.endswith(".py")})


def load_filesystem_class(spec: str) -> type[Filesystem]:
    """The class ``spec`` names, imported normally (cached modules are reused)."""
    return load(spec).cls


def registered() -> dict[str, str]:
    """Installed file systems by name -> ``module:Class``: every package's entries in
    the ``bento_user.filesystems`` entry-point group (ours are in pyproject.toml; a
    user's package adds its own and is ``--fs NAME`` once pip-installed)."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=GROUP)}


def load(spec: str, *, fresh: bool = False) -> Loaded:
    target = registered().get(spec, spec)
    where, class_name = _split(target)
    if not where or (":" not in target and "." not in where and not _is_path(where)
                     and importlib.util.find_spec(where) is None):
        names = ", ".join(sorted(registered())) or "none"
        raise LoadError(f"{spec!r}: no file system of that name (installed: {names}), and "
                        f"cannot import {where}")
    if _is_path(where):
        module, package, replaced = _import_path(where, fresh)
    else:
        package = where.partition(".")[0]
        if fresh and package in _NEVER_RELOADED:
            raise LoadError(f"{spec!r}: {package} is the framework; it is not reloaded")
        replaced = _drop_package(package) if fresh else {}
        try:
            with _source_only(package) if fresh else contextlib.nullcontext():
                module = importlib.import_module(where)
        except Exception as e:  # a syntax or import error in the user's code
            _drop_package(package)
            sys.modules.update(replaced)
            raise LoadError(f"{spec!r}: cannot import {where}: {_one_line(e)}") from None
    try:
        return Loaded(_pick_class(spec, module, class_name), spec, package, replaced)
    except LoadError:
        if fresh:
            Loaded(Filesystem, spec, package, replaced).restore()
        raise


def absolute(spec: str) -> str:
    """``spec`` with a relative path made absolute (a daemon does not share the
    caller's working directory)."""
    names = registered()
    where, class_name = _split(names.get(spec, spec))
    if spec in names or not _is_path(where):
        return spec
    where = os.path.abspath(os.path.expanduser(where))
    return f"{where}:{class_name}" if class_name else where


def instantiate(cls: type[Filesystem], **options: Any) -> Filesystem:
    """``cls(**options)``, passing only the options its constructor takes (a user's
    file system need not know about ``read_only`` or ``atime``)."""
    params = inspect.signature(cls).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return cls(**options)
    return cls(**{k: v for k, v in options.items() if k in params})


# -- what the spec names --------------------------------------------------------------

def _split(target: str) -> tuple[str, str | None]:
    """``where[:Class]``; a colon inside a path's directories is not a class."""
    where, sep, name = target.rpartition(":")
    if sep and name.isidentifier():
        return where, name
    return target, None


def _is_path(where: str) -> bool:
    return os.sep in where or where.endswith(".py") or where.startswith("~")


def _pick_class(spec: str, module: types.ModuleType, class_name: str | None) -> type[Filesystem]:
    if class_name is not None:
        cls = getattr(module, class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Filesystem)):
            raise LoadError(f"{spec!r}: {module.__name__} has no Filesystem subclass {class_name}")
        return cls
    found = {c for c in vars(module).values()
             if isinstance(c, type) and issubclass(c, Filesystem) and c is not Filesystem}
    leaves = [c for c in found if not any(o is not c and issubclass(o, c) for o in found)]
    if len(leaves) != 1:
        names = ", ".join(sorted(c.__name__ for c in leaves)) or "none"
        raise LoadError(f"{spec!r}: name the class as MODULE:CLASS "
                        f"({module.__name__} defines {names})")
    return leaves[0]


# -- importing from a path ------------------------------------------------------------

def _import_path(where: str, fresh: bool) -> tuple[types.ModuleType, str, dict[str, types.ModuleType]]:
    path = os.path.abspath(os.path.expanduser(where)).rstrip(os.sep)
    if os.path.isdir(path):
        init = os.path.join(path, "__init__.py")
        name, search = os.path.basename(path), [path]
        if not os.path.isfile(init):
            raise LoadError(f"{where}: a package directory needs an __init__.py")
    elif os.path.isfile(path):
        init, name, search = path, os.path.basename(path).removesuffix(".py"), None
    else:
        raise LoadError(f"{where}: no such file or directory")
    if not name.isidentifier():
        raise LoadError(f"{where}: {name!r} is not a valid module name")
    loaded = sys.modules.get(name)
    if loaded is not None:
        if os.path.realpath(getattr(loaded, "__file__", "") or "") != os.path.realpath(init):
            raise LoadError(f"{where}: a different module named {name} is already loaded")
        if not fresh:
            return loaded, name, {}
    replaced = _drop_package(name)
    try:
        spec = importlib.util.spec_from_file_location(
            name, init, loader=_SourceOnlyLoader(name, init), submodule_search_locations=search)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        with _source_only(name):
            spec.loader.exec_module(module)
    except Exception as e:
        _drop_package(name)
        sys.modules.update(replaced)
        raise LoadError(f"{where}: cannot import: {_one_line(e)}") from None
    return module, name, replaced


# -- fresh imports --------------------------------------------------------------------

class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles the source as it is now (never trusts ``__pycache__``).

    Compiled code is remembered by the source's hash: the same bytes give the same
    code object, which is immutable, and executing it again still makes fresh
    modules and classes. Compiling holds the GIL for tens of milliseconds, stalling
    the requests served meanwhile; an upgrade that changes one file recompiles one.
    """

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        source = self.get_data(path)
        key = (path, hashlib.sha256(source).digest())
        code = _COMPILED.get(key)
        if code is None:
            code = _COMPILED[key] = self.source_to_code(source, path)
        return code


_COMPILED: dict[tuple[str, bytes], types.CodeType] = {}


class _SourceOnlyFinder(importlib.abc.MetaPathFinder):
    """Finds ``package``'s modules where the normal path finder would, but hands
    them to ``_SourceOnlyLoader``."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not _in_package(fullname, self.package):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        assert spec.origin is not None
        spec.loader = _SourceOnlyLoader(fullname, spec.origin)
        return spec


class _source_only:
    """While active, modules of ``package`` are compiled from source."""

    def __init__(self, package: str) -> None:
        self.finder = _SourceOnlyFinder(package)

    def __enter__(self) -> None:
        importlib.invalidate_caches()  # a directory listing cached before an edit
        sys.meta_path.insert(0, self.finder)

    def __exit__(self, *exc: object) -> None:
        sys.meta_path.remove(self.finder)


def _in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _drop_package(package: str) -> dict[str, types.ModuleType]:
    """Remove ``package`` and its submodules from ``sys.modules``; return them."""
    dropped = {n: m for n, m in list(sys.modules.items()) if _in_package(n, package)}
    for n in dropped:
        del sys.modules[n]
    return dropped


def _one_line(e: BaseException) -> str:
    if isinstance(e, SyntaxError):
        return f"{type(e).__name__}: {e.msg} ({os.path.basename(e.filename or '?')}, line {e.lineno})"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
