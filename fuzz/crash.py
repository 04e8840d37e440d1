"""``bento fuzz crash``: power cuts at every point a workload's writes allow.

In the manner of CrashMonkey and B3: short workloads of core operations over a tiny
namespace (files foo, bar, A/foo, ...; directories A, B), with fsync, fdatasync,
directory fsync and sync as persistence points, and cache pressure (``evict``: what
the background writer and reclaim do, write-back without a flush and eviction) as
an operation of its own, run on the recording device. For
every flush epoch, crash states are built from subsets of the writes still in flight
(all of them when there are few, a sample otherwise), from torn 512-byte sectors,
and from log blocks of the journal's uncommitted tail that land with a bit flipped
(recovery must stop there and apply nothing of that transaction). The write log
itself is checked once per workload: no commit block before its transaction's log
blocks are durable (``write_order.py``).
Each state is recovered by a fresh instance, walked, unmounted and fsck'd, and
checked by the oracle (``crash_oracle.py``) against the durability contract, object
by object: what a returned sync, fsync or fdatasync made durable is there (and, for
a file system that declares ``ordered_metadata``, every metadata operation before
any persistence call), and every operation is all or nothing. File data is checked
sector by sector (an overwrite in ordered mode may land partly, as on ext4).

Workloads (crash_workloads.py) are half drawn from every operation kind, half
swarm-style: each from its own random subset of kinds, so that rare pairs (a rename
over a file, then an fsync of its directory) come up within a minute instead of
drowning in the mix. Half start from a durable starting tree (made before the
recording), and names are drawn mostly from what exists or does not, so that renames,
links and overwrites mostly succeed.

Hypothesis generates the workloads and shrinks a failing one; the crash state is
then shrunk too (fewer writes kept, no tear), and the pair is written out as a
regression test that replays it (``replay``).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import stat
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from bento_user.blockdev import SECTOR_SIZE, RamDevice, RecordingDevice
from bento_user.runtime.direct import DirectRuntime, PathClient

from .constants import fixed_constants
from .crash_oracle import PERSIST, bounds, check, persisted
from .crash_workloads import (BLOCK, SETUP, SETUP_TAG, STARTING_TREE, SYMLINK_TARGET, Op, pattern,
                              workloads)
from .model import ROOT, Model, join
from .target import Target
from .write_order import LogArea, order_problems

NBLOCKS = 1024            # 4 MiB images: cheap to copy for every crash state
EXHAUSTIVE = 8            # in-flight writes up to which every subset is tried
SAMPLES = 24              # random subsets per epoch beyond that
TEARS = 4                 # torn-sector states per epoch
FLIPS = 2                 # states per epoch with a bit flipped in a landed log block
HEADER_BITS = 64 * 8      # half the flips hit a log block's header and counts
MAX_STATES = 400          # per workload

# -- the model ------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """A tree as the checks compare it: path -> (kind, size, link count, symlink
    target) with identities for file data, and each file's bytes by identity."""

    shape: dict[str, tuple[int, int, int, bytes]]
    idents: dict[str, int]
    data: dict[int, bytes]


class CrashModel:
    """The shared POSIX model (model.py) driven as root by a workload's operations,
    and its tree in the form the oracle compares."""

    def __init__(self) -> None:
        self.tree = Model()

    def exists(self, path: str) -> bool:
        return self.tree.lookup(_bytes(path))[3] is not None

    def apply(self, tag: int, op: Op) -> bool:
        """Change the model as ``op`` does; False if the op must fail (no change)."""
        kind, *args = op
        t = self.tree
        if kind in ("sync", "evict"):
            return True
        if kind == "rename":
            return t.rename(ROOT, _bytes(args[0]), _bytes(args[1])) is None
        if kind == "link":
            return t.link(ROOT, _bytes(args[0]), _bytes(args[1])) is None
        if kind == "unlink":
            return t.unlink(ROOT, _bytes(args[0])) is None
        if kind == "rmdir":
            return t.rmdir(ROOT, _bytes(args[0])) is None
        dpath, d, name, n = t.lookup(_bytes(args[0]))
        if kind == "creat":
            return t.open_write(ROOT, dpath, d, name, create=True) is None
        if kind == "mkdir":
            return t.mkdir(ROOT, dpath, d, name, 0o755) is None
        if kind == "symlink":
            return t.symlink(ROOT, dpath, d, name, SYMLINK_TARGET) is None
        if kind == "fsyncdir":                # opened with O_DIRECTORY
            return not args[0] or (n is not None and n.is_dir)
        if kind == "fsync":                   # through a (dangling) symlink: ENOENT
            return n is not None and n.kind != stat.S_IFLNK
        regular = n is not None and n.kind == stat.S_IFREG
        if kind == "write" and regular:
            assert n is not None
            t.write(ROOT, n, args[1], pattern(tag, args[2]))
        elif kind == "truncate" and regular:
            assert n is not None
            t.truncate(n, args[1])
        elif kind not in ("write", "truncate", "hold", "fdatasync"):
            raise ValueError(f"unknown operation {op!r}")
        return regular

    def state(self) -> State:
        links = self.tree.link_counts()
        shape, idents, data = {}, {}, {}
        for dpath, _, name, n in self.tree.entries():
            p = join(dpath, name).decode()[1:]
            size = len(n.data) if n.kind == stat.S_IFREG else len(n.target)
            shape[p] = (n.kind, size, links[n.ident] if not n.is_dir else 0, n.target)
            if n.kind == stat.S_IFREG:
                idents[p] = n.ident
                data[n.ident] = bytes(n.data)
        return State(shape, idents, data)


def _bytes(path: str) -> bytes:
    return b"/" + path.encode()


# -- running a workload on the recording device ----------------------------------------


@dataclass
class Run:
    """A workload run: its write log, the model states and where each op lay in it."""

    workload: list[Op]                        # the system calls made (see execute)
    rec: RecordingDevice
    states: list[State]                       # states[i]: after the first i calls
    spans: list[tuple[tuple[int, int], tuple[int, int]]]  # (writes, flushes) at start/end
    succeeded: list[bool] = field(default_factory=list)
    log: LogArea | None = None                # the journal's area, if there is one

    def is_log_block(self, blockno: int) -> bool:
        return self.log is not None and self.log.holds(blockno)


class OperationFailed(AssertionError):
    """The file system answered an operation differently from the model (no crash)."""


def execute(target: Target, workload: list[Op]) -> Run:
    """Run the workload, one model state per system call: a write to a missing file
    is two calls (open with O_CREAT, then pwrite), which may commit apart. A leading
    ``SETUP`` starts from the starting tree, made and unmounted before recording."""
    model = CrashModel()
    if workload[:1] == [SETUP]:
        device = _starting_device(target, model)
        workload = workload[1:]
    else:
        device = target.fresh_device(NBLOCKS)
    rec = RecordingDevice(device)
    rt = target.open(rec)
    c = rt.client()
    run = Run([], rec, [model.state()], [])
    if (j := rt.ks.journal) is not None:
        run.log = LogArea(j.area_start, j.area_len, j.first)
    held: list[int] = []
    for tag, op in enumerate(workload):
        steps = [op]
        if op[0] == "write" and not model.exists(op[1]):
            steps = [("creat", op[1]), op]
        for step in steps:
            start = (len(rec.writes), rec.epochs)
            try:
                _perform(rt, c, tag, step, held)
                ok, error = True, None
            except OSError as e:
                ok, error = False, e
            expected = model.apply(tag, step)
            if ok != expected:
                rt.crash()
                raise OperationFailed(f"op {tag} {_show(step)}: " + (
                    f"failed with {error}, the model says it succeeds" if error
                    else "succeeded, the model says it fails"))
            if not ok and step is not op:
                break
            run.workload.append(step)
            run.succeeded.append(ok)
            run.spans.append((start, (len(rec.writes), rec.epochs)))
            run.states.append(model.state())
    rt.crash()   # power cut: nothing more reaches the device
    return run


def _starting_device(target: Target, model: CrashModel) -> RamDevice:
    """A device holding the starting tree, durable, and ``model`` brought to the same
    tree. Made anew each time (8 ms): a copy kept from a healthy run would hide what an
    injected bug does to it, and one made under a bug would outlive the bug."""
    for tag, op in enumerate(STARTING_TREE, SETUP_TAG):
        if not model.apply(tag, op):
            raise AssertionError(f"the starting tree's {_show(op)} fails in the model")
    dev = target.fresh_device(NBLOCKS)
    rt = target.open(dev)
    c = rt.client()
    for tag, op in enumerate(STARTING_TREE, SETUP_TAG):
        _perform(rt, c, tag, op, [])
    rt.close()                          # a clean unmount: closes the device too
    return RamDevice.from_bytes(dev.image())


def _perform(rt: DirectRuntime, c: PathClient, tag: int, op: Op, held: list[int]) -> None:
    kind, *args = op
    if kind in ("creat", "write"):
        fd = c.open(args[0], os.O_WRONLY | (os.O_CREAT if kind == "creat" else 0), 0o644)
        try:
            if kind == "write":
                c.pwrite(fd, pattern(tag, args[2]), args[1])
        finally:
            c.close(fd)
    elif kind == "hold":
        held.append(c.open(args[0], os.O_RDWR))
    elif kind == "mkdir":
        c.mkdir(args[0], 0o755)
    elif kind == "symlink":
        c.symlink(SYMLINK_TARGET, args[0])
    elif kind == "truncate":
        c.truncate(args[0], args[1])
    elif kind == "link":
        c.link(*args)
    elif kind == "unlink":
        c.unlink(args[0])
    elif kind == "rmdir":
        c.rmdir(args[0])
    elif kind == "rename":
        c.rename(*args)
    elif kind in ("fsync", "fdatasync", "fsyncdir"):
        fd = c.open(args[0] or "/", os.O_RDONLY | (os.O_DIRECTORY if kind == "fsyncdir" else 0))
        try:
            c.fsync(fd, datasync=kind == "fdatasync")
        finally:
            c.close(fd)
    elif kind == "sync":
        rt.ks.sync()
    elif kind == "evict":  # cache pressure: write-back without a flush, then reclaim
        rt.ks.cache.writeback()
        rt.ks.cache.shrink()


def _show(op: Op) -> str:
    return f"{op[0]}({', '.join(repr(a) for a in op[1:])})"


# -- crash states ------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashState:
    """A power cut in ``epoch`` with in-flight writes ``keep`` landed whole and
    ``torn`` (index -> sectors) landed partly."""

    epoch: int
    keep: tuple[int, ...] = ()
    torn: tuple[tuple[int, tuple[int, ...]], ...] = ()
    after: int | None = None     # the cut came right after call ``after`` returned (B3)
    flipped: tuple[tuple[int, int], ...] = ()  # (kept index, bit): landed with that bit wrong

    def describe(self, run: Run) -> str:
        flying = run.rec.in_flight(self.epoch)
        parts = [f"epoch {self.epoch} ({run.rec.durable_count(self.epoch)} writes durable, "
                 f"{len(flying)} in flight)"]
        if self.after is not None:
            parts.insert(0, f"right after call {self.after} "
                            f"({_show(run.workload[self.after])}) returned")
        if self.keep:
            parts.append("kept " + ", ".join(f"#{i} (block {flying[i].blockno})" for i in self.keep))
        for i, sectors in self.torn:
            parts.append(f"torn #{i} (block {flying[i].blockno}, sectors {list(sectors)})")
        for i, bit in self.flipped:
            parts.append(f"#{i} (log block {flying[i].blockno}) landed with bit {bit} flipped")
        return "; ".join(parts)


def crash_states(run: Run, rng: random.Random) -> Iterator[CrashState]:
    """Cuts right after each persistence call returned (B3: where bugs show), then
    anywhere in every epoch: all subsets of few in-flight writes, else prefixes,
    single drops and a random sample; plus a few torn sectors. Duplicates (the same
    disk contents and bounds) are skipped."""
    seen: set[tuple[Any, ...]] = set()
    rec = run.rec
    cuts: list[tuple[int, int | None]] = [          # (epoch, after call)
        (end[1], k) for k, (op, (_, end), ok) in enumerate(zip(run.workload, run.spans, run.succeeded))
        if op[0] in PERSIST and ok]
    cuts += [(epoch, None) for epoch in range(rec.epochs + 1)]
    for epoch, after in cuts:
        n = len(_landable(run, epoch, after))
        if n <= EXHAUSTIVE:
            keeps = [c for k in range(n + 1) for c in itertools.combinations(range(n), k)]
        else:
            everything = tuple(range(n))
            keeps = [everything[:k] for k in range(n + 1)]
            keeps += [everything[:i] + everything[i + 1:] for i in range(n)]
            keeps += [tuple(sorted(rng.sample(everything, rng.randrange(n + 1))))
                      for _ in range(SAMPLES)]
        tears = _flips(run, epoch, after, rng)
        for _ in range(TEARS if n else 0):
            keep = rng.choice(keeps)
            rest = [i for i in range(n) if i not in keep]
            if rest:
                victim = rng.choice(rest)
                sectors = tuple(sorted(rng.sample(range(BLOCK // SECTOR_SIZE),
                                                  rng.randrange(1, BLOCK // SECTOR_SIZE))))
                tears.append(CrashState(epoch, keep, ((victim, sectors),), after))
        for state in [CrashState(epoch, k, (), after) for k in keeps] + tears:
            key = _image_key(run, state)
            if key not in seen:
                seen.add(key)
                yield state


def _flips(run: Run, epoch: int, after: int | None, rng: random.Random) -> list[CrashState]:
    """Every landable write lands, but one log block (the last write to it) lands with
    a bit flipped: what a torn or decaying sector of the uncommitted tail looks like."""
    landable = _landable(run, epoch, after)
    last = {w.blockno: i for i, w in enumerate(landable)}
    victims = [i for b, i in last.items() if run.is_log_block(b)]
    everything = tuple(range(len(landable)))
    return [CrashState(epoch, everything, (), after, ((i, rng.randrange(bits)),))
            for i in rng.sample(victims, min(FLIPS, len(victims)))
            for bits in [rng.choice([HEADER_BITS, BLOCK * 8])]]


def _landable(run: Run, epoch: int, after: int | None) -> list[Any]:
    """The in-flight writes of ``epoch`` a cut may land: all of them, or for a cut
    right after call ``after``, those issued before it returned (a prefix)."""
    flying = run.rec.in_flight(epoch)
    if after is None:
        return flying
    issued = run.spans[after][1][0]
    return [w for w in flying if w.seq < issued]


def _image_key(run: Run, s: CrashState) -> tuple[Any, ...]:
    """Equal keys, equal images: the durable prefix and the last landed version of
    each block."""
    flying = run.rec.in_flight(s.epoch)
    last: dict[int, Any] = {}
    torn = dict(s.torn)
    for i in sorted(set(s.keep) | set(torn)):
        w = flying[i]
        last[w.blockno] = (w.seq, torn.get(i))
    return (run.rec.durable_count(s.epoch), tuple(sorted(last.items())), s.flipped,
            persisted(run, s), bounds(run, s))


# -- exploring, shrinking, reporting -------------------------------------------------------


@dataclass
class CrashFinding:
    workload: list[Op]
    state: CrashState
    problem: str
    described: str


class CrashBug(AssertionError):
    def __init__(self, finding: CrashFinding) -> None:
        super().__init__(finding.problem)
        self.finding = finding


@dataclass
class CrashResult:
    workloads: int = 0
    states: int = 0
    seconds: float = 0.0
    finding: CrashFinding | None = None
    error: str | None = None            # an operation that went wrong before any crash
    digest: str = ""                    # the workloads drawn (run_shard)

    @property
    def rate(self) -> float:
        return self.states / self.seconds if self.seconds else 0.0


def explore(target: Target, workload: list[Op], result: CrashResult | None = None) -> CrashFinding | None:
    """Run ``workload`` and check its crash states; the first failing one."""
    run = execute(target, workload)
    if run.log is not None and (order := order_problems(run.rec, run.log)):
        return CrashFinding(workload, CrashState(0), order[0], "the write log, before any crash")
    rng = random.Random(hashlib.sha256(repr(workload).encode()).digest())
    for n, s in enumerate(crash_states(run, rng)):
        if n >= MAX_STATES:
            break
        if result is not None:
            result.states += 1
        problem = check(target, run, s)
        if problem is not None:
            return CrashFinding(workload, s, problem, s.describe(run))
    return None


def shrink_state(target: Target, finding: CrashFinding) -> CrashFinding:
    """Fewer landed writes, no tear, while the state still fails."""
    run = execute(target, finding.workload)
    s = finding.state
    if s.flipped or s.torn:
        plain = CrashState(s.epoch, s.keep, (), s.after)
        if (p := check(target, run, plain)) is not None:
            s, finding = plain, CrashFinding(finding.workload, plain, p, plain.describe(run))
    for i in list(s.keep):
        if any(i == f for f, _ in s.flipped):
            continue            # the flipped write stays landed
        smaller = CrashState(s.epoch, tuple(k for k in s.keep if k != i), s.torn, s.after,
                             s.flipped)
        if (p := check(target, run, smaller)) is not None:
            s, finding = smaller, CrashFinding(finding.workload, smaller, p, smaller.describe(run))
    return finding


def run(target: Target, *, budget: float = 60.0, seed: int = 0, max_ops: int = 6,
        shrink: bool = True, progress: Callable[[CrashResult], None] | None = None
        ) -> CrashResult:
    """Explore workloads for ``budget`` seconds (the last batch may run over a little;
    shrinking a failure is not counted; ``shrink=False`` reports it as found)."""
    result = CrashResult()
    started = time.monotonic()
    failing = False                     # once a failure is found, shrinking has no budget

    def search(workload: list[Op]) -> None:
        nonlocal failing
        if time.monotonic() - started > budget and not failing:
            return                      # the budget is spent: let the batch run out
        try:
            _search(target, workload, result, started, progress)
        except CrashBug:
            failing = True
            raise

    batch = 0
    while time.monotonic() - started < budget and not result.finding and not result.error:
        per_workload = result.seconds / result.workloads if result.workloads else 1.0
        left = budget - (time.monotonic() - started)
        examples = max(1, min(50, int(left / max(per_workload, 0.05))))
        test = _hypothesis_test(target, search, max_ops, examples,
                                [Phase.generate] + [Phase.shrink] * shrink)
        hypothesis_seed(seed * 1_000_003 + batch)(test)
        batch += 1
        _run_test(target, test, result, shrink=shrink)
    result.seconds = time.monotonic() - started
    return result


def run_shard(target: Target, *, seed: int, workloads: int, max_ops: int = 6,
              shrink: bool = True,
              progress: Callable[[CrashResult], None] | None = None) -> CrashResult:
    """Exactly ``workloads`` workloads drawn from ``seed``, with no clock involved: the
    same ones on any machine, so a campaign's shard found on a worker is found again
    here by its seed (campaign.py). ``shrink=False`` reports the first failure as
    found (the workers'). ``result.digest`` fingerprints the workloads drawn. (No
    example database: a crash finding is kept as its regression test.)"""
    result = CrashResult()
    started = time.monotonic()
    drawn = hashlib.sha256()

    def search(workload: list[Op]) -> None:
        drawn.update(repr(workload).encode())
        _search(target, workload, result, started, progress)

    test = _hypothesis_test(target, search, max_ops, workloads,
                            [Phase.generate] + [Phase.shrink] * shrink)
    hypothesis_seed(seed)(test)
    _run_test(target, test, result, shrink)
    result.seconds = time.monotonic() - started
    result.digest = drawn.hexdigest()[:16]
    return result


def _search(target: Target, workload: list[Op], result: CrashResult, started: float,
            progress: Callable[[CrashResult], None] | None) -> None:
    """One workload of a Hypothesis test: explore it, raise CrashBug if it fails."""
    result.workloads += 1
    finding = explore(target, workload, result)
    result.seconds = time.monotonic() - started
    if progress is not None:
        progress(result)
    if finding is not None:
        raise CrashBug(finding)


def _hypothesis_test(target: Target, search: Callable[[list[Op]], None], max_ops: int,
                     examples: int, phases: list[Phase]) -> Callable[[], None]:
    unsupported = frozenset(op for op in ("link", "symlink") if not target.supports(op))
    return settings(max_examples=examples, deadline=None, database=None,
                    derandomize=False, print_blob=False, report_multiple_bugs=False,
                    suppress_health_check=list(HealthCheck), phases=phases)(
                        given(workload=workloads(max_ops, unsupported))(search))


def _run_test(target: Target, test: Callable[[], None], result: CrashResult, shrink: bool) -> None:
    """Run a Hypothesis test of workloads; its finding or error lands in ``result``."""
    try:
        with fixed_constants(target.cls):  # the same seed, the same draws (constants.py)
            test()
    except CrashBug as e:
        result.finding = shrink_state(target, e.finding) if shrink else e.finding
    except OperationFailed as e:
        result.error = str(e)
    except Exception as e:  # noqa: BLE001 - a file-system bug while running the workload
        result.error = "".join(traceback.format_exception(e, limit=-4)).strip()


# -- regression tests ----------------------------------------------------------------------


def replay(spec: str, workload: list[Op], epoch: int, keep: tuple[int, ...] = (),
           torn: tuple[tuple[int, tuple[int, ...]], ...] = (), after: int | None = None,
           flipped: tuple[tuple[int, int], ...] = ()) -> str | None:
    """Re-run a saved (workload, crash state) pair: None if it now recovers well.

    A fix usually changes the writes, so the state is re-anchored: a cut "right after
    call k" is taken after call k again, whatever its epoch now; landed writes that
    no longer exist are dropped."""
    target = Target.load(spec)
    run = execute(target, list(workload))
    if run.log is not None and (order := order_problems(run.rec, run.log)):
        return order[0]
    if after is not None and after >= len(run.spans):
        after = None
    if after is not None:
        epoch = run.spans[after][1][1]
    epoch = min(epoch, run.rec.epochs)
    n = len(_landable(run, epoch, after))
    state = CrashState(epoch, tuple(i for i in keep if i < n),
                       tuple((i, t) for i, t in torn if i < n and i not in keep), after,
                       tuple((i, bit) for i, bit in flipped if i < n and i in keep))
    return check(target, run, state)


def regression_test(target: Target, finding: CrashFinding, command: str) -> str:
    """A pytest file that fails while the bug is there."""
    s = finding.state
    workload = ",\n    ".join(repr(op) for op in finding.workload)
    return f'''"""Found by `{command}`: {finding.problem.splitlines()[0][:200]}

Crash state: {finding.described}.
"""

from fuzz.crash import replay

WORKLOAD = [
    {workload},
]


def test_crash_state_recovers() -> None:
    assert replay({target.spec!r}, WORKLOAD, epoch={s.epoch}, keep={s.keep!r}, torn={s.torn!r},
                  after={s.after!r}, flipped={s.flipped!r}) is None
'''


def save_regression(directory: str, target: Target, finding: CrashFinding, command: str) -> str:
    os.makedirs(directory, exist_ok=True)
    text = regression_test(target, finding, command)
    name = hashlib.sha256(text.encode()).hexdigest()[:10]
    path = os.path.join(directory, f"test_crash_{target.name.lower()}_{name}.py")
    with open(path, "w") as f:
        f.write(text)
    return path
