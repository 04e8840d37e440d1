"""The crash explorer's workloads: short sequences of core operations over a tiny
namespace. Half are drawn from every operation kind, half swarm-style (each from its
own random subset of kinds: rare pairs come up within a minute instead of drowning
in the mix).

Half of them start from a tree that is already there and durable (``SETUP``, in the
manner of ACE's setup phase), the other half from an empty file system. And each
operation's names are drawn, three times in four, from what the workload so far has
made exist (a rename's or link's source, a file to overwrite, truncate or fsync) or
not exist (a rename's or link's destination, a new file or directory). Drawn blindly,
a minute's workloads held 34 renames and almost none of an existing file to a new
name: the multi-step paths whose atomicity matters (a rename to a new name, an
overwrite of committed data) were all but never reached.

Two kinds are applications' update protocols (ALICE's subject), drawn like any other
kind but made of several operations: ``replace`` (write a new file, fsync it, rename
it over an existing one, fsync the directory: editors, git, package managers) and
``wal`` (overwrite a file in place, append to a log file and fsync the log, the
background writer runs, fsync the file: a database's pages and its write-ahead log).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

FILES = ["foo", "bar", "A/foo", "A/bar", "B/foo", "B/bar"]
DIRS = ["A", "B", "A/C"]
NAMES = FILES + DIRS
BLOCK = 4096
OFFSETS = [0, 4000, 2 * BLOCK, 12 * BLOCK - 100]   # the last crosses into the indirect block
LENGTHS = [1, 100, 5000, 9000, 60_000]   # the last: a run of 15 blocks, direct and indirect
SIZES = [0, 100, 5000, 50_000]

SYMLINK_TARGET = b"nowhere/x"   # dangling: calls through it fail the same on any file system

Op = tuple[Any, ...]

SETUP: Op = ("setup",)     # a workload's first op: start from STARTING_TREE, synced
STARTING_TREE: list[Op] = [
    ("mkdir", "A"), ("mkdir", "B"),
    ("creat", "foo"), ("write", "foo", 0, 9000),    # three blocks: most offsets overwrite
    ("creat", "bar"), ("write", "bar", 0, 60_000),  # into the indirect block
    ("creat", "A/foo"), ("write", "A/foo", 0, 100),
]
SETUP_TAG = 1000           # the starting tree's data patterns, apart from a workload's

KINDS = ["creat", "mkdir", "write", "truncate", "link", "unlink", "rename", "rmdir", "symlink",
         "hold", "fsync", "fdatasync", "fsyncdir", "sync", "evict", "replace", "wal"]


class Namespace:
    """What a workload so far has made exist, as the names it was drawn with: a guess
    (an operation may fail) that only steers the drawing, never the checking."""

    def __init__(self, start: bool) -> None:
        self.files: set[str] = set()
        self.dirs: set[str] = set()
        for op in STARTING_TREE if start else []:
            self.apply(op)

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.dirs

    def parent_exists(self, path: str) -> bool:
        return "/" not in path or path.rsplit("/", 1)[0] in self.dirs

    def apply(self, op: Op) -> None:
        kind, *args = op
        if kind in ("creat", "write", "symlink") and self.parent_exists(args[0]) \
                and args[0] not in self.dirs:
            self.files.add(args[0])
        elif kind == "mkdir" and self.parent_exists(args[0]) and not self.exists(args[0]):
            self.dirs.add(args[0])
        elif kind == "unlink":
            self.files.discard(args[0])
        elif kind == "rmdir" and not any(p.startswith(args[0] + "/") for p in self.files | self.dirs):
            self.dirs.discard(args[0])
        elif kind in ("link", "rename") and args[0] in self.files and self.parent_exists(args[1]) \
                and args[1] not in self.dirs:
            self.files.add(args[1])
            if kind == "rename" and args[1] != args[0]:
                self.files.discard(args[0])


def _name(draw: st.DrawFn, pool: list[str], favoured: set[str]) -> str:
    """Three times in four one of ``favoured`` (if any), else any name of the pool."""
    choice = sorted(favoured)
    if choice and draw(st.integers(0, 3)):
        return draw(st.sampled_from(choice))
    return draw(st.sampled_from(["foo", "bar"] + pool))   # top-level names twice as often


def _protocol(draw: st.DrawFn, kind: str, ns: Namespace) -> list[Op]:
    """An application's update protocol: see the module docstring."""
    target = _name(draw, FILES, set(ns.files))
    parent = target.rsplit("/", 1)[0] if "/" in target else ""
    if kind == "replace":
        siblings = [p for p in FILES if p != target and p.startswith(parent)
                    and p.count("/") == target.count("/")]
        tmp = draw(st.sampled_from(siblings))
        return [("write", tmp, 0, draw(st.sampled_from(LENGTHS))), ("fsync", tmp),
                ("rename", tmp, target), ("fsyncdir", parent)]
    log = _name(draw, FILES, set(FILES) - {target})
    return [("write", target, draw(st.sampled_from(OFFSETS)), draw(st.sampled_from(LENGTHS))),
            ("write", log, draw(st.sampled_from(OFFSETS)), 100), ("fsync", log), ("evict",),
            ("fsync", target)]


@st.composite
def _operation(draw: st.DrawFn, kind: str, ns: Namespace) -> Op:
    """One operation of ``kind``, its names drawn with ``ns`` in mind."""
    present = set(ns.files)
    absent = {p for p in FILES if not ns.exists(p) and ns.parent_exists(p)}
    if kind in ("creat", "symlink"):
        return (kind, _name(draw, FILES, absent))
    if kind == "mkdir":
        return (kind, _name(draw, DIRS, {d for d in DIRS if not ns.exists(d) and ns.parent_exists(d)}))
    if kind == "rmdir":
        return (kind, _name(draw, DIRS, ns.dirs))
    if kind == "write":
        return (kind, _name(draw, FILES, present), draw(st.sampled_from(OFFSETS)),
                draw(st.sampled_from(LENGTHS)))
    if kind == "truncate":
        return (kind, _name(draw, FILES, present), draw(st.sampled_from(SIZES)))
    if kind in ("link", "rename"):
        source = _name(draw, NAMES if kind == "rename" else FILES,
                       present | (ns.dirs if kind == "rename" else set()))
        return (kind, source, _name(draw, NAMES if kind == "rename" else FILES, absent))
    if kind == "fsync":
        return (kind, _name(draw, NAMES, present | ns.dirs))
    if kind in ("unlink", "hold", "fdatasync"):
        return (kind, _name(draw, FILES, present))
    if kind == "fsyncdir":
        return (kind, draw(st.sampled_from(["", "A", "B"])))
    return (kind,)                          # sync, evict


@st.composite
def _workload(draw: st.DrawFn, kinds: list[str], max_ops: int) -> list[Op]:
    """Up to ``max_ops`` kinds drawn first (so Hypothesis shrinks the list), then each
    one's names in turn; a protocol counts as one."""
    start = draw(st.booleans())
    ns = Namespace(start)
    out = [SETUP] if start else []
    for kind in draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=max_ops)):
        ops = _protocol(draw, kind, ns) if kind in ("replace", "wal") else [draw(_operation(kind, ns))]
        for op in ops:
            ns.apply(op)
        out += ops
    return out


def workloads(max_ops: int = 6, unsupported: frozenset[str] = frozenset()
              ) -> st.SearchStrategy[list[Op]]:
    """Ace-style bounded workloads: a few core operations and persistence points
    (without the ``unsupported`` ones: links, symlinks for a file system without)."""
    kinds = [k for k in KINDS if k not in unsupported]
    swarm = st.sets(st.sampled_from(kinds), min_size=1).map(sorted)
    return st.one_of(   # half the workloads from every kind, half from a few
        _workload(kinds, max_ops),
        swarm.flatmap(lambda chosen: _workload(chosen, max_ops)))


def pattern(tag: int, length: int) -> bytes:
    """The data op number ``tag`` writes: distinct per op, never zero."""
    return ((np.arange(length, dtype=np.int64) * 7 + tag * 37) % 251 + 1).astype(np.uint8).tobytes()
