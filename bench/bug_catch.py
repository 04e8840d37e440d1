"""Which fuzzer catches which injected bug (tests/injected_bugs.py) within its default
budget, and how fast each fuzzer runs on the healthy file system.

Every (bug, fuzzer) pair runs ``bento fuzz FUZZER --seed S --workers 1 --no-shrink`` in a
fresh process with the bug patched in; exit 1 means caught, and the time is the time
to find it (shrinking the example is not counted: it can take minutes). Writes bench/bug_catch.json and prints the
Markdown table that goes into RESULTS.md.

    .venv/bin/python bench/bug_catch.py [--jobs 2] [--seed 1] [--only NAME ...] [--first-catch]
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.injected_bugs import BUGS  # noqa: E402

FUZZERS = ["ops", "crash", "image"]
CHILD = """
import sys
from bento_user.cli import main
from tests.injected_bugs import inject
name, argv = sys.argv[1], sys.argv[2:]
if name == "none":
    sys.exit(main(argv))
with inject(name):
    sys.exit(main(argv))
"""


def fuzz(bug: str, fuzzer: str, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        # one process: the bug is a monkeypatch, which a campaign's workers would not see
        # time to find, as a developer waits for it: the first failure, unshrunk
        argv = ["fuzz", fuzzer, "--seed", str(seed), "--workers", "1", "--no-shrink"]
        if fuzzer != "ops":
            argv += ["--save", tmp]
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", CHILD, bug, *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=3600)
        seconds = time.monotonic() - started
    out = done.stdout
    failed = next((line for line in out.splitlines() if line.startswith("FAILED")), "")
    if fuzzer == "ops" and failed:
        errors = [line for line in out.splitlines() if re.match(r"\w*(Error|Exception)\b", line)]
        failed = errors[-1] if errors else failed
    summary = next((line for line in out.splitlines() if line.startswith(f"{fuzzer}: ")), "")
    return {"bug": bug, "fuzzer": fuzzer, "caught": done.returncode == 1,
            "exit": done.returncode, "seconds": round(seconds, 1), "finding": failed[:300],
            "summary": summary, "stderr": done.stderr[-500:] if done.returncode not in (0, 1) else ""}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", nargs="*", help="bug names (default: all, and the healthy baseline)")
    p.add_argument("--fuzzers", nargs="*", choices=FUZZERS, default=FUZZERS)
    p.add_argument("--out", default="bench/bug_catch.json", help="where the results go")
    p.add_argument("--first-catch", action="store_true",
                   help="stop a bug's row at the first fuzzer that catches it (the goal "
                        "counts bugs caught by some fuzzer; the healthy row runs them all)")
    args = p.parse_args()
    names = args.only or ["none"] + [b.name for b in BUGS]
    meant = {b.name: b.fuzzer for b in BUGS}
    # each bug's own fuzzer first, so a cut-short run still answers the main question
    pairs = sorted(((n, f) for n in names for f in args.fuzzers),
                   key=lambda nf: (meant.get(nf[0], nf[1]) != nf[1], names.index(nf[0])))
    partial = REPO / "bench" / "bug_catch.partial.jsonl"
    partial.write_text("")

    def one(nf: tuple[str, str]) -> dict[str, object]:
        r = fuzz(nf[0], nf[1], args.seed)
        with partial.open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(json.dumps(r), flush=True)
        return r

    def first_catch(bug: str) -> list[dict[str, object]]:
        """The bug's fuzzers in order (its own first) until one catches it."""
        done = []
        for nf in [nf for nf in pairs if nf[0] == bug]:
            done.append(one(nf))
            if done[-1]["caught"] and bug != "none":
                break
        return done

    with ThreadPoolExecutor(args.jobs) as pool:
        if args.first_catch:
            results = [r for rs in pool.map(first_catch, names) for r in rs]
        else:
            results = list(pool.map(one, pairs))
    partial.unlink()
    out = REPO / args.out
    out.write_text(json.dumps({"date": datetime.date.today().isoformat(), "seed": args.seed,
                               "command": "bench/bug_catch.py " + " ".join(sys.argv[1:]),
                               "results": results}, indent=1))
    by = {(r["bug"], r["fuzzer"]): r for r in results}
    print("\n| bug | meant for | ops | crash | image |\n|---|---|---|---|---|")
    for b in BUGS:
        if b.name not in names:
            continue
        cells = []
        for f in FUZZERS:
            r = by.get((b.name, f))
            if r is None:
                cells.append("not run" if not args.first_catch else "")
                continue
            cells.append(f"**caught** ({r['seconds']:.0f} s)" if r["caught"]
                         else "—" if r["exit"] == 0 else f"error {r['exit']}")
        print(f"| {b.name}: {b.what} | {b.fuzzer} | " + " | ".join(cells) + " |")
    if "none" in names:
        print("\nhealthy xv6:")
        for f in args.fuzzers:
            print(f"  {by[('none', f)]['summary']}  (exit {by[('none', f)]['exit']})")


if __name__ == "__main__":
    main()
