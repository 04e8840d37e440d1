"""The soak: the big-tree workload again and again, keeping everything on a failure.

Issue 14 §7: once in three runs, ``git fsck`` of a clone made on a mount whose buffer
cache was far smaller than the data failed. One run here: a fresh 6 GiB image, mounted
with ``cache_mib=256`` (eviction, write-back and checkpoints all run hard); untar
Python's ``lib/python3.11`` (941 MiB, 59,426 entries) and compare it with the tarball
(``tar --compare``: contents, sizes, modes, times); ``git clone --no-local`` a
one-commit repository of the same tree and ``git fsck --full --strict`` it; unmount
and ``bento fsck`` the image. ``--copies 2`` is the
larger variant (the tree twice, then the clone). Any failed step keeps the run's
directory: the image, the step's output, the mount's log and ``bento stat``.

    .venv/bin/python bench/soak.py --runs 20            # as root; ~7 minutes a run

It shares the tree and the repository with bench/scale.py (``bench/.cache/scale``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scale import BENTO, GIT, IMAGE_SIZE, assets  # noqa: E402  (bench/ is not a package)


class StepFailed(Exception):
    pass


def step(log: Path, name: str, *cmd: str, cwd: Path | None = None) -> float:
    """Run one step, its output appended to ``log``; raise StepFailed on failure."""
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise StepFailed(f"{name} exited {done.returncode}")
    return seconds


def one_run(run: Path, a: dict, copies: int, options: str) -> dict[str, float]:
    """One soak run in ``run``; the step times. Raises StepFailed, leaving the mount
    up for the caller to record."""
    mnt, image, log = run / "mnt", run / "disk.img", run / "steps.log"
    mnt.mkdir(parents=True)
    with open(image, "wb") as f:
        f.truncate(IMAGE_SIZE)
    times = {"mkfs_s": step(log, "mkfs", BENTO, "mkfs", str(image))}
    step(log, "mount", BENTO, "mount", str(image), str(mnt), "-o", options)
    for i in range(copies):
        (mnt / f"tree{i}").mkdir()
        times[f"untar{i}_s"] = step(log, "untar", "tar", "-xf", str(a["full"]), "-C",
                                    str(mnt / f"tree{i}"))
        times[f"compare{i}_s"] = step(log, "tar --compare", "tar", "--compare", "-f",
                                      str(a["full"]), "-C", str(mnt / f"tree{i}"))
    times["clone_s"] = step(log, "clone", *GIT, "clone", "-q", "--no-local", str(a["repo"]),
                            str(mnt / "clone"))
    times["git_fsck_s"] = step(log, "git fsck", *GIT, "fsck", "--full", "--strict",
                               cwd=mnt / "clone")
    return times


def record(run: Path) -> None:
    """What a failed run leaves for the post-mortem: stat, the daemon's log path."""
    mnt = run / "mnt"
    done = subprocess.run([BENTO, "stat", "--json", str(mnt)], capture_output=True, text=True)
    (run / "stat.json").write_text(done.stdout or done.stderr)
    try:
        log = json.loads(done.stdout)["status"]["log"]
        shutil.copy(log, run / "mount.log")
    except (ValueError, KeyError, TypeError, OSError):
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--copies", type=int, default=1, help="2: the larger variant")
    p.add_argument("-o", dest="options", default="cache_mib=256", help="mount options")
    p.add_argument("--source", type=Path, default=Path(os.__file__).parent)
    p.add_argument("--assets", type=Path, default=HERE / ".cache" / "scale")
    p.add_argument("--work", type=Path, default=Path("/var/tmp/bento-soak"))
    args = p.parse_args()
    if os.getuid() != 0:
        raise SystemExit("run as root (mounts)")
    source = args.source.resolve()
    a = assets(args.assets, source)
    clean = 0
    for n in range(1, args.runs + 1):
        run = args.work / f"run{n:03d}"
        shutil.rmtree(run, ignore_errors=True)
        start = time.perf_counter()
        failure = None
        try:
            times = one_run(run, a, args.copies, args.options)
        except StepFailed as e:
            failure, times = str(e), {}
            record(run)
        mnt = run / "mnt"
        if os.path.ismount(mnt):
            if failure is None:
                record(run)
            subprocess.run([BENTO, "umount", str(mnt)], capture_output=True)
        if (run / "disk.img").exists():
            try:
                step(run / "steps.log", "bento fsck", BENTO, "fsck", str(run / "disk.img"))
            except StepFailed as e:
                failure = failure or str(e)
        line = {"run": n, "ok": failure is None, "seconds": round(time.perf_counter() - start),
                **{k: round(v, 1) for k, v in times.items()}}
        if failure is None:
            clean += 1
            (run / "disk.img").unlink()
            shutil.rmtree(run / "mnt", ignore_errors=True)
        else:
            line["failure"], line["kept"] = failure, str(run)
        print(json.dumps(line), flush=True)
        with open(args.work / "soak.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
    print(f"{clean} of {args.runs} runs clean", flush=True)
    return 0 if clean == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
