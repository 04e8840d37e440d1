"""``bento fuzz ops|crash|image``: find a file system's bugs (see fuzz/).

Each prints progress and a summary, exits 1 when it found a bug (0 otherwise), and
replays from ``--seed`` (one is chosen and printed when none is given).
"""

from __future__ import annotations

import argparse
import os
import random
from typing import Any

from ._errors import UserError
from ._fs import add_fs_argument
from ._progress import Progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuzz", help="find bugs: random operations, crashes, corrupt images")
    kinds = p.add_subparsers(dest="fuzzer", required=True, metavar="FUZZER")

    def common(q: argparse.ArgumentParser) -> None:
        add_fs_argument(q)
        q.add_argument("--seed", type=int, help="replay a run (default: a random seed, printed)")
        q.set_defaults(run=run)

    ops = kinds.add_parser("ops", help="operations checked against a POSIX model")
    common(ops)
    ops.add_argument("--mount", action="store_true",
                     help="through a real FUSE mount (root and /dev/fuse needed)")
    ops.add_argument("--examples", type=_positive_int, help="operation sequences "
                     "(default 100; 20 with --mount)")
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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from fuzz.target import FuzzError, Target

    try:
        target = Target.load(args.fs)
    except FuzzError as e:
        raise UserError(str(e), 2) from None
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    print(f"bento fuzz {args.fuzzer}: {target.spec} ({target.cls.__module__}."
          f"{target.cls.__qualname__}), seed {seed}"
          + ("" if target.has_fsck else "; no fsck: behaviour is checked, images are not"))
    status = Progress(log_every=10.0)  # a line every 10 s in CI logs
    try:
        found = {"ops": _ops, "crash": _crash, "image": _image}[args.fuzzer](
            args, target, seed, status)
    finally:
        status.done()
    if found:
        print(f"reproduce: bento fuzz {args.fuzzer} --fs {target.spec} --seed {seed}"
              + (" --mount" if getattr(args, "mount", False) else ""))
    return 1 if found else 0


def _ops(args: argparse.Namespace, target: Any, seed: int, status: Progress) -> bool:
    from fuzz import ops

    if args.mount and (os.getuid() != 0 or not os.path.exists("/dev/fuse")):
        raise UserError("--mount needs root and /dev/fuse", 2)
    examples = args.examples or (20 if args.mount else 100)
    result = ops.run(target, examples=examples, seed=seed, mount=args.mount, steps=args.steps,
                     progress=lambda r: status.show(f"ops: {r.examples}/{examples} sequences, "
                                                    f"{r.steps} steps, {r.rate:.1f}/s"))
    status.done()
    print(f"ops: {result.examples} sequences, {result.steps} steps in {result.seconds:.1f} s "
          f"({result.rate:.2f} sequences/s, {result.steps / max(result.seconds, 1e-9):.0f} steps/s)"
          f"{' through a FUSE mount' if args.mount else f'; {result.faults} failed on purpose'}")
    if result.failure:
        print("FAILED: the smallest sequence Hypothesis found is above; the error:")
        print(result.failure.rstrip())
        return True
    print("no failure")
    return False


def _crash(args: argparse.Namespace, target: Any, seed: int, status: Progress) -> bool:
    from fuzz import crash

    result = crash.run(target, budget=args.budget, seed=seed, max_ops=args.max_ops,
                       progress=lambda r: status.show(f"crash: {r.workloads} workloads, "
                                                      f"{r.states} crash states, "
                                                      f"{r.rate:.0f} states/s"))
    status.done()
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
    command = f"bento fuzz crash --fs {target.spec} --seed {seed}"
    path = crash.save_regression(args.save, target, f, command)
    print(f"regression test: {path}")
    return True


def _image(args: argparse.Namespace, target: Any, seed: int, status: Progress) -> bool:
    from fuzz import image

    result = image.run(target, budget=args.budget, seed=seed, time_bound=args.time_bound,
                       progress=lambda r: status.show(f"image: {r.images} images, "
                                                      f"{len(r.findings)} failures, "
                                                      f"{r.rate:.0f}/s"))
    status.done()
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
        path = os.path.join(args.save, f"image-{target.name.lower()}-{seed}-{n}.img")
        with open(path, "wb") as out:
            out.write(f.image.tobytes())
        print(f"FAILED ({f.outcome.kind}): {f.outcome.failure}")
        print(f"  {f.seed_image} image; " + "; ".join(str(m) for m in f.mutations))
        print(f"  image: {path}  (bento fsck {path})")
    return True
