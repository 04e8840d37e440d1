"""Request traces: record a mount's file-system calls, replay them in-process.

A trace is JSON lines: a header, then one record per call the runtime made on the
file system (operation, arguments, result or errno, duration). Data written is kept
in full (replay needs it); data read is kept as length and crc32c. Replaying the
trace on the direct runtime, from a copy of the image as it was at mount time, makes
the same calls, so a bug seen under a mount can be stepped through in pdb
(``bento replay --stop-at N``).

Inode numbers and file handles of the replay may differ from the recording's (a
file system is free to choose them); the replay maps each recorded one to the one
its own run returned. A live upgrade is a record too (``{"upgrade": TARGET}``): the
replay upgrades at the same point, so a bug that needs the handover reproduces.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pdb
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import crc32c

from ..api import Attr, DirEntry, FsError, Request, SetAttr, StatFs, UpgradeState
from . import loader

FORMAT = 1
_TYPES: dict[str, type] = {t.__name__: t for t in (Attr, DirEntry, Request, SetAttr, StatFs,
                                                   UpgradeState)}

# Positions of inode-number and file-handle arguments, per operation.
INO_ARGS: dict[str, tuple[int, ...]] = {
    "lookup": (1,), "mknod": (1,), "mkdir": (1,), "symlink": (1,), "link": (1, 2),
    "unlink": (1,), "rmdir": (1,), "rename": (1, 3), "readlink": (1,), "getattr": (1,),
    "setattr": (1,), "access": (1,), "open": (1,), "create": (1,), "opendir": (1,),
    "getxattr": (1,), "setxattr": (1,), "listxattr": (1,), "removexattr": (1,),
}
FH_ARGS: dict[str, tuple[int, ...]] = {
    "read": (0,), "write": (0,), "flush": (0,), "release": (0,), "fsync": (0,),
    "fallocate": (0,), "lseek": (0,), "readdir": (0,), "releasedir": (0,), "fsyncdir": (0,),
    "setattr": (3,),
}


def encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) <= 4096:
            try:
                return {"s": raw.decode()}
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(raw).decode()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if dataclasses.is_dataclass(value) and type(value).__name__ in _TYPES:
        return {"@": type(value).__name__,
                **{f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    return {"repr": repr(value)}


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "s" in value:
        return value["s"].encode()
    if "b64" in value:
        return base64.b64decode(value["b64"])
    if "@" in value:  # a frozen dataclass: JSON's lists were its tuples (hashable)
        cls = _TYPES[value["@"]]
        return cls(**{k: _tuples(decode(v)) for k, v in value.items() if k != "@"})
    raise ValueError(f"cannot decode {value!r}")


def summarise_result(op: str, result: Any) -> Any:
    if op == "read":
        data = bytes(result)
        return {"len": len(data), "crc32c": crc32c.crc32c(data)}
    return encode(result)


class TraceWriter:
    """Appends one JSON line per call; flushed each time, so a trace survives the
    daemon being killed."""

    def __init__(self, path: str, config: Any) -> None:
        self._file: TextIO = open(path, "w", encoding="utf-8")
        self._lock = threading.Lock()
        self._seq = 0
        self._t0 = time.perf_counter()
        header = {"bento_trace": FORMAT, "image": getattr(config, "image", None),
                  "fs": getattr(config, "fs_spec", None), "started": time.time()}
        self._file.write(json.dumps(header) + "\n")
        self._file.flush()

    def record(self, op: str, args: tuple[Any, ...], result: Any, error: BaseException | None,
               start: float, seconds: float) -> None:
        rec: dict[str, Any] = {"op": op, "args": encode(args), "t": round(start - self._t0, 6),
                               "us": round(seconds * 1e6, 1)}
        if error is None:
            rec["result"] = summarise_result(op, result)
        elif isinstance(error, FsError):
            rec["errno"] = error.errno
        else:
            rec["exception"] = repr(error)
        with self._lock:
            self._seq += 1
            rec["n"] = self._seq
            self._file.write(json.dumps(rec) + "\n")
            self._file.flush()

    def upgrade(self, target: str, new: str) -> None:
        """A live upgrade to ``target`` (class ``new``) happened here."""
        with self._lock:
            self._seq += 1
            self._file.write(json.dumps({"upgrade": target, "fs": new, "n": self._seq}) + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_trace(path: str) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    f = open(path, encoding="utf-8")
    first = f.readline()
    try:
        header = json.loads(first)
    except ValueError:
        header = {}
    if header.get("bento_trace") != FORMAT:
        f.close()
        raise ValueError(f"{path}: not a bento trace (format {FORMAT})")

    def records() -> Iterator[dict[str, Any]]:
        with f:
            for lineno, line in enumerate(f, 2):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: not a JSON record "
                                     "(a trace cut short by a crash ends here)") from None

    return header, records()


@dataclass
class Divergence:
    n: int
    op: str
    expected: Any
    got: Any


@dataclass
class ReplayReport:
    calls: int = 0
    upgrades: int = 0
    divergences: list[Divergence] = field(default_factory=list)


class Replayer:
    """Replays records on ``runtime`` (a ``DirectRuntime``), mapping identities."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.inos: dict[int, int] = {}
        self.fhs: dict[int, int] = {}
        self.report = ReplayReport()

    def _map_args(self, op: str, args: list[Any]) -> list[Any]:
        for i in INO_ARGS.get(op, ()):
            args[i] = self.inos.get(args[i], args[i])
        for i in FH_ARGS.get(op, ()):
            if args[i] is not None:
                args[i] = self.fhs.get(args[i], args[i])
        if op == "forget":
            args[0] = [(self.inos.get(ino, ino), n) for ino, n in args[0]]
        return args

    def _learn(self, op: str, recorded: Any, got: Any) -> None:
        if isinstance(recorded, dict) and recorded.get("@") == "Attr" and isinstance(got, Attr):
            self.inos[recorded["ino"]] = got.ino
        elif op in ("open", "opendir") and isinstance(recorded, int):
            self.fhs[recorded] = got
        elif op == "create" and isinstance(recorded, list) and isinstance(got, tuple):
            self._learn("lookup", recorded[0], got[0])
            self.fhs[recorded[1]] = got[1]

    def step(self, rec: dict[str, Any], debug: bool = False) -> None:
        if "upgrade" in rec:
            self.runtime.upgrade(loader.load(rec["upgrade"], fresh=True).cls)
            self.report.upgrades += 1
            return
        op = rec["op"]
        args = self._map_args(op, decode(rec["args"]))
        got: Any = None
        err: int | None = None
        try:
            if debug:
                got = pdb.Pdb().runcall(getattr(self.runtime.fs, op), *args)
            else:
                got = self.runtime.call(op, *args)
            if op == "readdir":
                got = list(got)
        except FsError as e:
            err = e.errno
        self.report.calls += 1
        if err is None and "result" in rec:
            self._learn(op, rec["result"], got)
        expected = ("errno", rec["errno"]) if "errno" in rec else ("result", self._comparable(
            op, rec.get("result"), recorded=True))
        actual = ("errno", err) if err is not None else ("result", self._comparable(
            op, summarise_result(op, got) if op == "read" else encode(got), recorded=False))
        if "exception" not in rec and expected != actual:
            self.report.divergences.append(Divergence(rec.get("n", 0), op, expected, actual))

    def _comparable(self, op: str, value: Any, recorded: bool) -> Any:
        """What must match between recording and replay: not times, and inode
        numbers and handles after mapping."""
        if isinstance(value, dict) and value.get("@") == "Attr":
            ino = self.inos.get(value["ino"], value["ino"]) if recorded else value["ino"]
            return ("Attr", ino, value["mode"], value["nlink"], value["uid"], value["gid"],
                    value["size"])
        if op in ("open", "opendir"):
            return "handle"
        if op == "create" and isinstance(value, list):
            return (self._comparable("lookup", value[0], recorded), "handle")
        if op == "readdir" and isinstance(value, list):
            return [v["name"] for v in value]
        if isinstance(value, dict) and value.get("@") == "StatFs":
            return "statfs"
        return value
