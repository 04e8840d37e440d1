"""The image device: O_DIRECT, its tmpfs fallback, vectored I/O, ranges, locking."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bento_user.blockdev import BlockRangeError, ImageDevice, aligned_blocks
from tests.conftest import make_image

BS = 4096


def fd_flags(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise AssertionError("no flags line in fdinfo")


def test_image_on_disk_uses_o_direct(disk_dir: Path) -> None:
    with ImageDevice(make_image(disk_dir / "a.img", 64)) as dev:
        assert dev.direct_io
        assert fd_flags(dev.fd) & os.O_DIRECT
        assert dev.nblocks == 64 and dev.block_size == BS


def test_tmpfs_image_works_with_whatever_io_the_host_allows(tmpfs_dir: Path) -> None:
    # tmpfs refused O_DIRECT until Linux 6.6; newer kernels accept it. Either way the
    # device must work and report truthfully which mode it is in.
    with ImageDevice(make_image(tmpfs_dir / "a.img", 16)) as dev:
        assert dev.direct_io == bool(fd_flags(dev.fd) & os.O_DIRECT)
        block = bytes(range(256)) * 16
        dev.write_blocks(3, [block])
        dev.flush()
        assert dev.read_block(3) == block


@pytest.mark.parametrize("refused_at", ["open", "io"])
def test_refused_o_direct_falls_back_to_buffered_io_and_says_so(
    disk_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
    refused_at: str,
) -> None:
    """A host that refuses O_DIRECT (tmpfs before 6.6, some FUSE file systems) answers
    EINVAL, at open or at the first transfer; here the refusal is simulated."""
    real_open, real_preadv = os.open, os.preadv
    direct_fds: set[int] = set()

    def fake_open(path, flags, *args):  # type: ignore[no-untyped-def]
        if flags & os.O_DIRECT and refused_at == "open":
            raise OSError(errno.EINVAL, "Invalid argument")
        fd = real_open(path, flags, *args)
        (direct_fds.add if flags & os.O_DIRECT else direct_fds.discard)(fd)
        return fd

    def fake_preadv(fd, bufs, offset):  # type: ignore[no-untyped-def]
        if fd in direct_fds:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_preadv(fd, bufs, offset)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "preadv", fake_preadv)
    with caplog.at_level(logging.WARNING):
        dev = ImageDevice(make_image(disk_dir / "a.img", 16))
    with dev:
        assert not dev.direct_io
        assert not fd_flags(dev.fd) & os.O_DIRECT
        assert "refuses O_DIRECT" in caplog.text
        block = bytes(range(256)) * 16
        dev.write_blocks(3, [block])
        dev.flush()
        assert dev.read_block(3) == block


def test_vectored_write_and_read_are_single_calls(disk_dir: Path) -> None:
    with ImageDevice(make_image(disk_dir / "a.img", 64)) as dev:
        slots = aligned_blocks(5, BS)
        for i in range(5):
            slots[i] = i + 1
        # three scattered buffers: 1 block, 3 blocks, 1 block -> blocks 10..14
        dev.write_blocks(10, [slots[0], slots[1:4], slots[4]])
        st = dev.statistics()
        assert (st.writes, st.blocks_written) == (1, 5)
        out = aligned_blocks(5, BS)
        dev.read_blocks(10, [out[3:5], out[0:3]])
        assert dev.statistics().reads == 1
        assert [int(out[i, 0]) for i in range(5)] == [3, 4, 5, 1, 2]
    raw = (disk_dir / "a.img").read_bytes()
    assert raw[10 * BS] == 1 and raw[14 * BS + BS - 1] == 5 and raw[9 * BS] == 0


def test_unaligned_buffers_are_bounced(disk_dir: Path) -> None:
    with ImageDevice(make_image(disk_dir / "a.img", 8)) as dev:
        data = bytearray(os.urandom(2 * BS + 1))[1:]  # almost surely not page-aligned
        dev.write_blocks(2, [bytes(data)])
        back = bytearray(2 * BS)
        dev.read_blocks(2, [back])
        assert back == data


@pytest.mark.parametrize("start,count", [(64, 1), (63, 2), (-1, 1), (1000, 1)])
def test_out_of_range_is_refused_clearly(disk_dir: Path, start: int, count: int) -> None:
    with ImageDevice(make_image(disk_dir / "a.img", 64)) as dev:
        buf = aligned_blocks(count, BS)
        for call in (dev.read_blocks, dev.write_blocks):
            with pytest.raises(BlockRangeError) as e:
                call(start, [buf])
            assert e.value.errno == errno.EINVAL
            assert "outside the device" in str(e.value) and "0..63" in str(e.value)
        assert dev.statistics().reads == dev.statistics().writes == 0


def test_partial_block_buffers_are_refused(disk_dir: Path) -> None:
    with ImageDevice(make_image(disk_dir / "a.img", 4)) as dev:
        with pytest.raises(ValueError, match="whole number"):
            dev.write_blocks(0, [b"x" * 100])


def test_second_opener_is_refused(disk_dir: Path) -> None:
    path = make_image(disk_dir / "a.img", 8)
    with ImageDevice(path):
        with pytest.raises(OSError) as e:
            ImageDevice(path)
        assert e.value.errno == errno.EBUSY and "in use" in str(e.value)
        code = (
            "import sys\n"
            "from bento_user.blockdev import ImageDevice\n"
            "try:\n"
            f"    ImageDevice({str(path)!r})\n"
            "except OSError as e:\n"
            "    sys.exit(e.errno)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
        assert proc.returncode == errno.EBUSY
    ImageDevice(path).close()  # free again once the first one closed


def test_read_only_device_refuses_writes(disk_dir: Path) -> None:
    with ImageDevice(make_image(disk_dir / "a.img", 4), read_only=True) as dev:
        with pytest.raises(OSError) as e:
            dev.write_blocks(0, [aligned_blocks(1, BS)])
        assert e.value.errno == errno.EROFS


def test_missing_image_and_closed_device(disk_dir: Path) -> None:
    with pytest.raises(OSError) as e:
        ImageDevice(disk_dir / "nope.img")
    assert e.value.errno == errno.ENOENT and "nope.img" in str(e.value)
    dev = ImageDevice(make_image(disk_dir / "a.img", 4))
    dev.close()
    with pytest.raises(OSError) as e2:
        dev.read_block(0)
    assert e2.value.errno == errno.EBADF


@pytest.mark.root
def test_loop_device_size_comes_from_the_kernel(disk_dir: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup to attach a loop device")
    path = make_image(disk_dir / "loop.img", 300)
    try:
        loop = subprocess.run(["losetup", "--find", "--show", str(path)], check=True,
                              capture_output=True, text=True).stdout.strip()
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot attach a loop device here: {e.stderr.strip()}")
    try:
        with ImageDevice(loop) as dev:
            assert dev.is_block_device and dev.nblocks == 300
            block = np.full(BS, 7, dtype=np.uint8)
            dev.write_blocks(299, [block])
            dev.flush()
            with pytest.raises(OSError) as e:
                ImageDevice(loop)
            assert e.value.errno == errno.EBUSY
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
    assert (path.read_bytes()[299 * BS]) == 7
