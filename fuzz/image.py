"""``bento fuzz image``: corrupt images must give clear errors, never worse.

In the manner of JANUS: small seed images (a populated tree; the same with a journal
waiting to be replayed; one with an orphan to reclaim) are made by the file system
itself, and their *metadata* blocks — those its mount, a walk and fsck read that do
not hold file data — are mutated: integer fields set to edge values (0, -1, sizes
and counts past the device, 2**63), words copied from elsewhere (pointers into
other structures: duplicates and cycles), bit flips, zeroed and scrambled spans,
whole sectors swapped. Each image is then fsck'd, mounted, walked (every entry
stat'ed, files read at both ends, links and xattrs read) and changed (create,
write, rename, truncate, unlink), and unmounted.

Any ``OSError`` the file system raises is a clear error and fine. A failure is: an
exception of any other kind, a request outside the device (the file system trusted
a block number), a hang past the time bound, memory past the bound, or fsck calling
an image clean that the mount then reports corrupt.

With ``repair`` (``--repair``), an image fsck rejects is repaired (``fsck -y``) and
the repair is held to e2fsck's word: exit 1 (all fixed) or 4 (some left); after 1 a
second check is clean and the repaired image mounts, walks and changes. Outcomes
``repaired`` and ``left`` count them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import random
import resource
import signal
import stat
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bento_user.api import FsError, Request
from bento_user.blockdev import BlockRangeError, Buffer, RamDevice, RecordingDevice
from bento_user.runtime.direct import PathClient

from .target import Target

NBLOCKS = 1024
BLOCK = 4096
DATA_MARK = b"FUZZDATA"          # starts every block of file data in the seed images
TIME_BOUND = 10.0                # seconds per image
MEMORY_BOUND = 2 << 30           # bytes over what the process had when it started
READ_LIMIT = 1 << 20             # bytes read from the start of each file in the walk
# /sparse has a block where each level of a classic block map begins (12 direct
# pointers, 1,024 per indirect block: xv6's and ext2's shape), so corrupted pointers
# of every level are in the seed images; holes make it cost five blocks of data.
SPARSE_BLOCKS = [0, 12, 12 + 1024, 12 + 1024 + 1024**2, 12 + 1024 + 1024**2 + 5]


class _Hang(BaseException):
    """Raised by the alarm in whatever the file system was doing."""


class _Bounds:
    """Stops one image's check past ``seconds``, or (off the main thread) past
    ``memory`` bytes more than it had resident at the start, by raising in the
    checking thread.

    On the main thread the time bound is SIGALRM, and ``run`` bounds memory with
    RLIMIT_AS for the whole process. Off the main thread neither is safe: the alarm
    cannot be had, and an address-space limit would fail the process's other threads
    too. There a watcher thread polls the clock and the resident size and sets
    ``_Hang`` or ``MemoryError`` as the checking thread's asynchronous exception,
    which lands at its next bytecode — possibly inside a lock's critical section,
    leaving the lock held. That is the best a thread can do; campaigns do not rely on
    it (their workers run image shards in a child process: fuzz/shard_process.py).

    Past the deadline the exception is raised again every ``POLL`` until ``stop``:
    one raise can be lost — a ``finally`` or ``__exit__`` on its way out may raise
    something else, which the file system's error handling turns into an ``OSError``
    the walk takes as a clear error — and the check would then run unbounded.
    ``fired`` says that the deadline passed, whatever came out."""

    POLL = 0.02  # seconds between the watcher's looks

    def __init__(self, seconds: float, memory: int = MEMORY_BOUND) -> None:
        self.seconds = seconds
        self.memory = memory
        self.fired = False
        self.on_main = threading.current_thread() is threading.main_thread()
        self.thread = threading.get_ident()
        self.lock = threading.Lock()
        self.done = threading.Event()

    def start(self) -> None:
        if self.on_main:
            self.previous = signal.signal(signal.SIGALRM, self._alarm)
            signal.setitimer(signal.ITIMER_REAL, self.seconds, self.POLL)
            return
        self.memory_limit = _resident() + self.memory
        self.watcher = threading.Thread(target=self._watch, name="image-bounds", daemon=True)
        self.watcher.start()

    def stop(self) -> None:
        if self.on_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
            return
        try:
            with self.lock:
                self.done.set()
            for _ in range(8):
                pass  # an exception set but not raised yet lands here
        except (_Hang, MemoryError):
            pass
        # Never clear a pending one with PyThreadState_SetAsyncExc(id, NULL): that
        # leaves the interpreter-wide "async exception pending" flag set, and every
        # thread then runs the eval loop's slow path (a 12 s shrink did not end in 400 s).

    def _alarm(self, signum: int, frame: Any) -> None:
        self.fired = True
        raise _Hang()

    def _watch(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.done.wait(self.POLL):
            if time.monotonic() > deadline:
                self.fired = True
                self._raise(_Hang)
            elif _resident() > self.memory_limit:
                self._raise(MemoryError)

    def _raise(self, kind: type[BaseException]) -> None:
        with self.lock:
            if not self.done.is_set():
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread),
                                                           ctypes.py_object(kind))


def _statm() -> tuple[int, int]:
    """This process's (address space, resident) size in bytes."""
    with open("/proc/self/statm") as f:
        size, resident = f.read().split()[:2]
    return int(size) * resource.getpagesize(), int(resident) * resource.getpagesize()


def _resident() -> int:
    return _statm()[1]


class WatchedDevice(RamDevice):
    """A RAM disk that remembers which blocks were read and any request that reached
    outside it (the file system may turn the error into EIO: we still know)."""

    def __init__(self, nblocks: int, block_size: int = BLOCK, name: str = "fuzz") -> None:
        super().__init__(nblocks, block_size, name)
        self.read_set: set[int] = set()
        self.outside: list[str] = []

    def _check(self, start: int, buffers: Sequence[Buffer], writing: bool) -> int:
        try:
            return super()._check(start, buffers, writing)
        except BlockRangeError as e:
            self.outside.append(f"{'write' if writing else 'read'} outside the device: {e.strerror}")
            raise

    def _read(self, start: int, buffers: Sequence[Buffer], count: int) -> None:
        self.read_set.update(range(start, start + count))
        super()._read(start, buffers, count)


# -- seed images -------------------------------------------------------------------------


def _data(tag: int, size: int) -> bytes:
    """File contents whose every block starts with DATA_MARK (so they are not mutated)."""
    block = DATA_MARK + bytes([tag % 251 + 1]) * (BLOCK - len(DATA_MARK))
    return (block * (size // BLOCK + 1))[:size]


def _populate(target: Target, c: PathClient) -> None:
    c.mkdir("/A")
    c.mkdir("/A/B")
    c.mkdir("/many")
    for i in range(60):
        c.write_bytes(f"/many/entry-with-a-longer-name-{i:03d}", b"")
    for i, size in enumerate([0, 100, 5000, 14 * BLOCK, 70 * BLOCK]):
        c.write_bytes(f"/A/f{i}", _data(i, size))
    c.write_bytes("/A/B/deep", _data(9, 3 * BLOCK))
    fd = c.open("/sparse", os.O_CREAT | os.O_WRONLY)
    for lblk in SPARSE_BLOCKS:                  # one block at the start of each level
        try:
            c.pwrite(fd, _data(7 + lblk % 5, BLOCK), lblk * BLOCK)
        except OSError as e:                    # past a smaller file system's largest file
            if e.errno != errno.EFBIG:
                raise
    c.close(fd)
    if target.supports("link"):
        c.link("/A/f2", "/A/B/hard")
    if target.supports("symlink"):
        c.symlink("A/f1", "/short-link")
        c.symlink("x" * 300, "/long-link")
    if target.supports("setxattr"):
        c.setxattr("/A/f1", b"user.note", b"v" * 200)
        try:  # attributes past one block, where the file system takes them
            c.setxattr("/A/f2", b"user.long", b"w" * 9000)
        except OSError:
            pass


def seed_images(target: Target) -> dict[str, np.ndarray]:
    """Three starting points: clean; a journal to replay; an orphan to reclaim."""
    images: dict[str, np.ndarray] = {}
    dev = target.fresh_device(NBLOCKS)
    with target.open(dev) as rt:
        _populate(target, rt.client())
    images["clean"] = dev.blocks.copy()

    rec = RecordingDevice(RamDevice.from_bytes(images["clean"]))
    rt = target.open(rec)
    c = rt.client()
    c.write_bytes("/A/journalled", _data(11, 2 * BLOCK))
    c.rename("/A/f3", "/A/B/moved")
    c.unlink("/many/entry-with-a-longer-name-007")
    fd = c.open("/A/f4", os.O_RDWR)
    c.unlink("/A/f4")                                      # an orphan, still open
    c.fsync(fd)
    rt.crash()
    images["replay"] = rec.crash_image(rec.epochs)         # committed, not checkpointed
    return images


def metadata_blocks(target: Target, image: np.ndarray) -> list[int]:
    """Blocks the file system reads to mount, walk and check the image, minus file
    data."""
    dev = WatchedDevice.from_bytes(image)
    with target.open(dev) as rt:
        _walk(rt.client(), _Counter())
    reads = set(dev.read_set)
    check = WatchedDevice.from_bytes(image)
    target.fsck(check)
    reads |= check.read_set
    return sorted(b for b in reads if bytes(image[b][:len(DATA_MARK)]) != DATA_MARK)


# -- mutations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    block: int
    offset: int
    new: bytes
    what: str

    def apply(self, image: np.ndarray) -> None:
        image[self.block, self.offset:self.offset + len(self.new)] = np.frombuffer(self.new, np.uint8)

    def __str__(self) -> str:
        return f"block {self.block}+{self.offset}: {self.what}"


def _interesting(nblocks: int) -> list[int]:
    return [0, 1, 2, 3, 7, 13, 255, 256, 4095, 4096, nblocks - 1, nblocks, nblocks + 1,
            2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1]


def mutate(rng: random.Random, image: np.ndarray, blocks: list[int]) -> Mutation:
    """One random change to one metadata block."""
    b = rng.choice(blocks)
    kind = rng.choice(["int32", "int32", "int64", "copy", "copy", "flip", "scramble", "zero",
                       "sector"])
    if kind == "int32":
        off = rng.randrange(0, BLOCK, 4)
        value = rng.choice(_interesting(len(image)))
        return Mutation(b, off, struct.pack("<I", value % 2**32), f"u32 = {value}")
    if kind == "int64":
        off = rng.randrange(0, BLOCK, 8)
        value = rng.choice([2**63 - 1, 2**64 - 1, 2**40, 2**32, len(image) * BLOCK + 1, 0])
        return Mutation(b, off, struct.pack("<Q", value), f"u64 = {value}")
    if kind == "copy":          # a pointer or number from elsewhere: duplicates, cycles
        src, size = rng.choice(blocks), rng.choice([2, 4, 8])
        so, off = rng.randrange(0, BLOCK, size), rng.randrange(0, BLOCK, size)
        return Mutation(b, off, bytes(image[src, so:so + size]), f"{size} bytes from block {src}+{so}")
    if kind == "flip":
        off, bit = rng.randrange(BLOCK), rng.randrange(8)
        return Mutation(b, off, bytes([int(image[b, off]) ^ (1 << bit)]), f"bit {bit} flipped")
    if kind == "scramble":
        off = rng.randrange(0, BLOCK - 16)
        return Mutation(b, off, rng.randbytes(16), "16 random bytes")
    if kind == "zero":
        size = rng.choice([64, 256, 512])
        off = rng.randrange(0, BLOCK - size + 1, 64)
        return Mutation(b, off, bytes(size), f"{size} bytes zeroed")
    src = rng.choice(blocks)
    so, off = rng.randrange(0, BLOCK, 512), rng.randrange(0, BLOCK, 512)
    return Mutation(b, off, bytes(image[src, so:so + 512]), f"sector from block {src}+{so}")


# -- running one image ----------------------------------------------------------------------


class _Counter:
    """Bounds on the walk itself (a corrupt tree may be huge or cyclic)."""

    def __init__(self) -> None:
        self.entries = 0


def _each(fn: Callable[..., Any], *args: Any) -> Any:
    """Call; an OSError is a clear error (fine), anything else propagates."""
    try:
        return fn(*args)
    except BlockRangeError:
        raise
    except OSError:
        return None


def _walk(c: PathClient, counter: _Counter) -> list[str]:
    """Every entry stat'ed, files read at both ends, symlinks and xattrs read;
    returns the regular files found."""
    files, todo, seen = [], ["/"], set()
    while todo and counter.entries < 5000:
        d = todo.pop()
        names = _each(c.listdir, d) or []
        for name in names:
            counter.entries += 1
            path = d.rstrip("/") + "/" + os.fsdecode(name)
            a = _each(c.lstat, path)
            if a is None:
                continue
            kind = stat.S_IFMT(a.mode)
            if kind == stat.S_IFDIR and a.ino not in seen:
                seen.add(a.ino)
                todo.append(path)
            elif kind == stat.S_IFLNK:
                _each(c.readlink, path)
            elif kind == stat.S_IFREG:
                files.append(path)
                fd = _each(c.open, path, os.O_RDONLY)
                if fd is not None:
                    _each(c.pread, fd, READ_LIMIT, 0)
                    _each(c.pread, fd, BLOCK, max(0, a.size - BLOCK))
                    _each(c.close, fd)
            for key in _each(c.listxattr, path) or []:
                _each(c.getxattr, path, key)
    return files


def _change(c: PathClient, files: list[str]) -> None:
    """Allocation and freeing paths over corrupt bitmaps and tables."""
    _each(c.write_bytes, "/fuzz-new", b"n" * 10_000)
    _each(c.mkdir, "/fuzz-dir")
    _each(c.rename, "/fuzz-new", "/fuzz-dir/renamed")
    for path in files[:3]:
        _each(c.truncate, path, 0)
    for path in files[3:6]:
        fd = _each(c.open, path, os.O_WRONLY)
        if fd is not None:
            _each(c.pwrite, fd, b"w" * 6000, 4000)
            _each(c.close, fd)
    for path in files[6:9]:
        _each(c.unlink, path)


@dataclass
class Outcome:
    """What one image did: ``failure`` set if it is a bug (with its kind)."""

    # ok | refused (mount said corrupt) | repaired | left (repair: exit 4) | <failure kind>
    kind: str = "ok"
    failure: str | None = None


def try_image(target: Target, image: np.ndarray, time_bound: float = TIME_BOUND,
              memory_bound: int = MEMORY_BOUND, repair: bool = False) -> Outcome:
    """fsck, then mount, walk, change, unmount — within the bounds (``_Bounds``; on the
    main thread ``run`` sets the memory bound for the whole process). A check that
    overran is a hang whatever it answered: the bound's exception may have come out
    as another error, or as an ``OSError`` the check took for a refusal."""
    bound = _Bounds(time_bound, memory_bound)
    stage = ["fsck"]  # where the check is, for the report
    bound.start()
    try:
        outcome: Outcome | None = _check(target, image, stage, repair)
    except _Hang:
        outcome = None
    except Exception as e:  # noqa: BLE001 - sorted out by _failure
        outcome = _failure(stage[0], e)
    finally:
        bound.stop()
    if outcome is None or bound.fired:
        return Outcome("hang", f"{stage[0]}: still running after {time_bound:g} s")
    return outcome


def _check(target: Target, image: np.ndarray, stage: list[str], repair: bool = False) -> Outcome:
    check = WatchedDevice.from_bytes(image)
    problems = target.fsck(check)
    if check.outside:
        return Outcome("outside", f"fsck: {check.outside[0]}")
    repaired = None
    if repair and problems and target.can_repair:
        stage[0] = "repair"
        fixed = WatchedDevice.from_bytes(image)
        try:
            code = target.repair(fixed).exit_code
        except FsError as e:   # no such file system: as fsck said, or a repair that gave up
            if problems[0].startswith("fsck refused"):
                return Outcome("left")
            return Outcome("repair", f"repair refused an image fsck could read: {e.strerror}")
        if fixed.outside:
            return Outcome("outside", f"repair: {fixed.outside[0]}")
        if code not in (1, 4):
            return Outcome("repair", f"repair: exit {code} for an image fsck rejects "
                           f"({problems[0]})")
        if code == 4:
            return Outcome("left")
        stage[0] = "re-check"
        image = fixed.blocks.reshape(-1).copy()
        if again := target.fsck(image):
            return Outcome("repair", f"repair said all fixed; fsck still finds: {again[0]}")
        problems, repaired = [], True
    stage[0] = "mount"
    dev = WatchedDevice.from_bytes(image)
    try:
        rt = target.open(dev)
    except BlockRangeError:
        raise
    except OSError as e:
        if repaired:
            return Outcome("repair", f"the repaired image does not mount: {e.strerror}")
        if not problems and e.errno in (errno.EUCLEAN, errno.EIO, errno.EINVAL):
            return Outcome("fsck-missed", f"fsck found the image clean; mount said: "
                           f"{e.strerror}")
        return Outcome("refused")
    stage[0] = "walk"
    try:
        c = rt.client(Request())
        files = _walk(c, _Counter())
        stage[0] = "change"
        _change(c, files)
    finally:
        stage[0] = "unmount"
        c.close_all()
        _each(rt.close)
    if dev.outside:
        return Outcome("outside", f"{stage[0]}: {dev.outside[0]}")
    return Outcome("repaired" if repaired else "ok")


def _failure(stage: str, error: Exception) -> Outcome:
    """What an exception out of an image's check means."""
    if isinstance(error, MemoryError):
        return Outcome("memory", f"{stage}: memory past the bound")
    if isinstance(error, BlockRangeError):
        return Outcome("outside", f"{stage}: {error.strerror}")
    where = traceback.extract_tb(error.__traceback__)[-1]
    return Outcome("exception", f"{stage}: {type(error).__name__}: {error} "
                   f"({os.path.basename(where.filename)}:{where.lineno})")


# -- the campaign ---------------------------------------------------------------------------


@dataclass
class ImageFinding:
    seed_image: str
    mutations: list[Mutation]
    outcome: Outcome
    image: np.ndarray = field(repr=False)


@dataclass
class ImageResult:
    images: int = 0
    seconds: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)  # outcome -> images
    findings: list[ImageFinding] = field(default_factory=list)
    # coverage: mutations per kind of block (the file system's words, ``block_kinds``)
    mutated: dict[str, int] = field(default_factory=dict)
    mutable: set[str] = field(default_factory=set)  # the kinds the seed images hold
    drawn: Any = field(default_factory=hashlib.sha256, repr=False)  # see ``digest``

    @property
    def digest(self) -> str:
        """A fingerprint of the images tried: equal for runs that tried the same."""
        return self.drawn.hexdigest()[:16]

    @property
    def never_mutated(self) -> list[str]:
        return sorted(self.mutable - set(self.mutated))

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


@contextlib.contextmanager
def _memory_bound() -> Iterator[None]:
    """RLIMIT_AS for the whole process, on the main thread only (see ``_Bounds``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_statm()[0] + MEMORY_BOUND, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def shrink_image(target: Target, base: np.ndarray, mutations: list[Mutation], kind: str,
                 repair: bool = False) -> tuple[list[Mutation], np.ndarray, Outcome]:
    """Drop mutations one at a time while the image still fails the same way."""
    def build(ms: list[Mutation]) -> np.ndarray:
        img = base.copy()
        for m in ms:
            m.apply(img)
        return img

    for m in list(mutations):
        fewer = [x for x in mutations if x is not m]
        if fewer and try_image(target, build(fewer), repair=repair).kind == kind:
            mutations = fewer
    image = build(mutations)
    return mutations, image, try_image(target, image, repair=repair)


@dataclass(frozen=True)
class Seeds:
    """The seed images and what a run mutates in them: a block list and each block's
    kind, per image. Read-only: every image tried is a copy."""

    images: dict[str, np.ndarray]
    blocks: dict[str, list[int]]
    kinds: dict[str, dict[int, str]]

    @classmethod
    def make(cls, target: Target) -> Seeds:
        images = seed_images(target)
        blocks = {name: metadata_blocks(target, img) for name, img in images.items()}
        kinds = {name: target.cls.block_kinds(RamDevice.from_bytes(img), blocks[name])
                 for name, img in images.items()}
        return cls(images, blocks, kinds)


def run(target: Target, *, budget: float = 60.0, seed: int = 0, max_findings: int = 5,
        time_bound: float = TIME_BOUND, images: int | None = None, shrink: bool = True,
        seeds: Seeds | None = None, repair: bool = False,
        progress: Callable[[ImageResult], None] | None = None) -> ImageResult:
    """Mutate and try images for ``budget`` seconds, or exactly ``images`` of them
    (no clock involved: a campaign's shard, the same on any machine); stop after
    ``max_findings``. ``shrink=False`` keeps a failing image's mutations as drawn.
    ``seeds`` saves making them again (a campaign's worker runs many shards)."""
    def more() -> bool:
        if len(result.findings) >= max_findings:
            return False
        return result.images < images if images is not None else time.monotonic() - started < budget

    rng = random.Random(seed)
    result = ImageResult()
    started = time.monotonic()
    prepared = seeds or Seeds.make(target)
    bases, blocks, kinds = prepared.images, prepared.blocks, prepared.kinds
    result.mutable = {k for ks in kinds.values() for k in ks.values()}
    logging.disable(logging.CRITICAL)   # corrupt images make file systems log a lot
    with contextlib.ExitStack() as stack:
        stack.callback(logging.disable, logging.NOTSET)
        stack.enter_context(_memory_bound())
        while more():
            name = rng.choice(sorted(bases))
            base = bases[name]
            image = base.copy()
            mutations = [mutate(rng, image, blocks[name]) for _ in range(rng.choice([1, 1, 2, 3]))]
            result.drawn.update(repr((name, mutations)).encode())
            for m in mutations:
                m.apply(image)
                kind = kinds[name].get(m.block, "unnamed")
                result.mutated[kind] = result.mutated.get(kind, 0) + 1
            outcome = try_image(target, image, time_bound, repair=repair)
            result.images += 1
            result.kinds[outcome.kind] = result.kinds.get(outcome.kind, 0) + 1
            if outcome.failure is not None and shrink:
                mutations, image, outcome = shrink_image(target, base, mutations, outcome.kind,
                                                         repair)
            if outcome.failure is not None:
                result.findings.append(ImageFinding(name, mutations, outcome, image))
            result.seconds = time.monotonic() - started
            if progress is not None:
                progress(result)
    result.seconds = time.monotonic() - started
    return result
