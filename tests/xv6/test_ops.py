"""xv6 operations at the format's edges, through the direct runtime."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from bento_user.api import RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE, Request
from filesystems.xv6._format import NDIRECT, PTRS_PER_BLOCK

from .conftest import Mounted, check, fresh_device, remount
from bento_user.runtime.direct import DirectRuntime
from filesystems.xv6 import Xv6

BS = 4096
ALICE = Request(uid=1000, gid=1000, umask=0o022)
BOB = Request(uid=1001, gid=1001, umask=0o022)


def errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


@pytest.mark.parametrize("lblk", [0, NDIRECT - 1, NDIRECT, NDIRECT + PTRS_PER_BLOCK - 1,
                                  NDIRECT + PTRS_PER_BLOCK, NDIRECT + PTRS_PER_BLOCK + PTRS_PER_BLOCK**2 - 1,
                                  NDIRECT + PTRS_PER_BLOCK + PTRS_PER_BLOCK**2])
def test_indirect_level_boundaries(mounted: Mounted, lblk: int) -> None:
    c = mounted.c
    fd = c.open("/f", os.O_CREAT | os.O_RDWR)
    for b in (lblk - 1, lblk, lblk + 1):
        if b >= 0:
            c.pwrite(fd, b.to_bytes(8, "little") * 512, b * BS)
    c.close(fd)
    mounted.reopen()
    fd = mounted.c.open("/f")
    for b in (lblk - 1, lblk, lblk + 1):
        if b >= 0:
            assert mounted.c.pread(fd, BS, b * BS) == b.to_bytes(8, "little") * 512
    mounted.c.close(fd)
    mounted.c.truncate("/f", max(0, lblk) * BS + 5)
    assert mounted.c.pread(mounted.c.open("/f"), BS, lblk * BS) == (lblk.to_bytes(8, "little") * 512)[:5]
    mounted.c.close_all()
    mounted.c.truncate("/f", 0)
    assert mounted.c.stat("/f").blocks == 0


def test_sparse_file_past_4_gib(mounted: Mounted) -> None:
    c = mounted.c
    fd = c.open("/sparse", os.O_CREAT | os.O_RDWR)
    at = 5 * 2**30 + 123
    c.pwrite(fd, b"tail", at)
    assert c.fstat(fd).size == at + 4
    assert c.pread(fd, 8, at - 4) == b"\0\0\0\0tail"
    assert c.pread(fd, 100, 2**32) == bytes(100)
    assert c.fstat(fd).blocks == 4 * 8  # data + triple-indirect chain (3 blocks)
    c.close(fd)
    mounted.reopen()
    assert mounted.c.stat("/sparse").size == at + 4


def test_name_length_limits(mounted: Mounted) -> None:
    c = mounted.c
    c.write_bytes(b"/" + b"n" * 255, b"x")
    assert c.read_bytes(b"/" + b"n" * 255) == b"x"
    assert errno_of(c.write_bytes, b"/" + b"n" * 256, b"x") == errno.ENAMETOOLONG
    assert errno_of(c.mkdir, b"/" + b"d" * 256) == errno.ENAMETOOLONG
    assert errno_of(c.stat, b"/" + b"d" * 256) == errno.ENAMETOOLONG
    odd = b"/\xff\xfe caf\xc3\xa9\n\t"
    c.mkdir(odd)
    assert odd[1:] in c.listdir("/")


def test_hundred_thousand_entry_directory() -> None:
    mounted = Mounted(fresh_device(65536, ninodes=110_000))
    c = mounted.c
    c.mkdir("/big")
    rt = mounted.rt
    big = c.stat("/big").ino
    for i in range(100_000):
        rt.call("mknod", Request(), big, b"entry-%06d" % i, stat.S_IFREG | 0o644, 0)
    names = c.listdir("/big")
    assert len(names) == 100_000 and len(set(names)) == 100_000
    assert c.stat("/big/entry-099999").nlink == 1
    for i in range(0, 100_000, 2):
        rt.call("unlink", Request(), big, b"entry-%06d" % i)
    mounted.reopen()
    assert len(mounted.c.listdir("/big")) == 50_000
    assert errno_of(mounted.c.stat, "/big/entry-000000") == errno.ENOENT
    mounted.rt.close()
    check(mounted.dev)


def test_readdir_returns_unchanged_names_once_while_others_change(mounted: Mounted) -> None:
    c, rt = mounted.c, mounted.rt
    c.mkdir("/d")
    for i in range(600):
        c.write_bytes(f"/d/keep{i}", b"")
        c.write_bytes(f"/d/churn{i}", b"")
    ino = c.stat("/d").ino
    fh = rt.call("opendir", Request(), ino)
    seen: list[bytes] = []
    offset, step = 0, 0
    while batch := list(rt.call("readdir", fh, offset))[:7]:
        seen += [e.name for e in batch]
        offset = batch[-1].next_offset
        c.unlink(f"/d/churn{step}")
        c.write_bytes(f"/d/new{step}", b"")
        step += 1
    rt.call("releasedir", fh)
    keeps = [n for n in seen if n.startswith(b"keep")]
    assert sorted(keeps) == sorted(f"keep{i}".encode() for i in range(600))


def test_unlinked_open_file_lives_until_release_and_survives_a_crash(mounted: Mounted) -> None:
    c = mounted.c
    fd = c.open("/tmpfile", os.O_CREAT | os.O_RDWR)
    c.write(fd, b"data" * 5000)
    c.unlink("/tmpfile")
    assert c.pread(fd, 4, 0) == b"data"
    c.fsync(fd)
    crashed = remount(mounted.dev)
    free_before = c.statvfs().blocks_free
    c.close(fd)
    assert c.statvfs().blocks_free > free_before
    # the crash copy: fsck sees the orphan; mounting reclaims it
    rt = DirectRuntime.open(Xv6(), crashed, commit_interval=None)
    rt.close()
    report = check(crashed)
    assert report.counts["inodes"] == 1


def test_rename_forms(mounted: Mounted) -> None:
    c = mounted.c
    c.mkdir("/a"); c.mkdir("/b"); c.mkdir("/a/sub")
    c.write_bytes("/a/x", b"x"); c.write_bytes("/b/y", b"y")
    c.rename("/a/x", "/b/y")                        # replace
    assert c.read_bytes("/b/y") == b"x" and not c.exists("/a/x")
    c.write_bytes("/a/x", b"x2")
    assert errno_of(c.rename, "/a/x", "/b/y", RENAME_NOREPLACE) == errno.EEXIST
    c.rename("/a/x", "/b/y", RENAME_EXCHANGE)
    assert c.read_bytes("/a/x") == b"x" and c.read_bytes("/b/y") == b"x2"
    assert errno_of(c.rename, "/a", "/a/sub/inside") == errno.EINVAL
    c.rename("/a/sub", "/b/sub")                     # directory move: '..' and nlinks
    assert c.stat("/a").nlink == 2 and c.stat("/b").nlink == 3
    assert c.stat("/b/sub/..").ino == c.stat("/b").ino
    c.mkdir("/b/sub/deep")
    assert errno_of(c.rename, "/a", "/b/sub") == errno.ENOTEMPTY
    assert errno_of(c.rename, "/a/x", "/b") == errno.EISDIR
    assert errno_of(c.rename, "/b", "/a/x") == errno.ENOTDIR
    c.rename("/b/sub", "/a", RENAME_EXCHANGE)       # swap a dir with a dir
    assert c.exists("/a/deep") and c.exists("/b/sub/x")


def test_hard_links_and_link_counts(mounted: Mounted) -> None:
    c = mounted.c
    c.write_bytes("/f", b"1")
    c.link("/f", "/g")
    assert c.stat("/f").nlink == 2
    c.mkdir("/d")
    assert errno_of(c.link, "/d", "/e") == errno.EPERM
    assert errno_of(c.link, "/f", "/g") == errno.EEXIST
    c.unlink("/f")
    assert c.stat("/g").nlink == 1 and c.read_bytes("/g") == b"1"


def test_special_files_and_symlinks(mounted: Mounted) -> None:
    c = mounted.c
    c.mknod("/fifo", stat.S_IFIFO | 0o644)
    c.mknod("/sock", stat.S_IFSOCK | 0o644)
    c.mknod("/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert stat.S_ISCHR(c.stat("/null").mode) and c.stat("/null").rdev == os.makedev(1, 3)
    c.symlink("a" * 4095, "/long")
    assert c.readlink("/long") == b"a" * 4095
    assert errno_of(c.symlink, "a" * 4096, "/toolong") == errno.ENAMETOOLONG
    c.symlink("loop", "/loop")
    assert errno_of(c.stat, "/loop") == errno.ELOOP
    assert errno_of(mounted.rt.client(ALICE).mknod, "/dev", stat.S_IFBLK | 0o600, 1) == errno.EACCES


def test_permissions_like_linux(mounted: Mounted) -> None:
    root, alice, bob = mounted.c, mounted.rt.client(ALICE), mounted.rt.client(BOB)
    root.mkdir("/tmp", 0o777)
    root.chmod("/tmp", 0o1777)
    alice.write_bytes("/tmp/a", b"secret", 0o600)
    assert errno_of(bob.read_bytes, "/tmp/a") == errno.EACCES
    assert errno_of(bob.unlink, "/tmp/a") == errno.EPERM          # sticky
    assert errno_of(bob.chmod, "/tmp/a", 0o666) == errno.EPERM
    assert errno_of(alice.chown, "/tmp/a", 1001, -1) == errno.EPERM
    root.chmod("/tmp/a", 0o6755)
    root.chown("/tmp/a", 1000, 1000)
    assert root.stat("/tmp/a").mode & 0o7777 == 0o0755              # chown clears setuid/setgid
    root.chmod("/tmp/a", 0o4777)
    fd = bob.open("/tmp/a", os.O_WRONLY)
    bob.write(fd, b"x")
    bob.close(fd)
    assert root.stat("/tmp/a").mode & 0o7777 == 0o0777              # unprivileged write too
    root.chmod("/tmp/a", 0o6766)  # setgid without group x: kept only for the file's group
    fd = bob.open("/tmp/a", os.O_WRONLY)
    bob.write(fd, b"y")
    bob.close(fd)
    assert root.stat("/tmp/a").mode & 0o7777 == 0o0766              # bob is not in group 1000
    root.mkdir("/shared", 0o777)
    root.chown("/shared", 0, 50)
    root.chmod("/shared", 0o2777)
    alice.mkdir("/shared/sub")
    alice.write_bytes("/shared/f", b"")
    assert root.stat("/shared/sub").gid == 50 and root.stat("/shared/sub").mode & stat.S_ISGID
    assert root.stat("/shared/f").gid == 50
    alice.chmod("/shared/f", 0o2644)                                 # not in group 50
    assert root.stat("/shared/f").mode & 0o7777 == 0o644
    assert alice.stat("/shared/f").mode & 0o777 == 0o644             # umask 022 applied
    assert errno_of(alice.utime, "/tmp", (1, 1)) == errno.EPERM
    assert alice.access("/tmp/a", os.R_OK) is True and bob.access("/tmp", os.W_OK) is True


def test_xattrs(mounted: Mounted) -> None:
    c = mounted.c
    c.write_bytes("/f", b"")
    c.setxattr("/f", b"user.a", b"1")
    c.setxattr("/f", b"trusted.b", b"2")
    assert errno_of(c.setxattr, "/f", b"user.a", b"x", XATTR_CREATE) == errno.EEXIST
    assert errno_of(c.setxattr, "/f", b"user.z", b"x", XATTR_REPLACE) == errno.ENODATA
    assert sorted(c.listxattr("/f")) == [b"trusted.b", b"user.a"]
    assert mounted.rt.client(ALICE).listxattr("/f") == [b"user.a"]
    assert errno_of(c.setxattr, "/f", b"other.a", b"1") == errno.EOPNOTSUPP
    c.removexattr("/f", b"user.a")
    assert errno_of(c.getxattr, "/f", b"user.a") == errno.ENODATA
    mounted.reopen()
    assert mounted.c.getxattr("/f", b"trusted.b") == b"2"


def test_xattrs_beyond_one_block_up_to_linux_limits(mounted: Mounted) -> None:
    """XFS takes 300 names and a 60 KiB value on one file; Linux's limits are 64 KiB
    a value and 64 KiB of names. Once all of a file's attributes shared one block."""
    c = mounted.c
    c.write_bytes("/f", b"")
    free = c.statvfs().blocks_free
    names = [b"user.attribute-%03d" % i for i in range(300)]
    for i, name in enumerate(names):
        c.setxattr("/f", name, bytes([i % 256]) * 40)
    big = bytes(range(256)) * 256  # 64 KiB
    c.setxattr("/f", b"user.big", big)
    assert errno_of(c.setxattr, "/f", b"user.bigger", big + b"!") == errno.E2BIG
    assert free - c.statvfs().blocks_free == 1 + -(-(8 + 300 * 62 + 4 + 8 + len(big)) // BS)
    mounted.reopen()
    c = mounted.c
    assert c.getxattr("/f", b"user.big") == big
    assert c.getxattr("/f", names[299]) == bytes([299 % 256]) * 40
    assert sorted(c.listxattr("/f")) == sorted(names + [b"user.big"])
    check(mounted.dev)
    for name in names[10:] + [b"user.big"]:
        c.removexattr("/f", name)                       # back to one block
    assert free - c.statvfs().blocks_free == 1
    assert c.getxattr("/f", names[9]) == bytes([9]) * 40
    long_names = [b"user." + b"n%03d" % i * 50 for i in range(400)]  # 205 bytes each
    with pytest.raises(OSError) as past:
        for name in long_names:
            c.setxattr("/f", name, b"")
    assert past.value.errno == errno.ENOSPC and len(c.listxattr("/f")) < 330
    c.unlink("/f")
    assert c.statvfs().blocks_free == free + 0           # every attribute block freed


def test_statfs_counts_real_blocks_and_inodes(mounted: Mounted) -> None:
    c = mounted.c
    before = c.statvfs()
    c.write_bytes("/f", bytes(40 * BS))
    after = c.statvfs()
    assert before.blocks_free - after.blocks_free == 40 + 1  # data + single-indirect
    assert before.files_free - after.files_free == 1
    c.unlink("/f")
    assert c.statvfs().blocks_free == before.blocks_free


def test_fallocate_of_a_freed_block_reads_zeros(mounted: Mounted) -> None:
    """Found by the ops fuzzer: a block freed by a truncate, then taken again by a
    one-block fallocate after a remount, read back what the old file had written."""
    c = mounted.c
    c.write_bytes("/a", b"secret")
    c.truncate("/a", 0)
    mounted.reopen()
    fd = mounted.c.open("/a", os.O_RDWR)
    mounted.c.fallocate(fd, 0, 0, 1)
    mounted.c.close(fd)
    assert mounted.c.read_bytes("/a") == b"\0"


def test_fallocate_and_o_trunc(mounted: Mounted) -> None:
    c = mounted.c
    fd = c.open("/f", os.O_CREAT | os.O_RDWR)
    c.pwrite(fd, b"abc", 0)
    c.fallocate(fd, 0, 0, 10 * BS)
    assert c.fstat(fd).size == 10 * BS and c.fstat(fd).blocks == 10 * 8
    assert c.pread(fd, 4, 0) == b"abc\0"
    assert errno_of(c.fallocate, fd, 0x20, 0, 1) == errno.EOPNOTSUPP
    c.close(fd)
    c.close(c.open("/f", os.O_WRONLY | os.O_TRUNC))
    assert c.stat("/f").size == 0 and c.stat("/f").blocks == 0


def test_disk_full_gives_enospc_and_frees_again(mounted: Mounted) -> None:
    c = mounted.c
    fd = c.open("/fill", os.O_CREAT | os.O_WRONLY)
    chunk = bytes(1 << 20)
    with pytest.raises(OSError) as e:
        for _ in range(1000):
            c.write(fd, chunk)
    assert e.value.errno == errno.ENOSPC
    c.close(fd)
    assert c.statvfs().blocks_free < 16
    c.unlink("/fill")
    c.write_bytes("/after", bytes(1 << 20))          # freed blocks come back (after a commit)


def test_corrupt_superblock_is_one_clear_error(mounted: Mounted) -> None:
    dev = remount(mounted.dev)
    dev.blocks[1][:8] = 0
    with pytest.raises(OSError) as e:
        DirectRuntime.open(Xv6(), dev)
    assert "not an xv6 v2 file system" in str(e.value)


def test_threads_creating_and_writing_concurrently(mounted: Mounted) -> None:
    from tests.conftest import run_threads
    rt = mounted.rt
    for i in range(4):
        mounted.c.mkdir(f"/t{i}")
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            c = rt.client()
            for k in range(60):
                c.write_bytes(f"/t{i}/f{k}", bytes([i]) * (k * 700))
                if k % 3 == 0:
                    c.rename(f"/t{i}/f{k}", f"/t{(i + 1) % 4}/moved-{i}-{k}")
                if k and k % 5 == 0 and (k - 1) % 3:
                    c.unlink(f"/t{i}/f{k - 1}")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    run_threads(worker, 4)
    assert errors == []
    c = mounted.c
    total = sum(len(c.listdir(f"/t{i}")) for i in range(4))
    assert total == 4 * (60 - 7)
    assert c.read_bytes("/t1/moved-0-3") == bytes([0]) * 2100
