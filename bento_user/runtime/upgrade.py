"""Live upgrade: replace the file system a ``Dispatcher`` calls, without unmounting.

The protocol (DESIGN.md, "Live upgrade"; Bento's ``reregister_bento_fs``):

1. the caller imports the new code afresh (``loader.load(spec, fresh=True)``) while
   the old version keeps serving;
2. ``swap`` closes the dispatcher's gate: new calls wait, calls in flight drain;
3. the running journal transaction is committed, so the new version starts at a
   transaction boundary (blocks freed by the old one are reusable, nothing it
   half-built is left in memory only);
4. ``old.prepare_upgrade()`` → state (plain data: checked here), then
   ``New.from_upgrade(state, ks)`` with the same kernel services;
5. swap, open the gate.

Any failure before the swap — an exception in either hook, a state the new version
refuses, a time-out — opens the gate with the old instance still in place:
``prepare_upgrade`` only reads, and ``from_upgrade`` must not change the disk, so
nothing needs undoing. The pause is the time the gate was closed.
"""

from __future__ import annotations

import errno
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..api import Filesystem, FsError, UpgradeState
from ..ks_emul import KernelServices
from . import references
from ._dispatch import Dispatcher

log = logging.getLogger("bento.upgrade")

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0  # seconds to drain in-flight calls and build the new instance


class UpgradeError(Exception):
    """The upgrade did not happen and the old instance serves on; ``str()`` is the
    one-line reason."""


@dataclass
class UpgradeReport:
    old: str
    new: str
    pause_s: float    # the gate was closed this long
    commit_s: float   # of which: committing the running transaction
    prepare_s: float  # old.prepare_upgrade()
    build_s: float    # New.from_upgrade()
    closed_at: float  # time.monotonic() when the gate closed (to line up with other clocks)
    state: dict[str, int]  # the handed-over state's top-level sizes (what the pause moved)


def swap(dispatch: Dispatcher, ks: KernelServices, new_cls: type[Filesystem], *,
         timeout: float = DEFAULT_TIMEOUT, recovery: bool = False) -> UpgradeReport:
    """Replace ``dispatch.fs`` by ``new_cls.from_upgrade(...)``; raise
    ``UpgradeError`` and leave everything as it was if that cannot be done.
    ``recovery``: the guard's reload after an undo (state from ``prepare_recovery``)."""
    old = dispatch.fs
    old_name, new_name = _name(type(old)), _name(new_cls)
    if getattr(new_cls, "posix_acls", False) != old.posix_acls:
        # agreed with the kernel at mount: who applies the umask, who checks ACLs
        raise UpgradeError(f"{new_name} {'does not support' if old.posix_acls else 'supports'}"
                           f" POSIX ACLs and {old_name} {'does' if old.posix_acls else 'does not'};"
                           f" the mount's agreement with the kernel cannot change; {old_name} serves on")
    if dispatch.references is None and references.wanted(new_cls):
        raise UpgradeError(f"{new_name} frees inodes in evict, which needs the kernel's "
                           f"references counted from the mount on; remount to bring it in; "
                           f"{old_name} serves on")
    start, closed_at = time.perf_counter(), time.monotonic()
    if not dispatch.gate.close(timeout):
        raise UpgradeError(f"calls in flight did not finish within {timeout:g} s; "
                           f"{old_name} serves on")
    # A full collection of the cyclic garbage collector takes 10-20 ms on a big
    # heap; it would land in the pause by chance. It runs after, like anywhere else.
    collecting = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        if ks.journal is not None and not ks.device.read_only:
            try:
                ks.journal.force_commit()
            except OSError as e:
                raise UpgradeError(f"the running transaction could not commit: "
                                   f"{e.strerror or e}") from None
        t1 = time.perf_counter()
        prepare = old.prepare_recovery if recovery else old.prepare_upgrade
        state = _hook(f"{old_name}.{prepare.__name__}", prepare)
        if not isinstance(state, UpgradeState):
            raise UpgradeError(f"{old_name}.prepare_upgrade returned {type(state).__name__}, "
                               "not an UpgradeState")
        check_plain(state.data, f"{old_name}'s upgrade state")
        sizes = {k: len(v) for k, v in state.data.items() if hasattr(v, "__len__")}
        t2 = time.perf_counter()
        new = _hook(f"{new_name}.from_upgrade", new_cls.from_upgrade, state, ks)
        if not isinstance(new, Filesystem):
            raise UpgradeError(f"{new_name}.from_upgrade returned {type(new).__name__}, "
                               "not a Filesystem")
        t3 = time.perf_counter()
        if t3 - start > timeout:
            raise UpgradeError(f"the upgrade took {t3 - start:.3f} s, more than the "
                               f"{timeout:g} s time-out")
        dispatch.fs = new
    except UpgradeError as e:
        raise UpgradeError(f"{e}; {old_name} serves on") from None
    finally:
        dispatch.gate.open()
        if collecting:
            gc.enable()
    end = time.perf_counter()
    return UpgradeReport(old_name, new_name, pause_s=end - start, commit_s=t1 - t0,
                         prepare_s=t2 - t1, build_s=t3 - t2, closed_at=closed_at, state=sizes)


def _hook(what: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, its failure turned into a one-line UpgradeError."""
    try:
        return fn(*args)
    except FsError as e:
        if e.errno == errno.ENOSYS:
            raise UpgradeError(f"{what} is not implemented: the file system does not "
                               "support live upgrade") from None
        if e.errno == errno.EPROTO:
            raise UpgradeError(f"{what} refused the state: {e.strerror}") from None
        raise UpgradeError(f"{what} failed: {e.strerror}") from None
    except Exception as e:
        log.exception("%s failed", what)
        raise UpgradeError(f"{what} failed: {type(e).__name__}: {e}") from None


_PLAIN = (type(None), bool, int, float, str, bytes)
_CONTAINERS = (list, tuple, set, frozenset)


def check_plain(value: object, where: str) -> None:
    """An upgrade state must be plain data: anything else would carry the old
    version's classes (and their code) into the new one."""
    if type(value) in _PLAIN or isinstance(value, np.generic):  # exact: no subclasses
        return
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise UpgradeError(f"{where}: a NumPy array of Python objects is not plain data")
        return
    if type(value) is dict:
        for k, v in value.items():
            check_plain(k, where)
            check_plain(v, where)
        return
    if type(value) in _CONTAINERS:
        for v in value:  # type: ignore[attr-defined]
            check_plain(v, where)
        return
    if type(value).__module__.split(".")[0] == "bento_user":
        return  # the API's own values (Request, Attr ...) outlive any file system
    raise UpgradeError(f"{where} holds a {type(value).__module__}.{type(value).__qualname__}: "
                       "hand over plain data (ints, strings, bytes, lists, dicts, arrays)")


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"
