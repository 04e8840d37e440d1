"""What a fuzz campaign gains per worker (fuzz/campaign.py): each fuzzer on clean xv6,
in one process (``--workers 1``, no Dask) and on local Dask clusters of 1 and 2 worker
processes, one after the other on an otherwise idle machine.

    .venv/bin/python bench/campaign_scaling.py [--budget 60] [--fuzzers ops crash image]
        [--out bench/campaign_scaling.json]

Rates are what the campaign summary prints: ops examples/s, crash states/s, image
images/s, over the wall time of the exploration (the cluster's start-up and the
client's shrinking are outside it). A campaign's first shard on a fresh worker pays
that process's imports and its first seed images, as a user's campaign does.
Efficiency = rate at 2 workers / rate at 1 worker.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from fuzz import campaign, crash, image, ops
from fuzz.target import Target


def in_process(fuzzer: str, budget: float) -> float:
    """Today's single-process rate (``--workers 1``)."""
    target = Target.load("xv6")
    if fuzzer == "ops":
        started = time.monotonic()
        r: Any = ops.run(target, examples=int(budget * 2.5), seed=1)  # about ``budget`` s
        return r.examples / (time.monotonic() - started)
    if fuzzer == "crash":
        r = crash.run(target, budget=budget, seed=1)
        return r.states / r.seconds
    r = image.run(target, budget=budget, seed=1)
    return r.images / r.seconds


def on_cluster(fuzzer: str, workers: int, budget: float) -> tuple[float, dict[str, float]]:
    """A campaign's rate on ``workers`` local processes, and each worker's own."""
    examples = int(budget * 2.5) * workers  # ops: a count, about ``budget`` s of work
    job = campaign.Job(fuzzer, "xv6", seed=1, examples=examples)
    with campaign.cluster(workers=workers) as client:
        c = campaign.run(job, client, budget=None if fuzzer == "ops" else budget)
    return c.rate, {w: t.rate for w, t in c.per_worker().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--out", default="bench/campaign_scaling.json")
    parser.add_argument("--fuzzers", nargs="*", default=list(campaign.FUZZERS),
                        choices=campaign.FUZZERS)
    args = parser.parse_args()
    rows = []
    for fuzzer in args.fuzzers:
        one_process = in_process(fuzzer, args.budget)
        one, per1 = on_cluster(fuzzer, 1, args.budget)
        two, per2 = on_cluster(fuzzer, 2, args.budget)
        row = {"fuzzer": fuzzer, "unit": campaign.UNITS[fuzzer], "in_process": one_process,
               "workers_1": one, "workers_2": two, "efficiency": two / one if one else 0.0,
               "per_worker_2": per2}
        rows.append(row)
        print(f"{fuzzer}: in-process {one_process:.1f}, 1 worker {one:.1f}, 2 workers {two:.1f} "
              f"{campaign.UNITS[fuzzer]}/s; 2/1 = {row['efficiency']:.2f}x; per worker at 2: "
              + ", ".join(f"{v:.1f}" for v in per2.values()), flush=True)
    with open(args.out, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "budget": args.budget, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
