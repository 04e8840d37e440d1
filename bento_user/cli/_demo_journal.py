"""``bento demo --journal``: the kernel services alone, on a real O_DIRECT image.

A journal on an image, group commit, a simulated power cut (recording device),
recovery, and the counters.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from collections.abc import Callable

import numpy as np

from ..blockdev import ImageDevice, RamDevice, RecordingDevice
from ..ks_emul import Journal, KernelServices
from ._errors import UserError

JOURNAL_START, JOURNAL_LEN = 1, 1024
META = range(2048, 2048 + 64)  # blocks the demo treats as metadata


def step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def transact(j: Journal, ks: KernelServices, rng: random.Random, n: int) -> None:
    """``n`` operations, each changing 1-4 metadata blocks in one handle."""
    for _ in range(n):
        blocks = rng.sample(META, rng.randint(1, 4))
        with j.start(len(blocks)) as h:
            for b in blocks:
                with ks.bread(b) as bh:
                    h.get_write_access(bh)
                    bh.data[:8].view(np.uint64)[0] += 1
                    h.dirty_metadata(bh)


def counters(read_block: Callable[[int], bytes]) -> int:
    """The sum of the 64-bit counters that start the demo's metadata blocks."""
    return sum(int(np.frombuffer(read_block(b)[:8], np.uint64)[0]) for b in META)


def through_cache(ks: KernelServices) -> Callable[[int], bytes]:
    """Read blocks as the file system sees them (committed, maybe not yet home)."""
    def read(blockno: int) -> bytes:
        with ks.bread(blockno) as bh:
            return bh.data.tobytes()  # type: ignore[union-attr]
    return read


def run_journal_demo(args: argparse.Namespace) -> int:
    args.dir.mkdir(parents=True, exist_ok=True)
    image = args.dir / "journal.img"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    fs_uuid = uuid.uuid4().bytes
    rng = random.Random(1)

    step(f"image {image}: 64 MiB")
    dev = ImageDevice(image)
    print(f"    O_DIRECT: {'yes' if dev.direct_io else 'no (host refused; buffered + fdatasync)'}")
    ks = KernelServices(dev, cache_blocks=4096, commit_interval=None)
    Journal.format(ks.cache, JOURNAL_START, JOURNAL_LEN, fs_uuid)
    j, _ = ks.open_journal(JOURNAL_START, JOURNAL_LEN, fs_uuid)

    step("2,000 operations through the journal, fsync every 100")
    t0 = time.perf_counter()
    for _ in range(20):
        transact(j, ks, rng, 100)
        j.force_commit()
    elapsed = time.perf_counter() - t0
    js, cs = j.statistics(), ks.cache.statistics()
    print(f"    {2000 / elapsed:,.0f} operations/s; {js.commits} commits, "
          f"{js.blocks_logged} blocks logged, {js.checkpoints} checkpoints")
    print(f"    buffer cache: {cs.hit_rate:.1%} hits, {cs.reads} device reads, "
          f"{cs.writes} device writes")
    expected = counters(through_cache(ks))
    ks.close()
    with ImageDevice(image, read_only=True) as check:
        home = counters(check.read_block)
    print(f"    clean unmount: {home} increments home, {expected} expected")
    if home != expected:
        raise UserError("the clean unmount lost work")

    step("power cut: 300 more operations, fsync after 200 and after 300, "
         "the plug pulled during the second fsync")
    rec = RecordingDevice(RamDevice.from_bytes(image.read_bytes()))
    ks = KernelServices(rec, cache_blocks=4096, commit_interval=None)
    j, _ = ks.open_journal(JOURNAL_START, JOURNAL_LEN, fs_uuid)
    transact(j, ks, rng, 200)
    j.force_commit()
    synced = counters(through_cache(ks))
    transact(j, ks, rng, 100)
    j.force_commit()
    everything = counters(through_cache(ks))
    epoch = rec.epochs - 1  # after the commit's first flush, before its last
    flying = rec.in_flight(epoch)
    keep = [i for i in range(len(flying)) if rng.random() < 0.5]
    crashed = rec.crash_device(epoch, keep)
    print(f"    {rec.epochs} flushes, {len(rec.writes)} block writes; the crash kept "
          f"{len(keep)} of the {len(flying)} writes in flight (the commit block)")

    step("mount after the crash: journal recovery")
    ks2 = KernelServices(crashed, cache_blocks=4096, commit_interval=None)
    _, report = ks2.open_journal(JOURNAL_START, JOURNAL_LEN, fs_uuid)
    got = counters(through_cache(ks2))
    ks2.close()
    print(f"    replayed {report.transactions} transactions ({report.blocks_replayed} blocks); "
          f"the scan stopped at: {report.stop_reason}")
    print(f"    {got} increments on disk: {synced} were fsync'd before the crash, "
          f"{everything} would be with the interrupted fsync")
    os.unlink(image)
    if got not in (synced, everything):
        raise UserError("recovery did not give the state of a committed prefix")
    print("    all-or-nothing: " + ("the interrupted fsync landed whole" if got == everything
                                     else "the interrupted fsync left no trace"))
    return 0

