"""Finding a file-system class from what a user typed: ``xv6``, ``module:Class``."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..api import Filesystem

BUILTIN = {
    "xv6": "filesystems.xv6:Xv6",
    "provenance": "filesystems.provenance:Provenance",
}


class LoadError(Exception):
    """The spec names nothing loadable; ``str()`` says why, in one line."""


def load_filesystem_class(spec: str) -> type[Filesystem]:
    target = BUILTIN.get(spec, spec)
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise LoadError(f"--fs {spec!r}: expected xv6, provenance or module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise LoadError(f"--fs {spec!r}: cannot import {module_name}: {e}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Filesystem)):
        raise LoadError(f"--fs {spec!r}: {module_name} has no Filesystem subclass {class_name}")
    return cls


def instantiate(cls: type[Filesystem], **options: Any) -> Filesystem:
    """``cls(**options)``, passing only the options its constructor takes (a user's
    file system need not know about ``read_only`` or ``atime``)."""
    params = inspect.signature(cls).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return cls(**options)
    return cls(**{k: v for k, v in options.items() if k in params})
