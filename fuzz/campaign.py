"""Fuzz campaigns on a Dask cluster: ``bento fuzz FUZZER --workers N`` (a local
cluster of N processes) or ``--scheduler tcp://HOST:PORT`` (a running one).

We do not schedule anything ourselves; Dask distributed does, and this module only
cuts a campaign into shards and reads what comes back.

- **Shards.** Shard K of a campaign with seed S is a fixed amount of work drawn from
  ``shard_seed(S, K)`` with no clock involved — ``SHARD_SIZE`` operation sequences,
  crash workloads or images — so it explores the same things on any worker, at any
  cluster size or speed, and ``bento fuzz FUZZER --seed S --shard K`` does it again
  on one machine.
- **Workers** run shards without shrinking and without an example database: they
  only say what failed, and how much they did. A worker that dies takes its shard
  with it; Dask runs the shard again on another (``allowed-failures``), and a shard
  that keeps killing workers is counted as lost — the campaign goes on. A shard
  that does not come back in time (``stall_after``) is stopped as stuck if a worker
  still runs it, and submitted again once if none does.
- **The client** (this process) keeps one shard per worker in flight until the
  budget is spent (crash, image) or every shard has run (ops: ``--examples``),
  stops at the first finding unless ``keep_going``, and then reproduces each
  failing shard once, here, with shrinking: shrunk once, not by every worker.
- **The example database** (ops; a directory, or ``redis://``) is the client's: a
  campaign first replays what earlier runs saved in it, and a shrunk finding is
  saved there. Workers never read it, so a shard stays the same whatever the
  database holds. A crash finding is kept as its regression test instead, and the
  image fuzzer draws with ``random``, not Hypothesis.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import io
import logging
import math
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from hypothesis.errors import HypothesisDeprecationWarning

from . import crash, image, ops, shard_process
from .target import FuzzError, Target

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt(3)
FUZZERS = ("ops", "crash", "image")
SHARD_SIZE = {"ops": 25, "crash": 20, "image": 25}  # a few seconds each
# an image shard's process may take this many time bounds (image.run stops at its
# fifth finding, each a bound at most), plus this many seconds, before it is killed
IMAGE_DEADLINE_BOUNDS, IMAGE_DEADLINE_SLACK = 5, 60.0
UNITS = {"ops": "examples", "crash": "states", "image": "images"}      # what rates count
DRAWS = {"ops": "sequences", "crash": "workloads", "image": "images"}  # what a shard draws


@dataclass(frozen=True)
class Job:
    """What every shard of one campaign shares: the fuzzer, the file system, the seed
    and the fuzzer's own options (ops: ``examples``, ``steps``; crash: ``max_ops``;
    image: ``time_bound``, ``repair``)."""

    fuzzer: str
    spec: str
    seed: int
    examples: int = ops.EXAMPLES
    steps: int = 40
    max_ops: int = 6
    time_bound: float = image.TIME_BOUND
    repair: bool = False  # image: repair what fsck rejects, and hold the repair to its word

    @property
    def shards(self) -> int | None:
        """How many shards the campaign has: ops has ``examples``; the others run
        until their budget is spent."""
        return math.ceil(self.examples / SHARD_SIZE["ops"]) if self.fuzzer == "ops" else None

    def size(self, shard: int) -> int:
        if self.fuzzer == "ops":
            return min(SHARD_SIZE["ops"], self.examples - shard * SHARD_SIZE["ops"])
        return SHARD_SIZE[self.fuzzer]

    def command(self, shard: int) -> str:
        """The one command that reproduces ``shard`` on one machine."""
        extra = {"ops": f" --examples {self.examples} --steps {self.steps}",
                 "crash": f" --max-ops {self.max_ops}",
                 "image": f" --time-bound {self.time_bound:g}"
                          + (" --repair" if self.repair else "")}[self.fuzzer]
        return f"bento fuzz {self.fuzzer} --fs {self.spec} --seed {self.seed} --shard {shard}{extra}"


def shard_seed(seed: int, shard: int) -> int:
    """The seed shard ``shard`` draws from: unrelated for neighbouring shards."""
    digest = hashlib.sha256(f"bento-campaign/{seed}/{shard}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def run_shard(job: Job, shard: int, *, shrink: bool = True,
              database: ExampleDatabase | None = None, replay_only: bool = False) -> Any:
    """Shard ``shard`` of ``job``, in this process: the fuzzer's own result
    (``OpsResult``, ``CrashResult`` or ``ImageResult``)."""
    target = Target.load(job.spec)
    seed, size = shard_seed(job.seed, shard), job.size(shard)
    if job.fuzzer == "ops":
        return ops.run(target, examples=size, seed=seed, steps=job.steps, shrink=shrink,
                       database=database, replay_only=replay_only)
    if job.fuzzer == "crash":
        return crash.run_shard(target, seed=seed, workloads=size, max_ops=job.max_ops,
                               shrink=shrink)
    return image.run(target, seed=seed, images=size, time_bound=job.time_bound, shrink=shrink,
                     seeds=_seed_images(job.spec), repair=job.repair)


@functools.lru_cache(maxsize=4)
def _seed_images(spec: str) -> image.Seeds:
    """A worker's seed images, made once per file system rather than once per shard
    (0.16 s of a 1.5 s shard, measured on xv6)."""
    return image.Seeds.make(Target.load(spec))


def replay(job: Job, database: ExampleDatabase) -> Any:
    """Replay the database's saved examples for ``job``'s fuzzer."""
    if job.fuzzer != "ops":
        raise FuzzError(f"the {job.fuzzer} fuzzer keeps no example database")
    return run_shard(job, 0, database=database, replay_only=True)


@dataclass
class ShardResult:
    """What a worker sends back: how much it did, and the first line of what failed."""

    shard: int
    worker: str
    draws: int          # sequences, workloads or images
    count: int          # what the rate counts: examples, crash states, images
    seconds: float
    digest: str         # fingerprint of what was drawn: equal for equal shards
    problem: str | None = None
    outcomes: dict[str, int] = field(default_factory=dict)  # image: ok, refused, repaired ...


def failure_of(fuzzer: str, result: Any) -> str | None:
    """A fuzzer result's failure in a few lines, or None."""
    if fuzzer == "ops":
        return result.problem
    if fuzzer == "crash":
        if result.error:
            return "before any crash: " + result.error.splitlines()[-1]
        return result.finding.problem.splitlines()[0] if result.finding else None
    findings = result.findings
    return f"{findings[0].outcome.kind}: {findings[0].outcome.failure}" if findings else None


def explore_shard(job: Job, shard: int) -> ShardResult:
    """A worker's task: shard ``shard`` without shrinking, summed up. Off the main
    thread an image shard goes to the worker's child process (fuzz/shard_process.py)."""
    started = time.monotonic()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if job.fuzzer == "image" and threading.current_thread() is not threading.main_thread():
        deadline = image_deadline(job)
        answer = shard_process.run(job, shard, deadline)
        if answer is None:
            return ShardResult(shard, worker, 0, 0, time.monotonic() - started, "",
                               f"stuck: no answer from the shard's process in {deadline:g} s")
        return replace(answer, worker=worker)
    _malloc_like_a_plain_process()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # Hypothesis reports on stdout, and warns when the worker's own threads use the
        # random module while it draws (which changes nothing it draws)
        warnings.simplefilter("ignore", HypothesisDeprecationWarning)
        result = run_shard(job, shard, shrink=False)
    count = getattr(result, UNITS[job.fuzzer])  # for ops and image, also what was drawn
    drawn = result.workloads if job.fuzzer == "crash" else count
    return ShardResult(shard, worker, drawn, count, time.monotonic() - started, result.digest,
                       failure_of(job.fuzzer, result), dict(getattr(result, "kinds", {})))


def image_deadline(job: Job) -> float:
    """How long a worker waits for its child's image shard before killing it."""
    return IMAGE_DEADLINE_BOUNDS * job.time_bound + IMAGE_DEADLINE_SLACK


def _malloc_like_a_plain_process() -> None:
    """Undo the Dask nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` in this worker process.

    Setting it also turns off glibc's sliding mmap threshold, so every large array
    the fuzzers make and drop (a 16 MiB image per sequence, crash states) is a fresh
    mmap, zeroed page by page: measured here, a worker ran ops shards 1.8x slower than
    a plain process (5.6 s against 10 s a shard). The values are glibc's own upper
    defaults for the sliding thresholds."""
    libc = ctypes.CDLL(None)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt(M_TRIM_THRESHOLD, 64 << 20)
        mallopt(M_MMAP_THRESHOLD, 32 << 20)


def open_database(where: str) -> ExampleDatabase:
    """A directory (made if missing), or a Redis server by URL (``redis://HOST:PORT/N``)."""
    if where.startswith(("redis://", "rediss://", "unix://")):
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase

        server = redis.Redis.from_url(where)
        try:
            server.ping()
        except redis.RedisError as e:
            raise FuzzError(f"--db {where}: {e}") from None
        return RedisExampleDatabase(server)
    return DirectoryBasedExampleDatabase(where)


# -- the client ------------------------------------------------------------------------


@dataclass
class WorkerTotals:
    shards: int = 0
    draws: int = 0
    count: int = 0
    seconds: float = 0.0  # busy

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


@dataclass
class Campaign:
    """A campaign as it runs and as it ended."""

    job: Job
    workers: int = 0
    done: list[ShardResult] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)       # shards that kept killing workers
    resubmitted: list[int] = field(default_factory=list)  # shards the cluster lost once
    findings: list[ShardResult] = field(default_factory=list)
    submitted: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return sum(r.count for r in self.done)

    @property
    def rate(self) -> float:
        """Campaign-wide: what the rate counts, per second of wall time."""
        return self.count / self.seconds if self.seconds else 0.0

    def per_worker(self) -> dict[str, WorkerTotals]:
        totals: dict[str, WorkerTotals] = {}
        for r in self.done:
            t = totals.setdefault(r.worker, WorkerTotals())
            t.shards, t.draws, t.count, t.seconds = (t.shards + 1, t.draws + r.draws,
                                                     t.count + r.count, t.seconds + r.seconds)
        return totals

    def status(self) -> str:
        return (f"{self.job.fuzzer} campaign: {self.workers} workers, {len(self.done)}/"
                f"{self.submitted} shards, {self.count} {UNITS[self.job.fuzzer]} "
                f"({self.rate:.1f}/s), {len(self.findings)} failing, {self.seconds:.0f} s")


@contextlib.contextmanager
def cluster(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client: on the running cluster at ``scheduler``, or on a local cluster
    of ``workers`` single-threaded processes that ends with the block."""
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            try:
                client = stack.enter_context(Client(scheduler, timeout=10))
                client.wait_for_workers(1, timeout=30)
            except (OSError, TimeoutError) as e:
                raise FuzzError(f"--scheduler {scheduler}: {e}") from None
        else:
            local = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.ERROR))
            client = stack.enter_context(Client(local))

            def on_error(kind: type[BaseException] | None, *_: object) -> bool:
                if kind is not None:
                    _kill_workers(local)
                return False  # the error goes on

            stack.push(on_error)
        yield client


def _kill_workers(local: Any) -> None:
    """A campaign that ends in an error may leave a shard stuck on a worker's thread,
    and a local cluster's close waits for its tasks: end the workers first."""
    for nanny in list(local.workers.values()):
        process = getattr(getattr(nanny, "process", None), "process", None)
        if process is not None and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)


def run(job: Job, client: Any, *, budget: float | None = None, keep_going: bool = False,
        progress: Callable[[Campaign], None] | None = None) -> Campaign:
    """Run ``job``'s shards on ``client``'s cluster, one per worker in flight, until
    ``budget`` seconds have passed (crash, image) or every shard has run (ops), or
    a shard fails (unless ``keep_going``).

    A shard that has not come back after ``stall_after`` seconds is looked for on the
    workers: still running there, it is stuck in the file system or a fuzzer, and the
    campaign stops saying where (no bound of ours could stop it); running nowhere,
    the cluster lost it, and it is submitted again, once."""
    from distributed import KilledWorker, wait

    c = Campaign(job)
    total = job.shards

    def more() -> bool:
        if c.findings and not keep_going:
            return False
        if total is not None:
            return c.submitted < total
        return budget is None or time.monotonic() - c.started < budget

    inflight: dict[Any, tuple[int, float]] = {}  # future -> (shard, submitted at)

    def submit(shard: int) -> None:
        inflight[client.submit(explore_shard, job, shard, pure=False)] = (shard, time.monotonic())

    def next_shard() -> None:
        submit(c.submitted)
        c.submitted += 1

    c.workers = max(1, len(client.scheduler_info()["workers"]))
    for _ in range(c.workers):
        if more():
            next_shard()
    while inflight:
        try:
            finished = wait(list(inflight), timeout=STALL_POLL, return_when="FIRST_COMPLETED").done
        except TimeoutError:  # nothing came back in that second
            finished = set()
        for future in finished:
            shard, _ = inflight.pop(future)
            try:
                r: ShardResult = future.result()
            except KilledWorker:
                c.lost.append(shard)
            except Exception as e:  # noqa: BLE001 - the worker cannot run it: say so, stop
                client.cancel(list(inflight))
                raise FuzzError(f"shard {shard} failed on a worker: {type(e).__name__}: {e}") from None
            else:
                c.done.append(r)
                if r.problem is not None:
                    c.findings.append(r)
            c.workers = max(1, len(client.scheduler_info()["workers"]))
            c.seconds = time.monotonic() - c.started
            if progress is not None:
                progress(c)
            if more():
                next_shard()
            elif c.findings and not keep_going:
                client.cancel(list(inflight))
                inflight.clear()
        _look_after_stalled(job, client, c, inflight, submit)
    c.seconds = time.monotonic() - c.started
    c.done.sort(key=lambda r: r.shard)
    return c


STALL_POLL = 1.0     # seconds between looks at the shards in flight
STALL_FLOOR = 120.0  # seconds a shard may always take before it is looked for


def stall_after(job: Job, c: Campaign) -> float:
    """How long a shard may take: ten times the slowest so far, never under the floor;
    for an image shard, past the worker's own deadline for its child (which then
    answers with the shard reported stuck)."""
    slowest = max((r.seconds for r in c.done), default=0.0)
    child = image_deadline(job) + STALL_FLOOR / 4 if job.fuzzer == "image" else 0.0
    return max(STALL_FLOOR, 10 * slowest, child)


def _look_after_stalled(job: Job, client: Any, c: Campaign, inflight: dict[Any, tuple[int, float]],
                        submit: Callable[[int], None]) -> None:
    limit = stall_after(job, c)
    now = time.monotonic()
    for future, (shard, since) in list(inflight.items()):
        if now - since < limit or future.done():
            continue
        try:
            running = {worker: frames[-1].strip().splitlines()[0] if frames else "?"
                       for worker, tasks in client.call_stack([future]).items()
                       for key, frames in tasks.items() if key == future.key}
        except (OSError, TimeoutError) as e:  # a worker too busy or broken to answer
            running = {"a worker": f"a place it cannot say ({type(e).__name__})"}
        if running:
            worker, where = next(iter(running.items()))
            client.cancel(list(inflight))
            raise FuzzError(f"shard {shard} has run {now - since:.0f} s on {worker} and is stuck "
                            f"at {where}; reproduce: {job.command(shard)}")
        del inflight[future]
        client.cancel([future])
        if shard in c.resubmitted:
            c.lost.append(shard)
        else:
            c.resubmitted.append(shard)
            submit(shard)
