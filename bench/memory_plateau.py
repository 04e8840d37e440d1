"""The daemon's memory as the kernel keeps more and more inodes (issue 23: "resident
memory bounded by the cache plus a constant").

One bento mount, the cache fixed (``cache_mib``, 256 by default), untars the same tree
again and again into fresh directories (fuse_compare's tree: Django's sources and
/usr/include, 18,867 entries). After each copy, ``bento stat`` gives the daemon's
resident memory and the blocks its cache holds; what is left, RSS minus the cached
blocks, is what the daemon keeps besides the cache, and must stop growing once the
cache is full, however many inodes the kernel holds (it holds every one: nothing
presses it to drop them on this machine).

    .venv/bin/python bench/memory_plateau.py [--copies 12] [--cache-mib 256] [--code DIR]

as root; ``--code`` mounts with the bento_user of another checkout (an older commit).
Writes ``bench/memory_plateau.json`` (or ``--out``) and a plot beside it; prints the
table for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fuse_compare import assets, sh, unmount  # noqa: E402  (bench/ is not a package)
from near_full import bento  # noqa: E402  (runs bento from a checkout, one-line errors)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--copies", type=int, default=12)
    p.add_argument("--cache-mib", type=int, default=256)
    p.add_argument("--code", help="mount with the bento_user of this checkout")
    p.add_argument("--work", type=Path, default=Path("/var/tmp/memory_plateau"))
    p.add_argument("--out", type=Path, default=HERE / "memory_plateau.json")
    args = p.parse_args()
    tarball, _, entries = assets()
    shutil.rmtree(args.work, ignore_errors=True)
    mnt, image = args.work / "mnt", args.work / "disk.img"
    mnt.mkdir(parents=True)
    with open(image, "wb") as f:
        f.truncate(8 << 30)
    bento(args.code, "mkfs", str(image))
    bento(args.code, "mount", str(image), str(mnt), "-o", f"cache_mib={args.cache_mib}")
    rows = []
    try:
        for i in range(1, args.copies + 1):
            (mnt / f"c{i}").mkdir()
            start = time.perf_counter()
            sh("tar", "-xf", str(tarball), "-C", str(mnt / f"c{i}"))
            seconds = time.perf_counter() - start
            stats = json.loads(bento(args.code, "stat", "--json", str(mnt)))["stats"]
            cache_mib = stats["cache"]["cached"] * 4096 / 2**20
            rss = stats["memory"]["rss_mib"]
            rows.append({"copies": i, "entries": i * entries, "untar_s": seconds,
                         "rss_mib": rss, "peak_rss_mib": stats["memory"]["peak_rss_mib"],
                         "cached_mib": cache_mib, "rest_mib": rss - cache_mib})
            print(f"copy {i}: {i * entries:,} entries, RSS {rss:.0f} MiB, cache "
                  f"{cache_mib:.0f} MiB, rest {rss - cache_mib:.0f} MiB", flush=True)
    finally:
        unmount("bento", mnt, image, None)
        shutil.rmtree(args.work, ignore_errors=True)
    result = {"date": date.today().isoformat(), "code": args.code or "this checkout",
              "cache_mib": args.cache_mib, "entries_per_copy": entries, "rows": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(rows, args.out.with_suffix(".png"), args.cache_mib)
    print("| copies | entries | untar, s | RSS, MiB | cached blocks, MiB | RSS - cache, MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['copies']} | {r['entries']:,} | {r['untar_s']:.1f} | {r['rss_mib']:.0f} | "
              f"{r['cached_mib']:.0f} | {r['rest_mib']:.0f} |")
    return 0


def plot(rows: list[dict], path: Path, cache_mib: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    x = [r["entries"] / 1000 for r in rows]
    ax.plot(x, [r["rss_mib"] for r in rows], "o-", label="daemon RSS")
    ax.plot(x, [r["rest_mib"] for r in rows], "s-", label="RSS - cached blocks")
    ax.axhline(cache_mib, color="grey", ls=":", label=f"cache capacity ({cache_mib} MiB)")
    ax.set_xlabel("entries untarred on the mount (thousands)")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title("bento daemon memory as the kernel holds more inodes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
