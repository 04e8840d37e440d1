"""The runtime counts the kernel's references for a file system that overrides
``evict`` (tiny): an unlinked inode is freed at the last forget or release, and
not before, across live upgrades too; a mount that did not count refuses an upgrade
that brings ``evict`` in."""

from __future__ import annotations

import os

import pytest

from bento_user.api import ROOT_REQUEST, Attr, FileHandle, Filesystem, InodeNo
from bento_user.runtime import loader
from bento_user.runtime.direct import DirectRuntime
from bento_user.runtime.references import References
from bento_user.runtime.upgrade import UpgradeError
from filesystems.tiny import Tiny
from fuzz.target import Target


def attr(ino: int) -> Attr:
    return Attr(InodeNo(ino), 0o100644, 1, 0, 0, 0, 0, 0, 0, 0)


def test_lookups_and_handles_both_hold_an_inode() -> None:
    refs = References()
    assert refs.after("lookup", (), attr(5)) == []
    assert refs.after("create", (), (attr(6), FileHandle(1))) == []
    assert refs.after("open", (None, 5, os.O_RDONLY), FileHandle(2)) == []
    assert refs.after("opendir", (None, 5), FileHandle(2)) == []  # its own kind of handle
    assert (refs.held(5), refs.held(6)) == (3, 2)
    assert refs.after("forget", ([(5, 1), (6, 1)],), None) == []
    assert refs.after("release", (FileHandle(1),), None) == [6]
    assert refs.after("release", (FileHandle(2),), None) == []
    assert refs.after("releasedir", (FileHandle(2),), None) == [5]
    assert refs.after("forget", ([(5, 1)],), None) == []  # never counted: no second evict
    assert refs.after("release", (FileHandle(9),), None) == []


def tiny_runtime(cls: type[Filesystem] = Tiny) -> tuple[Target, DirectRuntime]:
    target = Target.load("tiny")
    device = target.fresh_device(4096)
    return target, DirectRuntime.open(cls(), device, commit_interval=None)


def test_an_unlinked_inode_lives_until_its_last_reference_across_an_upgrade() -> None:
    target, rt = tiny_runtime()
    c = rt.client()
    c.write_bytes("/open", b"kept" * 3000)
    c.write_bytes("/looked-up", b"x")
    fd = c.open("/open", os.O_RDWR)
    held = rt.call("lookup", ROOT_REQUEST, 1, b"looked-up")
    free = c.statvfs().files_free
    c.unlink("/open")
    c.unlink("/looked-up")
    assert c.statvfs().files_free == free  # both still held: nothing freed

    rt.upgrade(loader.load("tiny", fresh=True).cls)
    assert c.pread(fd, 4, 0) == b"kept"
    c.pwrite(fd, b"more", 12000)
    rt.call("forget", [(held.ino, 1)])
    assert c.statvfs().files_free == free + 1  # the last lookup went
    blocks = c.statvfs().blocks_free
    c.close(fd)
    assert c.statvfs().files_free == free + 2
    assert c.statvfs().blocks_free == blocks + 3  # its data blocks (12,004 bytes) too
    device = rt.ks.device
    rt.close()
    assert target.fsck(device.image()) == []


class NotCounting(Tiny):
    """tiny as a file system that counts for itself would be: no ``evict``."""

    evict = Filesystem.evict  # type: ignore[assignment]


def test_an_upgrade_cannot_bring_evict_to_a_mount_that_did_not_count() -> None:
    _, rt = tiny_runtime(NotCounting)
    assert rt.dispatch.references is None
    with pytest.raises(UpgradeError, match="counted from the mount on; remount"):
        rt.upgrade(Tiny)
    assert type(rt.fs) is NotCounting
    rt.close()
