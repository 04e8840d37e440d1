"""The crash explorer's oracle: what a recovered disk may look like.

It checks the durability contract (README, "What is durable when") per object, in
the manner of B3, and no more:

- ``sync`` persists everything before it;
- ``fsync``/``fdatasync`` of a file persist *that file's* data (sector by sector);
- a file system that declares ``Filesystem.ordered_metadata`` (one journal, committed
  whole: xv6, like ext4's default mode) promises more, and is held to it: any
  fsync-family call persists every metadata operation that returned before it — so
  the namespace (names, kinds, sizes, link counts) must be a state at least that new;
- a file system without it is held to ``sync`` for its namespace;
- everything else may or may not have reached the disk, but each operation is all or
  nothing: the namespace is the model's tree after *some* operation between the
  floor and the last operation that may have started (the prefix oracle of
  reliability.md §1.2), and every sector of a file's data is a version that file had
  between its own floor and that last operation.

So a directory fsync does not demand that an overwrite of another file be on disk
(ext4 in ordered mode does not write it either), while a returned fsync of that file
does. A sector of an older version counts only inside the blocks that version
already had (its size rounded up to a block): an overwrite of such a block may be
stale, but blocks appended to a file reach the disk before the commit that makes
them part of it (ordered data), so old zeros there are a bug, not a permitted state.
(Holes inside an older version are given the benefit of the doubt.)
"""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING

from bento_user.api import Request
from bento_user.blockdev import SECTOR_SIZE, RamDevice
from bento_user.runtime.direct import DirectRuntime

from .target import Target

if TYPE_CHECKING:
    from .crash import CrashState, Run

PERSIST = {"fsync", "fdatasync", "fsyncdir", "sync"}
DATA_PERSIST = {"fsync", "fdatasync"}
BLOCK = 4096


def persisted(run: Run, s: CrashState) -> tuple[int, ...]:
    """The persistence calls (indexes) that surely returned before the cut.

    The cut comes after flush ``epoch`` returned and after every landed write was
    issued, and before flush ``epoch + 1`` returned."""
    last_landed = max((run.rec.in_flight(s.epoch)[i].seq for i in
                       set(s.keep) | {i for i, _ in s.torn}), default=-1)
    out = []
    for i, (op, (_, end), ok) in enumerate(zip(run.workload, run.spans, run.succeeded)):
        if s.after is not None and i > s.after:
            break
        ended_before = end[1] < s.epoch or end[0] <= last_landed or s.after is not None
        if op[0] in PERSIST and ok and ended_before:
            out.append(i)
    return tuple(out)


def bounds(run: Run, s: CrashState, ordered_metadata: bool = True) -> tuple[int, int]:
    """(lo, hi): the recovered namespace must be some ``states[j]``, lo <= j <= hi.

    lo follows the last call that persists the namespace (any persistence call with
    ``ordered_metadata``, else ``sync``); hi the last call that may have started."""
    hi = 0
    for i, (start, _) in enumerate(run.spans):
        if s.after is not None and i > s.after:
            break
        if start[1] <= s.epoch:
            hi = i + 1
    lo = max((i + 1 for i in persisted(run, s)
              if ordered_metadata or run.workload[i][0] == "sync"), default=0)
    return lo, max(lo, hi)


def data_floor(run: Run, s: CrashState, ident: int) -> int:
    """The oldest state whose version of file ``ident`` may be on disk: after its own
    last returned fsync/fdatasync, or the last sync."""
    floor = 0
    for i in persisted(run, s):
        op = run.workload[i]
        if op[0] == "sync" or (op[0] in DATA_PERSIST and
                               run.states[i].idents.get(op[1]) == ident):
            floor = i + 1
    return floor


# -- checking one crash state ------------------------------------------------------------


def read_tree(rt: DirectRuntime) -> tuple[dict[str, tuple[int, int, int, bytes]], dict[str, bytes]]:
    """The recovered namespace, in the model's terms, and every file's bytes."""
    c = rt.client(Request())
    shape: dict[str, tuple[int, int, int, bytes]] = {}
    data: dict[str, bytes] = {}
    todo = [""]
    while todo:
        d = todo.pop()
        for name in c.listdir("/" + d):
            path = f"{d}/{name.decode(errors='surrogateescape')}".lstrip("/")
            a = c.lstat("/" + path)
            kind = stat.S_IFMT(a.mode)
            target = c.readlink("/" + path) if kind == stat.S_IFLNK else b""
            if kind == stat.S_IFDIR:          # size and links: conventions differ
                shape[path] = (kind, 0, 0, b"")
                todo.append(path)
            else:
                shape[path] = (kind, a.size, a.nlink, target)
            if kind == stat.S_IFREG:
                data[path] = c.read_bytes("/" + path)
    return shape, data


def check(target: Target, run: Run, s: CrashState) -> str | None:
    """None if the crash state recovers to an allowed tree; else what is wrong."""
    image = run.rec.crash_image(s.epoch, s.keep, {i: sectors for i, sectors in s.torn})
    flying = run.rec.in_flight(s.epoch) if s.flipped else []
    for i, bit in s.flipped:
        image[flying[i].blockno, bit // 8] ^= 1 << (bit % 8)
    dev = RamDevice.from_bytes(image)
    try:
        rt = target.open(dev)
    except OSError as e:
        return f"recovery failed: {e}"
    except Exception as e:  # noqa: BLE001 - a bug in recovery, reported
        return f"recovery raised {type(e).__name__}: {e}"
    try:
        try:
            shape, data = read_tree(rt)
        finally:
            rt.close()
    except Exception as e:  # noqa: BLE001
        return f"reading the recovered tree raised {type(e).__name__}: {e}"
    problems = target.fsck(dev.image())
    if problems:
        return "fsck after recovery: " + "; ".join(problems[:3])
    lo, hi = bounds(run, s, target.cls.ordered_metadata)
    matches = [j for j in range(lo, hi + 1) if run.states[j].shape == shape]
    if not matches:
        return _explain(run, lo, hi, shape)
    for path, content in data.items():
        ident = run.states[matches[0]].idents[path]
        floor = data_floor(run, s, ident)
        bad = _sector_mismatch(run, range(floor, hi + 1), lo, content, ident)
        if bad is not None:
            return (f"{path}: bytes {bad}..{bad + SECTOR_SIZE - 1} match no version the file "
                    f"had after ops {floor}..{hi} (data lost or stale)")
    return None


def _sector_mismatch(run: Run, allowed: range, lo: int, content: bytes,
                     ident: int) -> int | None:
    """The first sector of ``content`` that is none of the file's allowed versions.
    A version older than ``lo`` (the namespace's floor) counts only inside the
    blocks it already had: see the module docstring."""
    versions = [(j, run.states[j].data[ident]) for j in allowed if ident in run.states[j].data]
    for off in range(0, len(content), SECTOR_SIZE):
        got = content[off:off + SECTOR_SIZE]
        if not any(v[off:off + len(got)].ljust(len(got), b"\0") == got
                   for j, v in versions if j >= lo or off < -(-len(v) // BLOCK) * BLOCK):
            return off
    return None


def _explain(run: Run, lo: int, hi: int, shape: dict[str, tuple[int, int, int, bytes]]) -> str:
    """The difference to the nearest allowed state, in a line."""
    def diff(j: int) -> list[str]:
        want = run.states[j].shape
        out = [f"{p} missing" for p in sorted(want.keys() - shape.keys())]
        out += [f"{p} unexpected" for p in sorted(shape.keys() - want.keys())]
        for p in sorted(want.keys() & shape.keys()):
            if want[p] != shape[p]:
                (wk, ws, wn, _), (gk, gs, gn, _) = want[p], shape[p]
                out.append(f"{p}: " + (f"kind {stat.filemode(gk)[0]}, expected {stat.filemode(wk)[0]}"
                                       if wk != gk else f"size {gs}, expected {ws}" if ws != gs
                                       else f"{gn} links, expected {wn}"))
        return out
    nearest = min(range(lo, hi + 1), key=lambda j: len(diff(j)))
    return (f"recovered tree matches no state after ops {lo}..{hi}; nearest (after op "
            f"{nearest}): " + ", ".join(diff(nearest)[:4]))
