"""tiny's checker on a damaged tree: a directory entry that names the root makes a
cycle, which fsck must report and walk once (the image fuzzer found it looping)."""

from __future__ import annotations

import threading

import numpy as np

from bento_user.blockdev import RamDevice
from filesystems.tiny import DIRENT, Tiny, entries
from fuzz.target import Target


def test_a_cycle_in_the_tree_is_reported_not_walked_forever() -> None:
    target = Target.load("tiny")
    dev = target.fresh_device(4096)
    rt = target.open(dev)
    c = rt.client()
    c.mkdir(b"/a")
    c.write_bytes(b"/a/x", b"")
    a = c.stat(b"/a").ino
    rt.close()
    image = np.frombuffer(bytearray(dev.image()), np.uint8)
    block = int(rt.fs.table[a]["addrs"][0])
    slots = entries(image[block * 4096:(block + 1) * 4096])
    slots[0] = (1, 1, b"x".ljust(DIRENT["name"].itemsize, b"\0"))  # /a/x is now the root
    damaged = RamDevice.from_bytes(image.tobytes())
    report: list[object] = []
    checker = threading.Thread(target=lambda: report.append(Tiny.fsck(damaged)), daemon=True)
    checker.start()
    checker.join(timeout=20)
    assert report, "fsck did not finish within 20 s"
    assert any("reached twice" in p for p in report[0].problems)  # type: ignore[attr-defined]
