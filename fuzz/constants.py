"""One pool of source constants for Hypothesis, whatever the process imported.

Hypothesis draws some integers, floats and bytes from the literals of every *local*
module loaded in the process (``hypothesis.internal.conjecture.providers``: it scans
``sys.modules`` whenever it has grown). So the same seed drew different examples in
a fresh process, after ``import bento_user.cli``, under pytest (whose test modules
are local too), and before and after a lazily imported module such as tiny's fsck:
shard 2 of ``Job("ops", "xv6", seed=5, examples=75, steps=10)`` gave ``da5f725f…``
in one and ``ae59e35c…`` in the other. A fuzzer whose seed does not replay is worse
than one that finds less.

``fixed_constants`` pins the pool for the length of a run to the constants of the
file system under test — the modules its classes come from, whole packages imported
first — which keeps
what the pool is for (the developer's own block sizes and limits) and makes it a
function of the code under test only. Hypothesis has no public switch for this, so
this reaches into its internals; a Hypothesis without them runs unchanged (and the
campaign test says if the seed stops replaying).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from bento_user.api import Filesystem


def _source_modules(cls: type[Filesystem]) -> list[ModuleType]:
    """The modules ``cls`` is made of, sorted: for each file-system class in its MRO,
    its module, and the whole package when the package exports the class (xv6, tiny:
    their tools and helpers too; a test's buggy subclass adds its one module only)."""
    found: dict[str, ModuleType] = {}
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, Filesystem)) or klass is Filesystem:
            continue
        module = sys.modules[klass.__module__]
        found[module.__name__] = module
        package = sys.modules.get(module.__package__ or "")
        if package is None or getattr(package, klass.__name__, None) is not klass:
            continue
        found[package.__name__] = package
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), package.__name__ + "."):
            try:
                found[info.name] = importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 - a module that does not import adds no constants
                continue
    return [found[name] for name in sorted(found)]


@contextmanager
def fixed_constants(cls: type[Filesystem]) -> Iterator[None]:
    """Hypothesis's local constants are those of ``cls``'s package while inside."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants, constants_from_module
        saved = providers._get_local_constants
    except (ImportError, AttributeError):  # another Hypothesis: nothing to pin
        yield
        return
    pool = Constants()
    for module in _source_modules(cls):
        pool |= constants_from_module(module)
    providers._get_local_constants = lambda: pool
    providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = saved
        providers.CONSTANTS_CACHE.cache.clear()
