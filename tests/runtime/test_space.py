"""The space guard's arithmetic and bookkeeping (runtime/space.py), without a mount;
tests/fuse/test_full_disk.py has the behaviour through a real one."""

from __future__ import annotations

from pathlib import Path

from bento_user.runtime.space import MIB, SpaceGuard, bdi_dirty_limit, dirty_threshold


def fake_bdi(tmp_path: Path, fine: int = 10_000) -> Path:
    (tmp_path / "0:99").mkdir()
    (tmp_path / "0:99" / "max_ratio_fine").write_text(f"{fine}\n")
    return tmp_path


def test_a_small_disk_gets_a_sixteenth_of_itself_as_the_dirty_limit(tmp_path: Path) -> None:
    root = fake_bdi(tmp_path)
    limit = bdi_dirty_limit("0:99", 64 * MIB, root=str(root))
    assert 4 * MIB * 0.99 <= limit <= 4 * MIB
    written = int((root / "0:99" / "max_ratio_fine").read_text())
    assert written == 4 * MIB * 1_000_000 // dirty_threshold()


def test_a_large_disk_keeps_the_kernels_limit(tmp_path: Path) -> None:
    root = fake_bdi(tmp_path)
    limit = bdi_dirty_limit("0:99", 1 << 40, root=str(root))
    assert limit == dirty_threshold() * 10_000 // 1_000_000
    assert (root / "0:99" / "max_ratio_fine").read_text().strip() == "10000"


def test_the_reserve_is_kept_only_while_a_cached_writer_is_open() -> None:
    g = SpaceGuard()
    g.arm(4 * MIB)
    assert g.reserve == 6 * MIB and g.low_water == 12 * MIB
    assert not g.wants_direct(13 * MIB) and g.wants_direct(11 * MIB)
    g.opened(fh=1, ino=10, direct=False)   # a cached writer of inode 10
    g.opened(fh=2, ino=11, direct=True)    # a direct writer of inode 11
    assert g.guarding
    assert g.is_write_back(1) and not g.is_write_back(2)
    assert not g.may_allocate(free=6 * MIB, nbytes=4096)
    assert g.may_allocate(free=7 * MIB, nbytes=4096)
    g.opened(fh=3, ino=11, direct=False)   # now inode 11 has cached pages too
    assert g.is_write_back(2)
    g.released(1)
    g.released(3)
    assert not g.guarding and g.may_allocate(free=0, nbytes=4096)
    assert g.refused == 1 and g.direct_opens == 1
