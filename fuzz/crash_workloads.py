"""The crash explorer's workloads: short sequences of core operations over a tiny
namespace. Half are drawn from every operation kind, half swarm-style (each from its
own random subset of kinds: rare pairs come up within a minute instead of drowning
in the mix).
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


def workloads(max_ops: int = 6, unsupported: frozenset[str] = frozenset()
              ) -> st.SearchStrategy[list[Op]]:
    """Ace-style bounded workloads: a few core operations and persistence points
    (without the ``unsupported`` ones: links, symlinks for a file system without)."""
    # top-level names twice as often: fewer operations fail for a missing directory
    files = st.sampled_from(["foo", "bar"] + FILES)
    names = st.sampled_from(["foo", "bar", "A"] + NAMES)
    dirs = st.sampled_from(DIRS)
    ops = {
        "creat": st.tuples(st.just("creat"), files),
        "mkdir": st.tuples(st.just("mkdir"), dirs),
        "write": st.tuples(st.just("write"), files, st.sampled_from(OFFSETS),
                           st.sampled_from(LENGTHS)),
        "truncate": st.tuples(st.just("truncate"), files, st.sampled_from(SIZES)),
        "link": st.tuples(st.just("link"), files, files),
        "unlink": st.tuples(st.just("unlink"), files),
        "rename": st.tuples(st.just("rename"), names, names),
        "rmdir": st.tuples(st.just("rmdir"), dirs),
        "symlink": st.tuples(st.just("symlink"), files),
        "hold": st.tuples(st.just("hold"), files),
        "fsync": st.tuples(st.just("fsync"), names),
        "fdatasync": st.tuples(st.just("fdatasync"), files),
        "fsyncdir": st.tuples(st.just("fsyncdir"), st.sampled_from(["", "A", "B"])),
        "sync": st.tuples(st.just("sync")),
        "evict": st.tuples(st.just("evict")),
    }
    kinds = sorted(name for name in ops if name not in unsupported)
    everything = st.one_of([ops[k] for k in kinds])
    swarm = st.sets(st.sampled_from(kinds), min_size=1).map(sorted)
    return st.one_of(   # half the workloads from every kind, half from a few
        st.lists(everything, min_size=1, max_size=max_ops),
        swarm.flatmap(lambda chosen: st.lists(st.one_of([ops[k] for k in chosen]),
                                              min_size=1, max_size=max_ops)))


def pattern(tag: int, length: int) -> bytes:
    """The data op number ``tag`` writes: distinct per op, never zero."""
    return ((np.arange(length, dtype=np.int64) * 7 + tag * 37) % 251 + 1).astype(np.uint8).tobytes()
