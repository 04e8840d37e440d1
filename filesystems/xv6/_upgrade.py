"""xv6's live-upgrade state: what memory alone knows, handed to the next version.

The kernel holds lookup counts and open file handles; fsync owes the disk the data
blocks overwritten in the cache (``Inode.dirty_data``, ``unflushed``); the orphan
list's order is kept in memory; the allocator's bitmaps are unpacked in memory. All
of it travels as plain data (``UpgradeState``, schema ``xv6/2``); inode fields, name
indexes and cached blocks do not travel: the disk and the buffer cache, which stay,
have them.

The lookup counts travel as the count array itself, one per inode, handed over and
not copied (as the allocator's bitmaps are): once the gate is closed the predecessor
serves nothing more, and a failed upgrade discards the successor before it serves.
Copying out the held inodes' rows (schema ``xv6/1``, still read) cost the pause a
page fault for each 4 KiB of fresh memory, about 1.5 ms at 100,000 held inodes on
these machines. The rest is taken *lazily* (``Inherited``): an inode gets
its open-handle count and fsync debt when it is first loaded, a handle becomes an
``OpenFile`` when first used. So the pause does not grow with the number of inodes
the kernel holds, nor with open files beyond building two dicts. Successors
(provenance) may add keys of their own; xv6 reads only these.
"""

from __future__ import annotations

import errno
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bento_user.api import FsError, Request, UpgradeState

SCHEMA = "xv6/2"
READS = ("xv6/1", SCHEMA)  # xv6/1: the lookup counts as (inode, count) rows


@dataclass
class Inherited:
    """A predecessor's state not yet taken up by inodes and handles."""

    nopen: dict[int, int] = field(default_factory=dict)             # ino -> handles
    debts: dict[int, tuple[list[int], bool]] = field(default_factory=dict)  # fsync's
    files: dict[int, tuple[int, int, Request]] = field(default_factory=dict)  # fh -> ino, flags, req

    def __bool__(self) -> bool:
        return bool(self.nopen or self.debts or self.files)


@dataclass
class Snapshot:
    """The state in the form both sides work with (before encoding, after decoding)."""

    options: dict[str, Any]
    lookups: np.ndarray  # the count of each inode, int64; (inode, count) rows from xv6/1
    debts: list[tuple[int, list[int], bool]]
    files: list[tuple[int, int, int, Request]]  # fh, ino, flags, opener
    next_fh: int
    orphans: list[int] | None  # None: read the chain on disk (a recovery)
    alloc: dict[str, Any] | None  # the allocator's arrays (Allocator.handover)


def encode(s: Snapshot) -> UpgradeState:
    requests: dict[Request, int] = {}
    files = np.array([(fh, ino, flags, requests.setdefault(req, len(requests)))
                      for fh, ino, flags, req in s.files], dtype=np.int64).reshape(-1, 4)
    return UpgradeState(SCHEMA, {
        "options": s.options,
        "lookups": s.lookups,
        "debts": s.debts,
        "files": files,
        "requests": list(requests),
        "next_fh": s.next_fh,
        "orphans": s.orphans,
        "alloc": s.alloc,
    })


def decode(state: UpgradeState, reader: str) -> tuple[Snapshot, Inherited]:
    """The snapshot and the lazily applied part; EPROTO for a state xv6 cannot read."""
    if state.schema not in READS:
        raise FsError(errno.EPROTO, f"{reader} reads state {' or '.join(map(repr, READS))}, "
                      f"not {state.schema!r}")
    try:
        d = state.data
        lookups, files, requests = d["lookups"], d["files"], d["requests"]
        if state.schema == "xv6/1":
            lookups = np.asarray(lookups, dtype=np.int64).reshape(-1, 2)
        elif not (isinstance(lookups, np.ndarray) and lookups.dtype == np.int64
                  and lookups.ndim == 1):
            raise TypeError(f"lookups: {type(lookups).__name__}, not a 1-d int64 array")
        snap = Snapshot(options=dict(d["options"]), lookups=lookups, debts=list(d["debts"]),
                        files=[], next_fh=int(d["next_fh"]),
                        orphans=None if d["orphans"] is None else [int(i) for i in d["orphans"]],
                        alloc=d.get("alloc"))
        ino_col, fh_col = files[:, 1].tolist(), files[:, 0].tolist()
        inherited = Inherited(
            nopen=dict(Counter(ino_col)),
            debts={ino: (list(dirty), bool(unflushed)) for ino, dirty, unflushed in snap.debts},
            files={fh: (ino, flags, requests[r])
                   for fh, ino, flags, r in zip(fh_col, ino_col, files[:, 2].tolist(),
                                                files[:, 3].tolist())})
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise FsError(errno.EPROTO, f"{reader}: a malformed {state.schema} state ({e!r})") from None
    return snap, inherited
