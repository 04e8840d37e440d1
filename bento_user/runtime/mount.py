"""A mount's life: open the image, mount through FUSE, serve, unmount cleanly.

``serve()`` runs in the daemon (or in the foreground with ``-f``). It reports through
``ready(None)`` once requests can be served, or ``ready(error)`` if the mount could
not be made, so ``bento mount`` returns only when the mount works or with the reason
it does not. SIGINT/SIGTERM and ``bento umount`` end it the same way: the file system
is destroyed (journal committed), the device flushed and closed.
"""

from __future__ import annotations

import base64
import dataclasses
import faulthandler
import functools
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyfuse3
import trio
import watchfiles

from ..api import ROOT_REQUEST, ErrorRecord, Filesystem, FsError
from ..blockdev import ImageDevice
from ..ks_emul import KernelServices, status_field
from . import control, loader, upgrade
from ._dispatch import Dispatcher
from .guard import Guard
from .fuse import WORKERS, FuseOperations, FuseOptions
from .space import bdi_dirty_limit
from .remote_pdb import debug_call
from .trace import TraceWriter

log = logging.getLogger("bento.mount")

WATCH_SETTLE = 0.02  # --watch: seconds without a further change before upgrading
READ_AHEAD_KB = 1024  # 1 MiB READs instead of 128 KiB (fuse_perf.md §2.2: +30-70 %)


CACHE_MIN_MIB, CACHE_MAX_MIB = 256, 4096


def default_cache_blocks(meminfo: str = "/proc/meminfo") -> int:
    """A quarter of the memory available now, between 256 MiB and 4 GiB, in blocks.

    The arena is anonymous memory touched only as blocks are cached, so a large cache
    costs nothing until data fills it; a small one makes every workload bigger than
    it pay for eviction and write-back (bench/RESULTS.md, "performance at scale").
    """
    try:
        with open(meminfo) as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        kib = CACHE_MIN_MIB * 4 * 1024
    mib = min(max(kib // 1024 // 4, CACHE_MIN_MIB), CACHE_MAX_MIB)
    return mib * 256  # 4 KiB blocks


def resident_memory() -> dict[str, float]:
    """The daemon's resident memory now and at its peak (VmRSS, VmHWM), in MiB."""
    out = {}
    for key, name in (("VmRSS", "rss_mib"), ("VmHWM", "peak_rss_mib")):
        kib = status_field("self", key)
        out[name] = int(kib[0]) / 1024 if kib else 0.0
    return out


@dataclass
class MountConfig:
    image: str
    mountpoint: str
    fs_spec: str = "xv6"
    fs_class: type[Filesystem] | None = None
    fs_options: dict[str, Any] = field(default_factory=dict)
    read_only: bool = False
    fuse: FuseOptions = field(default_factory=FuseOptions)
    cache_blocks: int = field(default_factory=default_cache_blocks)
    commit_interval: float = 5.0
    trace_path: str | None = None
    log_path: str | None = None
    watch: bool = False  # upgrade whenever a source file of the file system changes
    errors: str = "continue"  # on a corrupt block met: continue, or remount-ro


class Mount:
    """Everything one mount owns. Built in the daemon, after the fork: the journal's
    commit thread must not be forked away."""

    def __init__(self, config: MountConfig, fs: Filesystem) -> None:
        self.config = config
        self.mountpoint = os.path.realpath(config.mountpoint)
        device = ImageDevice(config.image, read_only=config.read_only)
        self.ks = KernelServices(device, cache_blocks=config.cache_blocks,
                                 commit_interval=config.commit_interval, writeback=True)
        self.dispatch = Dispatcher(fs)
        try:
            fs.init(self.ks)
        except BaseException:
            device.close()
            raise
        self.guard = Guard(self.dispatch, self.ks, on_errors=config.errors,
                           record_errors=not config.read_only)
        self.warning = self._recorded_errors_warning()
        self.ops = FuseOperations(self.guard, config.fuse)
        self.trace: TraceWriter | None = None
        if config.trace_path:
            self.trace = TraceWriter(config.trace_path, config)
            self.dispatch.trace = self.trace.record
        self.started = time.time()
        self.loaded = loader.Loaded.of(type(fs), config.fs_spec)  # the code running now
        self.upgrades: list[upgrade.UpgradeReport] = []
        self._upgrading = trio.Lock()
        self._listener = control.bind(self.mountpoint)

    @property
    def fs(self) -> Filesystem:
        return self.dispatch.fs

    def _recorded_errors_warning(self) -> str | None:
        """What the disk says of errors met at earlier mounts, for the person
        mounting (ext4 logs it at every mount until fsck clears it)."""
        recorded = self.guard.errors()["recorded"]
        if recorded is None:
            return None
        warning = (f"{self.config.image}: the file system {ErrorRecord(**recorded).summary()}; "
                   "run bento fsck")
        log.warning("%s", warning)
        return warning

    def mount_options(self) -> set[str]:
        opts = {f"fsname={os.path.realpath(self.config.image)}", "subtype=bento"}
        # auto_unmount (a dead daemon's mount goes away by itself) makes libfuse mount
        # through fusermount3, which mounts nosuid,nodev whatever was asked; so when
        # root asks for dev or suid, libfuse mounts by itself and a daemon killed
        # before it unmounts leaves its mount behind, to be unmounted by hand.
        if not {"dev", "suid"} & self.config.fuse.extra:
            opts.add("auto_unmount")
        # Users other than root may ask for allow_other only if /etc/fuse.conf allows.
        if self.config.fuse.allow_other:
            opts.add("allow_other")
        if self.config.fuse.default_permissions:
            opts.add("default_permissions")
        if self.config.read_only:
            opts.add("ro")
        return opts | self.config.fuse.extra

    def serve(self, ready: Callable[[str | None], None]) -> None:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        if hasattr(pyfuse3, "set_spin"):  # third_party/pyfuse3/poll.patch
            pyfuse3.set_spin(self.config.fuse.poll_us)
        try:
            pyfuse3.init(self.ops, self.mountpoint, self.mount_options())
        except RuntimeError as e:
            self._close_fs()
            ready(f"{self.mountpoint}: cannot mount: {e}")
            return
        clean = False
        try:
            log.info("mounted %s on %s (%s)", self.config.image, self.mountpoint,
                     type(self.fs).__name__)
            trio.run(self._main, ready)
            clean = True
        finally:
            pyfuse3.close(unmount=True)
            self._close_fs()
            log.info("unmounted %s%s", self.mountpoint, "" if clean else " after an error")

    def _close_fs(self) -> None:
        try:
            self.fs.destroy()
        finally:
            self.ks.close()
            if self.trace is not None:
                self.trace.close()

    async def _main(self, ready: Callable[[str | None], None]) -> None:
        server = control.ControlServer(self._listener, {
            "status": self._status, "stats": self._stats, "sync": self._sync,
            "debug": self._debug, "upgrade": self._upgrade, "report": self._report,
            "remount": self._remount,
        })
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._on_signals)
            nursery.start_soon(server.serve)
            nursery.start_soon(self._tune_device)
            if self.config.watch:
                nursery.start_soon(self._watch)
            ready(None)
            await pyfuse3.main(min_tasks=1, max_tasks=WORKERS)
            nursery.cancel_scope.cancel()

    # -- live upgrade -----------------------------------------------------------------

    async def upgrade(self, target: str, timeout: float = upgrade.DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Import ``target`` afresh and swap it in (upgrade.py). Requests are served
        meanwhile except while the gate is closed: the import and a first commit run
        in a worker thread, so the pause commits only what arrived since."""
        async with self._upgrading:
            start = time.perf_counter()
            try:
                loaded = await trio.to_thread.run_sync(
                    functools.partial(loader.load, target, fresh=True))
            except loader.LoadError as e:
                log.warning("upgrade failed: %s", e)
                return {"ok": False, "error": str(e)}
            imported = time.perf_counter()
            try:
                journal = self.ks.journal
                if journal is not None and not self.config.read_only:
                    await trio.to_thread.run_sync(journal.force_commit)
                report = upgrade.swap(self.dispatch, self.ks, loaded.cls, timeout=timeout)
                stale = self.ops.kernel_cache.take()  # what the old code told the kernel
            except Exception as e:  # whatever it was, the mount serves on
                loaded.restore()
                if not isinstance(e, (upgrade.UpgradeError, OSError)):
                    log.exception("upgrade to %s", target)
                log.warning("upgrade to %s failed: %s", target, e)
                return {"ok": False, "error": str(e) if isinstance(e, upgrade.UpgradeError)
                        else f"{type(e).__name__}: {e}"}
            self.loaded = loaded
            self.upgrades.append(report)
            await trio.to_thread.run_sync(stale.drop)
            if self.trace is not None:
                self.trace.upgrade(loaded.target, report.new)
            total = time.perf_counter() - start
            log.info("upgraded %s -> %s: pause %.2f ms (commit %.2f, prepare %.2f, build %.2f), "
                     "import %.1f ms, total %.1f ms", report.old, report.new,
                     report.pause_s * 1e3, report.commit_s * 1e3, report.prepare_s * 1e3,
                     report.build_s * 1e3, (imported - start) * 1e3, total * 1e3)
            return {"ok": True, **dataclasses.asdict(report), "import_s": imported - start,
                    "total_s": total}

    async def _upgrade(self, request: dict[str, Any], conn: Any) -> dict[str, Any]:
        target, timeout = request.get("target"), request.get("timeout_s", upgrade.DEFAULT_TIMEOUT)
        if not isinstance(target, str) or not isinstance(timeout, (int, float)) or timeout <= 0:
            return {"ok": False, "error": "upgrade needs a target and a positive time-out"}
        return await self.upgrade(target, float(timeout))

    async def _watch(self) -> None:
        """The development loop: the kernel says (inotify, through watchfiles) when a
        source file of the running code changes; ``WATCH_SETTLE`` after the last
        change of a burst (an editor may write several files), upgrade to it."""
        dirs = sorted({os.path.dirname(f) for f in self.loaded.source_files()})
        log.info("watching %d source directories of %s", len(dirs), self.loaded.name)
        async for changes in watchfiles.awatch(
                *dirs, recursive=False, step=int(WATCH_SETTLE * 1000), debounce=1000,
                watch_filter=lambda change, path: path.endswith(".py")):
            changed = sorted({os.path.basename(path) for _, path in changes})
            log.info("source changed (%s): upgrading", ", ".join(changed))
            await self.upgrade(self.loaded.target)  # a failed upgrade waits for the next edit

    async def _tune_device(self) -> None:
        """Once INIT has come (the kernel clamps read-ahead to what it negotiated, and
        the backing device exists only then): 1 MiB READs, and the space guard armed
        with the mount's dirty limit."""
        while not self.ops.initialized:
            await trio.sleep(0.01)
        bdi = _bdi(self.mountpoint)
        if bdi is None:
            log.warning("no backing device found for %s", self.mountpoint)
            return
        await self._raise_read_ahead(bdi)
        if self.config.fuse.writeback_cache and not self.config.read_only:
            try:
                s = self.dispatch.call("statfs", ROOT_REQUEST)
                self.ops.space.arm(bdi_dirty_limit(bdi, s.blocks * s.block_size))
            except (OSError, ValueError, StopIteration, FsError) as e:
                log.warning("no space guard on %s (a full disk may lose cached writes): %s",
                            self.mountpoint, e)

    async def _raise_read_ahead(self, bdi: str) -> None:
        """1 MiB READs instead of 128 KiB, set and checked."""
        try:
            path = f"/sys/class/bdi/{bdi}/read_ahead_kb"
            for _ in range(50):
                await trio.sleep(0.02)
                with open(path, "w") as f:
                    f.write(str(READ_AHEAD_KB))
                with open(path) as f:
                    if int(f.read()) == READ_AHEAD_KB:
                        return
            log.warning("read_ahead_kb on %s did not stay at %d", self.mountpoint, READ_AHEAD_KB)
        except (OSError, ValueError) as e:
            log.warning("could not raise read_ahead_kb on %s: %s", self.mountpoint, e)

    async def _on_signals(self) -> None:
        # SIGHUP too: its default would end the daemon without unmounting or a word
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for signum in signals:
                log.info("%s: unmounting", signal.Signals(signum).name)
                pyfuse3.terminate()
                return

    # -- control commands -------------------------------------------------------------

    async def _status(self, request: dict[str, Any], conn: Any) -> dict[str, Any]:
        return {"ok": True, "pid": os.getpid(), "uid": os.getuid(), "image": self.config.image,
                "mountpoint": self.mountpoint, "fs": f"{type(self.fs).__module__}:"
                f"{type(self.fs).__name__}", "started": self.started,
                "log": self.config.log_path, "trace": self.config.trace_path,
                "upgrades": len(self.upgrades), "watch": self.config.watch}

    async def _stats(self, request: dict[str, Any], conn: Any) -> dict[str, Any]:
        ops = {}
        for name, s in sorted(self.dispatch.stats.items()):
            samples = np.array(s.samples) * 1e6
            p50, p90, p99 = np.percentile(samples, [50, 90, 99]) if len(samples) else (0, 0, 0)
            ops[name] = {"calls": s.calls, "errors": s.errors, "total_s": s.seconds,
                         "p50_us": p50, "p90_us": p90, "p99_us": p99,
                         "max_us": float(samples.max()) if len(samples) else 0.0}
        cache = self.ks.cache.statistics()
        pauses = [r.pause_s * 1e3 for r in self.upgrades]
        answer: dict[str, Any] = {
            "ok": True, "uptime_s": time.time() - self.started, "operations": ops,
            "bugs": self.ops.bugs, "guard": self.guard.status(), "errors": self.guard.errors(),
            "upgrades": {"count": len(pauses), "last_pause_ms": pauses[-1] if pauses else None,
                         "max_pause_ms": max(pauses, default=None)},
            "cache": {"hit_rate": cache.hit_rate, "hits": cache.hits, "misses": cache.misses,
                      "cached": cache.cached, "dirty": cache.dirty, "capacity": cache.capacity,
                      "pinned_dirty": cache.pinned_dirty, "evictable": cache.evictable,
                      "background_writes": cache.background_writes,
                      "throttled": cache.throttled, "stalls": cache.stalls,
                      "evictions": cache.evictions,
                      "reads": cache.reads, "writes": cache.writes,
                      "bytes_read": cache.bytes_read, "bytes_written": cache.bytes_written},
        }
        answer["memory"] = resident_memory()
        space = self.ops.space
        answer["space"] = {"dirty_limit": space.dirty_limit, "reserve": space.reserve,
                           "low_water": space.low_water, "direct_opens": space.direct_opens,
                           "refused": space.refused}
        if self.ks.journal is not None:
            j = self.ks.journal.statistics()
            answer["journal"] = {"commits": j.commits, "forced": j.forced_commits,
                                 "timer": j.timer_commits, "blocks_logged": j.blocks_logged,
                                 "log_used": j.log_used, "log_size": j.log_size,
                                 "checkpoints": j.checkpoints,
                                 "commit_seconds": j.commit_seconds}
        return answer

    async def _remount(self, request: dict[str, Any], conn: Any) -> dict[str, Any]:
        """``mount -o remount,...`` (mount.fuse.bento passes it on): ``read_only``
        commits, then refuses every change with EROFS until a remount read-write;
        ``commit`` sets the journal's timer."""
        read_only, commit = request.get("read_only"), request.get("commit")
        journal = self.ks.journal
        if read_only is False and self.config.read_only:
            return {"ok": False, "error": "mounted with -o ro, the image is open read-only: "
                                          "unmount and mount it read-write"}
        if commit is not None:
            if journal is None or not journal.commit_interval or float(commit) <= 0:
                return {"ok": False, "error": "commit=: this mount has no journal timer to set"}
            journal.commit_interval = float(commit)
        if read_only:
            self.guard.remounted_read_only = True   # first: nothing new to commit after
            self.dispatch.call("remount", True)     # and nothing the fs does on its own
            await trio.to_thread.run_sync(self.ks.sync)
        elif read_only is False:
            self.dispatch.call("remount", False)
            self.guard.remounted_read_only = False
        log.info("remounted: %s", {k: v for k, v in request.items() if k != "cmd"})
        return {"ok": True}

    async def _sync(self, request: dict[str, Any], conn: Any) -> dict[str, Any]:
        start = time.perf_counter()
        self.ks.sync()
        return {"ok": True, "seconds": time.perf_counter() - start}

    async def _report(self, request: dict[str, Any], conn: Any) -> dict[str, Any]:
        """A file system's named report (``Filesystem.report``), base64: ``bento prov``
        reads provenance records this way while the image is mounted."""
        name = request.get("name")
        if not isinstance(name, str):
            return {"ok": False, "error": "report needs a name"}
        try:
            data = self.dispatch.call("report", name)
        except FsError as e:
            return {"ok": False, "error": f"{type(self.fs).__name__} has no report {name!r}: "
                                          f"{e.strerror}"}
        return {"ok": True, "data": base64.b64encode(data).decode()}

    async def _debug(self, request: dict[str, Any], conn: Any) -> dict[str, Any] | None:
        """Arm a stop in the next request (of one kind), then lend the connection to
        the debugger until that request is done."""
        op = request.get("on")
        done = trio.Event()

        def hook(name: str, args: tuple[Any, ...]) -> Any:
            try:
                return debug_call(conn.fileno(), name, getattr(self.fs, name), args)
            finally:
                done.set()

        if self.ops.intercept is not None:
            return {"ok": False, "error": "another debugger is already waiting"}
        self.ops.intercept_op = op
        self.ops.intercept = hook
        await control.send_answer(conn, {"ok": True, "pid": os.getpid(), "on": op})
        try:
            await done.wait()
        finally:
            if not done.is_set():
                self.ops.intercept = None
        return None


def _bdi(mountpoint: str) -> str | None:
    """The mount's backing-device name ("0:53"), from mountinfo: stat() on the
    mount would wait for our own loop."""
    dev = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == mountpoint:
                dev = fields[2]
    return dev
