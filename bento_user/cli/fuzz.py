"""``bento fuzz ops|crash|image``: find a file system's bugs (see fuzz/).

Each prints progress and a summary, exits 1 when it found a bug (0 otherwise), and
replays from ``--seed`` (one is chosen and printed when none is given). By default a
campaign runs on a local Dask cluster of one worker process per core, cut into
shards that ``--seed S --shard K`` runs again in one process (fuzz/campaign.py);
``--workers 1`` runs in this process alone, ``--scheduler`` on a running cluster.
"""

from __future__ import annotations

import argparse
import os
import random
from typing import Any

from ._errors import UserError
from ._fs import add_fs_argument
from ._progress import Progress
from ._terminal import print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuzz", help="find bugs: random operations, crashes, corrupt images")
    kinds = p.add_subparsers(dest="fuzzer", required=True, metavar="FUZZER")

    def common(q: argparse.ArgumentParser) -> None:
        add_fs_argument(q)
        q.add_argument("--seed", type=int, help="replay a run (default: a random seed, printed)")
        q.add_argument("--workers", type=_positive_int, metavar="N",
                       help=f"local worker processes (default: the cores, {os.cpu_count()}); "
                            "1 runs in this process")
        q.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on a running Dask cluster (its workers need bento-user)")
        q.add_argument("--shard", type=_shard, metavar="K",
                       help="run shard K of the campaign with --seed here, shrinking what "
                            "fails (a campaign prints this for each finding)")
        q.add_argument("--keep-going", action="store_true",
                       help="a campaign goes on after its first finding")
        q.add_argument("--no-shrink", dest="shrink", action="store_false",
                       help="report a failure as found, without shrinking it to the "
                            "smallest example (sooner; a longer reproducer)")
        q.add_argument("--db", metavar="DIR|redis://HOST:PORT",
                       help="Hypothesis example database (ops): replayed first; "
                            "a shrunk finding is saved in it")
        q.set_defaults(run=run)

    ops = kinds.add_parser("ops", help="operations checked against a POSIX model")
    common(ops)
    ops.add_argument("--mount", action="store_true",
                     help="through a real FUSE mount (root and /dev/fuse needed)")
    ops.add_argument("--examples", type=_positive_int, help="operation sequences "
                     "(default 200, about 45 s; 20 with --mount)")
    ops.add_argument("--steps", type=_positive_int, default=40, help="operations per sequence")

    crash = kinds.add_parser("crash", help="power cuts at every flush epoch of short workloads")
    common(crash)
    crash.add_argument("--budget", type=_seconds, default=60.0, help="seconds (default 60)")
    crash.add_argument("--max-ops", type=_positive_int, default=6, help="operations per workload")
    crash.add_argument("--save", metavar="DIR", default="bento-regressions",
                       help="where a failure is written as a pytest file (default ./bento-regressions)")

    image = kinds.add_parser("image", help="corrupt images: mount, fsck and a walk")
    common(image)
    image.add_argument("--budget", type=_seconds, default=60.0, help="seconds (default 60)")
    image.add_argument("--time-bound", type=_seconds, default=10.0,
                       help="seconds one image may take (default 10)")
    image.add_argument("--repair", action="store_true",
                       help="repair each image fsck rejects (fsck -y) and hold the repair to "
                       "its word: exit 1 or 4, clean after 1, and the image mounts and walks")
    image.add_argument("--save", metavar="DIR", default="bento-regressions",
                       help="where failing images are written (default ./bento-regressions)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return value


def _shard(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a shard number (0, 1, ...): {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from fuzz.campaign import DRAWS, Job, open_database
    from fuzz.ops import EXAMPLES
    from fuzz.target import FuzzError, Target

    mount = getattr(args, "mount", False)
    if mount and (args.scheduler or (args.workers or 1) > 1 or args.shard is not None):
        raise UserError("--mount runs in this process, not as a campaign: leave out "
                        "--workers, --scheduler and --shard", 2)
    if args.scheduler and args.workers:
        raise UserError("--workers makes a local cluster; --scheduler names a running one: "
                        "give one of them", 2)
    if args.db and args.fuzzer != "ops":
        raise UserError(f"--db is for ops: the {args.fuzzer} fuzzer keeps its findings as "
                        "files (--save)", 2)
    try:
        target = Target.load(args.fs)
        database = open_database(args.db) if args.db else None
    except FuzzError as e:
        raise UserError(str(e), 2) from None
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    if args.scheduler is None and not args.workers:
        args.workers = os.cpu_count() or 1  # the default: a worker per core
    job = Job(args.fuzzer, target.spec, seed,
              examples=getattr(args, "examples", None) or (20 if mount else EXAMPLES),
              steps=getattr(args, "steps", 40), max_ops=getattr(args, "max_ops", 6),
              time_bound=getattr(args, "time_bound", 10.0), repair=getattr(args, "repair", False))
    print(f"bento fuzz {args.fuzzer}: {target.spec} ({target.cls.__module__}."
          f"{target.cls.__qualname__}), seed {seed}"
          + ("" if target.has_fsck else "; no fsck: behaviour is checked, images are not"))
    status = Progress(log_every=10.0)  # a line every 10 s in CI logs
    try:
        if database is not None and _replayed(args, target, job, database):
            return 1
        if args.shard is not None:
            from fuzz.campaign import run_shard

            print(f"shard {args.shard} of seed {seed}: {job.size(args.shard)} "
                  f"{DRAWS[job.fuzzer]}, shrunk if one fails")
            found = _report(args, target, job, run_shard(job, args.shard, database=database,
                                                         shrink=args.shrink),
                            job.command(args.shard), args.shard)
        elif args.scheduler is None and (mount or args.workers == 1):
            found = _in_process(args, target, job, database, status)
            if found:
                print(f"reproduce: bento fuzz {args.fuzzer} --fs {target.spec} --seed {seed} "
                      "--workers 1" + (" --mount" if mount else ""))
        else:
            found = _campaign(args, target, job, database, status)
    finally:
        status.done()
    return 1 if found else 0


def _replayed(args: argparse.Namespace, target: Any, job: Any, database: Any) -> bool:
    """Replay what the example database holds; True (reported) if one still fails."""
    from fuzz.campaign import failure_of, replay

    result = replay(job, database)
    if failure_of(job.fuzzer, result) is None:
        print(f"--db {args.db}: its saved examples pass")
        return False
    print(f"--db {args.db}: a saved example fails again")
    _report(args, target, job, result, f"bento fuzz {job.fuzzer} --fs {target.spec} --db {args.db}")
    return True


def _in_process(args: argparse.Namespace, target: Any, job: Any, database: Any,
                status: Progress) -> bool:
    """Today's single-process run: ops by count, crash and image by --budget."""
    from fuzz import crash, image, ops

    if job.fuzzer == "ops":
        result: Any = ops.run(
            target, examples=job.examples, seed=job.seed, mount=args.mount, steps=job.steps,
            database=database, shrink=args.shrink,
            progress=lambda r: status.show(f"ops: {r.examples}/{job.examples} sequences, "
                                           f"{r.steps} steps, {r.rate:.1f}/s"))
    elif job.fuzzer == "crash":
        result = crash.run(target, budget=args.budget, seed=job.seed, max_ops=job.max_ops,
                           shrink=args.shrink,
                           progress=lambda r: status.show(f"crash: {r.workloads} workloads, "
                                                          f"{r.states} crash states, "
                                                          f"{r.rate:.0f} states/s"))
    else:
        result = image.run(target, budget=args.budget, seed=job.seed, time_bound=job.time_bound,
                           repair=job.repair, shrink=args.shrink,
                           progress=lambda r: status.show(f"image: {r.images} images, "
                                                          f"{len(r.findings)} failures, "
                                                          f"{r.rate:.0f}/s"))
    status.done()
    return _report(args, target, job, result,
                   f"bento fuzz {job.fuzzer} --fs {target.spec} --seed {job.seed} --workers 1")


def _campaign(args: argparse.Namespace, target: Any, job: Any, database: Any,
              status: Progress) -> bool:
    """Shards on a Dask cluster; each finding reproduced and shrunk here, once."""
    from fuzz.campaign import DRAWS, UNITS, cluster, run_shard
    from fuzz.campaign import run as run_campaign
    from fuzz.target import FuzzError

    budget = None if job.fuzzer == "ops" else args.budget
    try:
        with cluster(args.workers, args.scheduler) as client:
            c = run_campaign(job, client, budget=budget, keep_going=args.keep_going,
                             progress=lambda c: status.show(c.status()))
    except FuzzError as e:
        raise UserError(str(e), 2) from None
    status.done()
    unit, draws = UNITS[job.fuzzer], DRAWS[job.fuzzer]
    drawn = "" if draws == unit else f"{sum(r.draws for r in c.done)} {draws}, "
    print(f"campaign: {len(c.done)} shards on {c.workers} workers in {c.seconds:.1f} s: "
          f"{drawn}{c.count} {unit} ({c.rate:.1f} {unit}/s)"
          + (f"; {len(c.lost)} shards lost: {c.lost}" if c.lost else "")
          + (f"; submitted again after the cluster lost them: {c.resubmitted}"
             if c.resubmitted else ""))
    outcomes: dict[str, int] = {}
    for r in c.done:
        for kind, n in r.outcomes.items():
            outcomes[kind] = outcomes.get(kind, 0) + n
    if outcomes:
        print(f"  {draws}: " + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())))
    columns = ["worker", "shards"] + ([draws] if draws != unit else []) + [unit, f"{unit}/s"]
    print_table(columns, [[worker, t.shards] + ([t.draws] if draws != unit else [])
                          + [t.count, f"{t.rate:.1f}"]
                          for worker, t in sorted(c.per_worker().items())])
    if not c.findings:
        print("no failure")
        return False
    seen: set[str] = set()
    for r in c.findings:
        if r.problem in seen:
            continue
        seen.add(r.problem or "")
        print(f"shard {r.shard} failed on {r.worker}: {r.problem}")
        print(f"{'shrinking' if args.shrink else 'running'} shard {r.shard} here ...")
        command = job.command(r.shard)
        if not _report(args, target, job, run_shard(job, r.shard, database=database,
                                                    shrink=args.shrink), command, r.shard):
            print(f"shard {r.shard} did not fail again here: the file system (or a fuzzer) "
                  "is not deterministic")
        print(f"reproduce: {command}")
    return True


def _report(args: argparse.Namespace, target: Any, job: Any, result: Any, command: str,
            shard: int | None = None) -> bool:
    """Print a fuzzer's result as today; True if it failed. ``command`` reproduces it
    (a crash regression test names it); ``shard`` tags saved images."""
    if job.fuzzer == "ops":
        return _report_ops(args, result)
    if job.fuzzer == "crash":
        return _report_crash(args, target, result, command)
    return _report_image(args, target, result, f"{job.seed}" + (f"-shard{shard}" if shard is not None else ""))


def _report_ops(args: argparse.Namespace, result: Any) -> bool:
    print(f"ops: {result.examples} sequences, {result.steps} steps in {result.seconds:.1f} s "
          f"({result.rate:.2f} sequences/s, {result.steps / max(result.seconds, 1e-9):.0f} steps/s)"
          f"{' through a FUSE mount' if getattr(args, 'mount', False) else f'; {result.faults} failed on purpose'}")
    if result.failure:
        print("FAILED: the smallest sequence Hypothesis found is above; the error:")
        print(result.failure.rstrip())
        return True
    print("no failure")
    return False


def _report_crash(args: argparse.Namespace, target: Any, result: Any, command: str) -> bool:
    from fuzz import crash

    print(f"crash: {result.workloads} workloads, {result.states} crash states in "
          f"{result.seconds:.1f} s ({result.rate:.0f} states/s)")
    if result.error:
        print(f"FAILED before any crash: {result.error}")
        return True
    f = result.finding
    if f is None:
        print("no failure")
        return False
    print("FAILED: " + f.problem)
    print("workload:")
    for i, op in enumerate(f.workload):
        print(f"  {i}: {op[0]}({', '.join(repr(a) for a in op[1:])})")
    print(f"crash state: {f.described}")
    path = crash.save_regression(args.save, target, f, command)
    print(f"regression test: {path}")
    return True


def _report_image(args: argparse.Namespace, target: Any, result: Any, tag: str) -> bool:
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(result.kinds.items()))
    print(f"image: {result.images} images in {result.seconds:.1f} s ({result.rate:.1f}/s): "
          f"{outcomes or 'none'}")
    if result.mutated:
        print("mutated: " + ", ".join(f"{k} {n}" for k, n in sorted(result.mutated.items(),
                                                                   key=lambda kv: -kv[1]))
              + (f"; never: {', '.join(result.never_mutated)}" if result.never_mutated else ""))
    if not result.findings:
        print("no failure")
        return False
    os.makedirs(args.save, exist_ok=True)
    for n, f in enumerate(result.findings, 1):
        path = os.path.join(args.save, f"image-{target.name.lower()}-{tag}-{n}.img")
        with open(path, "wb") as out:
            out.write(f.image.tobytes())
        print(f"FAILED ({f.outcome.kind}): {f.outcome.failure}")
        print(f"  {f.seed_image} image; " + "; ".join(str(m) for m in f.mutations))
        print(f"  image: {path}  (bento fsck {path})")
    return True
