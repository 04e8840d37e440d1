"""``bento stat MOUNTPOINT``: what a running mount has been doing.

Per-operation counts, errors and latency percentiles (from the dispatcher's
reservoir of the last 4,096 calls per operation), the buffer cache's hit rate and
dirty buffers, the journal's commits.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..api import ErrorRecord
from ..runtime import control
from ._errors import UserError
from ._terminal import console, is_terminal, rich_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stat", help="per-operation counts and latencies of a mount")
    p.add_argument("mountpoint")
    p.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        status = control.call(args.mountpoint, "status")
        stats = control.call(args.mountpoint, "stats")
    except control.NotMounted as e:
        raise UserError(str(e.strerror)) from None
    if args.json:
        print(json.dumps({"status": status, "stats": stats}, indent=2))
        return 0
    if is_terminal():
        print_table(status, stats)
    else:
        print(render(status, stats))
    return 0


COLUMNS = ("operation", "calls", "errors", "p50 µs", "p90 µs", "p99 µs", "max µs", "total s")


def _rows(stats: dict[str, Any]) -> list[tuple[str, ...]]:
    """The operations, the busiest (in total time) first."""
    return [(name, f"{o['calls']:,}", f"{o['errors']:,}", f"{o['p50_us']:.0f}",
             f"{o['p90_us']:.0f}", f"{o['p99_us']:.0f}", f"{o['max_us']:.0f}",
             f"{o['total_s']:.2f}")
            for name, o in sorted(stats["operations"].items(), key=lambda kv: -kv[1]["total_s"])]


def _title(status: dict[str, Any], stats: dict[str, Any]) -> str:
    return (f"{status['mountpoint']}: {status['fs']} on {status['image']}, pid {status['pid']}, "
            f"up {stats['uptime_s']:.0f} s")


def print_table(status: dict[str, Any], stats: dict[str, Any]) -> None:
    """On a terminal: the operations as a rich table, the rest as lines under it."""
    from rich.text import Text

    table = rich_table(COLUMNS, _title(status, stats))
    for row in _rows(stats):
        table.add_row(*row, style="red" if row[2] != "0" else None)
    out = console()
    out.print(table)
    for line in _summary(status, stats):
        out.print(Text(line, "bold red" if line.startswith(("ERRORS", "READ-ONLY")) else ""))


def render(status: dict[str, Any], stats: dict[str, Any]) -> str:
    """Plain text, for a pipe or a file: fixed columns, one line per operation."""
    widths = (12, 10, 8, 10, 10, 10, 11, 9)
    lines = [_title(status, stats),
             "".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                     for i, (c, w) in enumerate(zip(COLUMNS, widths)))]
    for row in _rows(stats):
        lines.append("".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                             for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines + _summary(status, stats))


def _summary(status: dict[str, Any], stats: dict[str, Any]) -> list[str]:
    """The cache, memory, space, journal, upgrades and errors, a line each."""
    lines: list[str] = []
    c = stats["cache"]
    lines.append(f"buffer cache: {c['capacity'] / 256:,.0f} MiB, {c['hit_rate']:.1%} hits "
                 f"({c['hits']:,} hits, {c['misses']:,} misses), {c['cached']:,}/"
                 f"{c['capacity']:,} blocks cached, {c['dirty']:,} dirty "
                 f"({c.get('pinned_dirty', 0):,} pinned by the journal); "
                 f"{c['bytes_read'] / 2**20:,.1f} MiB read, "
                 f"{c['bytes_written'] / 2**20:,.1f} MiB written")
    if "evictions" in c:
        lines.append(f"write-back: {c['background_writes']:,} blocks in the background, "
                     f"{c['throttled']:,} writers throttled, {c['stalls']:,} allocations "
                     f"stalled; {c['evictions']:,} evictions, {c['evictable']:,} "
                     f"blocks evictable now")
    mem = stats.get("memory")
    if mem:
        lines.append(f"memory: {mem['rss_mib']:,.0f} MiB resident, "
                     f"{mem['peak_rss_mib']:,.0f} MiB at most")
    sp = stats.get("space")
    if sp and sp["reserve"]:
        lines.append(f"near full: the kernel may hold {sp['dirty_limit'] / 2**20:,.1f} MiB dirty; "
                     f"{sp['reserve'] / 2**20:,.1f} MiB reserved for it; writers opened below "
                     f"{sp['low_water'] / 2**20:,.1f} MiB free get direct I/O "
                     f"({sp['direct_opens']:,} so far, {sp['refused']:,} allocations refused)")
    j = stats.get("journal")
    if j:
        lines.append(f"journal: {j['commits']:,} commits ({j['forced']:,} forced, {j['timer']:,} "
                     f"by timer), {j['blocks_logged']:,} blocks logged, log {j['log_used']:,}/"
                     f"{j['log_size']:,} blocks in use, {j['commit_seconds']:.2f} s committing")
    u = stats.get("upgrades")
    if u and u["count"]:
        lines.append(f"live upgrades: {u['count']:,} (last pause {u['last_pause_ms']:.2f} ms, "
                     f"longest {u['max_pause_ms']:.2f} ms)"
                     + ("; watching the source for changes" if status.get("watch") else ""))
    elif status.get("watch"):
        lines.append("live upgrades: none yet; watching the source for changes")
    if stats.get("bugs"):
        lines.append(f"file-system bugs answered with EIO: {stats['bugs']} (see {status['log']})")
    guard = stats.get("guard") or {}
    if guard.get("undone"):
        lines.append(f"failed operations undone and the file system reloaded: {guard['undone']}")
    if guard.get("read_only"):
        lines.append(f"READ-ONLY: {guard['read_only']}")
    lines.extend(_errors(stats.get("errors")))
    return lines


def _errors(e: dict[str, Any] | None) -> list[str]:
    """Corruption met since the mount, and what the disk has recorded (ext4's error
    count): the line that says "run bento fsck"."""
    if not e:
        return []
    out = []
    if e["met"]:
        out.append(f"corrupt blocks met since the mount: {e['met']:,} (the last: {e['last_met']}); "
                   f"errors={e['policy']}")
    if e["recorded"]:
        out.append(f"ERRORS: the file system {ErrorRecord(**e['recorded']).summary()}; "
                   "run bento fsck")
    return out
