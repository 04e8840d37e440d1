"""What one FUSE request costs in our own Python, layer by layer, without the kernel.

    .venv/bin/python bench/request_cost.py [--fs xv6] [--calls 20000]

A round trip through /dev/fuse costs about 60 µs on these machines whatever the file
system does (../shared/research/fuse_perf.md §2.1: C and pyfuse3 alike, across
CPUs), so what we add to it is what this measures: each request the kernel sends
most (tar's four setattrs a file, the ``security.capability`` getxattr before every
write, lookups, 4 KiB reads and writes of cached blocks) timed at each layer — the
file system's method, the dispatcher, the guard, and the FUSE handler pyfuse3 calls —
on a RAM device, so no device time is in it. The best of seven rounds (the least
disturbed by this VM's neighbours), µs per call.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pyfuse3

from bento_user.api import ROOT_INODE, ROOT_REQUEST, FsError, SetAttr
from bento_user.blockdev import RamDevice
from bento_user.ks_emul import KernelServices
from bento_user.runtime._dispatch import Dispatcher
from bento_user.runtime.fuse import FuseOperations, FuseOptions
from bento_user.runtime.guard import Guard
from bento_user.runtime.loader import load_filesystem_class

NAME = b"file"


@dataclass
class Context:  # what a pyfuse3.RequestContext offers the handlers
    uid: int = 0
    gid: int = 0
    pid: int = os.getpid()
    umask: int = 0o022


def build(fs_name: str, blocks: int = 16384) -> tuple[FuseOperations, int, int]:
    """An fs on a RAM device with a 64 KiB file; its inode and an open handle."""
    cls = load_filesystem_class(fs_name)
    dev = RamDevice(blocks)
    cls.mkfs(dev)
    fs = cls()
    ks = KernelServices(dev, commit_interval=None, writeback=True)
    fs.init(ks)
    dispatch = Dispatcher(fs)
    ops = FuseOperations(Guard(dispatch, ks), FuseOptions())
    attr, fh = fs.create(ROOT_REQUEST, ROOT_INODE, NAME, 0o100644, os.O_RDWR)
    fs.write(fh, 0, b"x" * 65536)
    return ops, attr.ino, fh


def per_call(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def quiet(fn: Callable[[], Any]) -> Callable[[], Any]:
    def call() -> Any:
        try:
            return fn()
        except (FsError, pyfuse3.FUSEError):
            return None
    return call


def handler(coro: Callable[[], Any]) -> Callable[[], Any]:
    """Drive an async handler that never awaits, as pyfuse3's loop does: to the end."""
    def call() -> Any:
        c = coro()
        try:
            c.send(None)
        except StopIteration as e:
            return e.value
        except pyfuse3.FUSEError:
            return None
        raise RuntimeError("the handler awaited")
    return call


def cases(ops: FuseOperations, ino: int, fh: int) -> dict[str, dict[str, Callable[[], Any]]]:
    fs, dispatch, guard, ctx = ops.dispatch.fs, ops.dispatch, ops.guard, Context()
    req = ops._req(ctx)  # noqa: SLF001 — the request the handlers would build
    times = SetAttr(mtime_ns=1_700_000_000_000_000_000)
    fields = SimpleNamespace(update_mode=False, update_uid=False, update_gid=False,
                             update_size=False, update_atime=False, update_mtime=True,
                             update_ctime=False)  # pyfuse3's SetattrFields is read-only
    entry = pyfuse3.EntryAttributes()
    entry.st_mtime_ns = times.mtime_ns
    block = b"y" * 4096
    cap = b"security.capability"
    return {
        "getxattr (ENODATA)": {
            "fs": quiet(lambda: fs.getxattr(req, ino, cap)),
            "dispatcher": quiet(lambda: dispatch.call("getxattr", req, ino, cap)),
            "guard": quiet(lambda: guard.call("getxattr", req, ino, cap)),
            "handler": handler(lambda: ops.getxattr(ino, cap, ctx)),
        },
        "getattr": {
            "fs": lambda: fs.getattr(req, ino),
            "dispatcher": lambda: dispatch.call("getattr", req, ino),
            "guard": lambda: guard.call("getattr", req, ino),
            "handler": handler(lambda: ops.getattr(ino, ctx)),
        },
        "lookup + forget": {
            "fs": lambda: (fs.lookup(req, ROOT_INODE, NAME), fs.forget([(ino, 1)])),
            "dispatcher": lambda: (dispatch.call("lookup", req, ROOT_INODE, NAME),
                                   dispatch.call("forget", [(ino, 1)])),
            "guard": lambda: (guard.call("lookup", req, ROOT_INODE, NAME),
                              guard.call("forget", [(ino, 1)])),
            "handler": lambda: (handler(lambda: ops.lookup(ROOT_INODE, NAME, ctx))(),
                                handler(lambda: ops.forget([(ino, 1)]))()),
        },
        "setattr (mtime)": {
            "fs": lambda: fs.setattr(req, ino, times, None),
            "dispatcher": lambda: dispatch.call("setattr", req, ino, times, None),
            "guard": lambda: guard.call("setattr", req, ino, times, None),
            "handler": handler(lambda: ops.setattr(ino, entry, fields, None, ctx)),
        },
        "read 4 KiB, cached": {
            "fs": lambda: fs.read(fh, 8192, 4096),
            "dispatcher": lambda: dispatch.call("read", fh, 8192, 4096),
            "guard": lambda: guard.call("read", fh, 8192, 4096),
            "handler": handler(lambda: ops.read(fh, 8192, 4096)),
        },
        "write 4 KiB, cached": {
            "fs": lambda: fs.write(fh, 8192, block),
            "dispatcher": lambda: dispatch.call("write", fh, 8192, block),
            "guard": lambda: guard.call("write", fh, 8192, block),
            "handler": handler(lambda: ops.write(fh, 8192, block)),
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fs", default="xv6")
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    ops, ino, fh = build(args.fs)
    ops.space.opened(fh, ino, False)  # as the open handler would have
    ops._file_inodes[fh] = ino  # noqa: SLF001
    layers = ("fs", "dispatcher", "guard", "handler")
    print(f"{args.fs}: µs per call, best of {args.rounds} rounds of {args.calls:,}")
    print(f"| request | {' | '.join(layers)} | ours beyond the fs |")
    print("|---|" + "---:|" * (len(layers) + 1))
    for name, at in cases(ops, ino, fh).items():
        rounds: dict[str, list[float]] = {layer: [] for layer in layers}
        for _ in range(args.rounds):  # layers interleaved: drift hits all alike
            for layer in layers:
                rounds[layer].append(per_call(at[layer], args.calls))
        us = {layer: min(r) for layer, r in rounds.items()}
        cells = " | ".join(f"{us[layer]:.1f}" for layer in layers)
        print(f"| {name} | {cells} | {us['handler'] - us['fs']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
