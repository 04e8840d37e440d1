"""A close costs no FLUSH round trip when the file system keeps the API's no-op
``flush``: the runtime answers the kernel's first FLUSH with ENOSYS and the kernel
sends no more; what was written through the page cache still reaches the disk."""

from __future__ import annotations

from pathlib import Path

from .conftest import Mount, operations


def test_closes_send_no_flush_and_lose_nothing(tmp_path: Path) -> None:
    m = Mount(tmp_path)
    m.mount()
    try:
        for i in range(20):
            (m.path / f"f{i}").write_bytes(bytes([i]) * (5000 + i))
        ops = operations(m)
        assert ops["release"]["calls"] >= 20
        assert ops.get("flush", {"calls": 0})["calls"] == 0, ops.get("flush")
    finally:
        m.umount()
    m.fsck()
    m.mount()
    try:
        for i in range(20):
            assert (m.path / f"f{i}").read_bytes() == bytes([i]) * (5000 + i)
    finally:
        m.umount()
