"""Who is asking: the kernel's view of a process, for file systems that record it.

A kernel file system reads ``current`` (its task struct); ours gets a pid with each
request and asks ``KernelServices.process(pid)``, which reads /proc best-effort —
the process may already have exited, or belong to another pid namespace. A pid is
only unique together with its start time (pids are reused), so the cache checks the
start time in /proc/PID/stat before trusting an entry seen more than a second ago
(reading it costs ~20 µs; a pid is not reused within a second but by a fork storm).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    start: int                 # start time in clock ticks since boot (0: unknown)
    exe: str                   # "" when unknown
    argv: tuple[str, ...]
    uid: int                   # -1 when unknown
    ppid: int                  # 0 when unknown

    @property
    def key(self) -> str:
        """Unique for the machine's uptime: pid and start time."""
        return f"{self.pid}:{self.start}"


RECHECK_S = 1.0  # an entry older than this is checked against /proc/PID/stat
ARGV_MAX = 2048  # bytes of command line kept: a record must stay small


class ProcessTable:
    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._cache: dict[int, tuple[ProcessInfo, float]] = {}  # pid -> (info, checked at)
        self._lock = threading.Lock()

    def lookup(self, pid: int) -> ProcessInfo:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(pid)
        if cached is not None and now - cached[1] < RECHECK_S:
            return cached[0]
        start, ppid = self._stat(pid)
        if cached is not None and cached[0].start == start:
            info = cached[0]
        else:
            info = ProcessInfo(pid, start, self._exe(pid), self._argv(pid), self._uid(pid), ppid)
        with self._lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[pid] = (info, now)
        return info

    def _read(self, pid: int, name: str) -> bytes:
        try:
            with open(f"{self.proc}/{pid}/{name}", "rb") as f:
                return f.read(ARGV_MAX if name == "cmdline" else 65536)
        except OSError:
            return b""

    def _stat(self, pid: int) -> tuple[int, int]:
        text = self._read(pid, "stat")
        fields = text[text.rfind(b")") + 2:].split()  # the name may hold spaces
        try:
            return int(fields[19]), int(fields[1])  # starttime, ppid
        except (IndexError, ValueError):
            return 0, 0

    def _exe(self, pid: int) -> str:
        try:
            return os.readlink(f"{self.proc}/{pid}/exe")
        except OSError:
            return ""

    def _argv(self, pid: int) -> tuple[str, ...]:
        raw = self._read(pid, "cmdline").removesuffix(b"\0")  # cut at ARGV_MAX: no NUL
        return tuple(a.decode(errors="replace") for a in raw.split(b"\0")) if raw else ()

    def _uid(self, pid: int) -> int:
        fields = status_field(pid, "Uid", self.proc)
        return int(fields[0]) if fields else -1


def status_field(pid: int | str, key: str, proc: str = "/proc") -> list[bytes]:
    """The values of line ``key`` of /proc/PID/status (``pid`` may be "self");
    [] if the process is gone, not ours to see, or has no such line."""
    prefix = key.encode() + b":"
    try:
        with open(f"{proc}/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split()[1:]
    except OSError:
        pass
    return []


def supplementary_groups(pid: int, proc: str = "/proc") -> tuple[int, ...]:
    """The supplementary groups of process ``pid``; () if it is gone."""
    return tuple(int(g) for g in status_field(pid, "Groups", proc))
