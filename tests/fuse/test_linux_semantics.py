"""Through a real mount, as Linux's own file systems answer (issue 14 §3 and §5): the
file system does not refuse what the kernel already allowed, a truncated file never
shows its old bytes, times before 1970 are times.

Other users are real processes (``subprocess`` with ``user``/``group``/
``extra_groups``) working in a 0777 sandbox; each case fails on the code before the
fix with the errno given in its docstring.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from .conftest import Mount

USER, OTHER, SHARED = 1000, 1001, 1002  # SHARED: a supplementary group of USER
# Other users cannot run this virtualenv's interpreter (it lives under /root); the
# system's can, and the code they run needs nothing but the os module.
SYSTEM_PYTHON = "/usr/bin/python3"


def as_user(cwd: Path, code: str, uid: int = USER, groups: tuple[int, ...] = (SHARED,),
            pass_fds: tuple[int, ...] = ()) -> str:
    """Run ``code`` (Python) as ``uid`` (primary group = uid) in ``cwd``; its stdout."""
    done = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", textwrap.dedent(code)], cwd=cwd, user=uid, group=uid,
        extra_groups=list(groups), pass_fds=pass_fds, capture_output=True, text=True,
        timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def sandbox(mnt: Mount) -> Path:
    box = mnt.path / "sandbox"
    box.mkdir()
    box.chmod(0o777)
    return box


def test_an_owner_may_chown_to_a_supplementary_group(sandbox: Path) -> None:
    """Before: EPERM (FUSE passes no supplementary groups; xv6 checked again)."""
    out = as_user(sandbox, f"""
        import os
        open("f", "w").close()
        os.chown("f", -1, {SHARED})
        print(os.stat("f").st_gid)
    """)
    assert out == str(SHARED)


def test_a_write_by_a_non_owner_clears_setuid_and_succeeds(sandbox: Path) -> None:
    """Before: the write failed with EPERM and the bits stayed."""
    f = sandbox / "s"
    f.write_bytes(b"old")
    os.chown(f, OTHER, OTHER)
    f.chmod(0o6777)
    out = as_user(sandbox, """
        import os
        fd = os.open("s", os.O_WRONLY)
        os.write(fd, b"new")
        os.close(fd)
        print(oct(os.stat("s").st_mode & 0o7777))
    """)
    assert out == oct(0o777)
    assert f.read_bytes() == b"new"


def test_a_non_owner_with_write_permission_may_touch(sandbox: Path) -> None:
    """utimensat(UTIME_NOW, UTIME_NOW). Before: EPERM."""
    f = sandbox / "u"
    f.write_bytes(b"")
    f.chmod(0o666)
    os.utime(f, ns=(10**9, 10**9))
    as_user(sandbox, """
        import os
        os.utime("u")
    """)
    assert f.stat().st_mtime_ns > 10**9


def test_a_setgid_directory_of_a_supplementary_group_takes_new_files(sandbox: Path) -> None:
    """Before: EACCES (the directory is writable by its group, 1002)."""
    d = sandbox / "g"
    d.mkdir()
    os.chown(d, 0, SHARED)
    d.chmod(0o2775)
    out = as_user(sandbox, """
        import os
        open("g/new", "w").close()
        print(os.stat("g/new").st_gid)
    """)
    assert out == str(SHARED)


def test_fsync_after_another_user_unlinked_the_name(sandbox: Path) -> None:
    """Root's open file, unlinked by uid 1000: fsync and fdatasync succeed."""
    fd = os.open(sandbox / "z", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"data")
        as_user(sandbox, """
            import os
            os.unlink("z")
        """)
        os.fsync(fd)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def test_ftruncate_through_a_descriptor_opened_for_writing(sandbox: Path) -> None:
    """uid 1000 truncates through root's O_RDWR descriptor of a 0644 file: the
    descriptor's access was checked at open. Before: EPERM."""
    f = sandbox / "t"
    f.write_bytes(b"x" * 100)
    f.chmod(0o644)
    fd = os.open(f, os.O_RDWR)
    try:
        as_user(sandbox, f"""
            import os
            os.ftruncate({fd}, 0)
        """, pass_fds=(fd,))
    finally:
        os.close(fd)
    assert f.stat().st_size == 0


def test_a_read_only_open_with_o_trunc_truncates(sandbox: Path) -> None:
    """Linux truncates on O_RDONLY|O_TRUNC too. Before: the old bytes came back
    through the read-only descriptor after truncate(4096)."""
    f = sandbox / "a"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"\xab" * 5000)
    os.fdatasync(fd)
    os.close(fd)
    ro = os.open(f, os.O_RDONLY | os.O_TRUNC)
    try:
        assert os.fstat(ro).st_size == 0
        os.truncate(f, 4096)
        assert os.pread(ro, 4096, 0) == bytes(4096)
    finally:
        os.close(ro)


def test_times_before_the_epoch_are_kept(mnt: Mount, sandbox: Path) -> None:
    """-1 ns is a time, not UTIME_NOW. Before: the mount stored now."""
    f = sandbox / "old"
    f.write_bytes(b"")
    os.utime(f, ns=(-1, -1))
    st = f.stat()
    assert (st.st_atime_ns, st.st_mtime_ns) == (-1, -1)
    mnt.remount()
    st = f.stat()
    assert (st.st_atime_ns, st.st_mtime_ns) == (-1, -1)


def test_an_xattr_name_that_is_only_a_prefix_is_invalid(sandbox: Path) -> None:
    """Before: ENOTSUP."""
    f = sandbox / "x"
    f.write_bytes(b"")
    with pytest.raises(OSError) as e:
        os.setxattr(f, "user.", b"v")
    assert e.value.errno == errno.EINVAL


def test_xattrs_beyond_one_block_as_xfs_takes_them(mnt: Mount, sandbox: Path) -> None:
    """Issue 22 §5. Before: ENOSPC once a file's attributes passed one 4 KiB block,
    which all of them shared."""
    f = sandbox / "x"
    f.write_bytes(b"")
    names = [f"user.name-{i:03d}" for i in range(300)]
    for name in names:
        os.setxattr(f, name, name.encode())
    value = os.urandom(60 * 1024)
    os.setxattr(f, "user.big", value)
    with pytest.raises(OSError) as e:
        os.setxattr(f, "user.too-big", bytes(65537))
    assert e.value.errno == errno.E2BIG
    mnt.remount()
    assert os.getxattr(f, "user.big") == value
    assert sorted(os.listxattr(f)) == sorted(names + ["user.big"])
    assert os.getxattr(f, names[-1]) == names[-1].encode()


def test_permissions_still_hold_for_what_the_kernel_refuses(sandbox: Path) -> None:
    """The kernel's check stays in force: a stranger cannot write a 0644 file, chown
    it, or delete another's file in a sticky directory."""
    f = sandbox / "mine"
    f.write_bytes(b"")
    f.chmod(0o644)
    sticky = sandbox / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "root-file").write_bytes(b"")
    out = as_user(sandbox, """
        import errno, os
        def code(fn, *a):
            try:
                fn(*a)
            except OSError as e:
                return errno.errorcode[e.errno]
            return "ok"
        print(code(os.open, "mine", os.O_WRONLY), code(os.chown, "mine", 1000, 1000),
              code(os.unlink, "tmp/root-file"))
    """, uid=65534, groups=())
    assert out.split() == ["EACCES", "EPERM", "EPERM"]
    assert stat.S_IMODE(f.stat().st_mode) == 0o644


def test_a_stranger_may_touch_a_symlink_and_root_keeps_setuid(sandbox: Path) -> None:
    """lutimes(UTIME_NOW) by uid 1001 on root's symlink (symlinks are 0777): Linux
    allows it (before: EPERM). A write by root to a 6777 file owned by 1001 keeps the
    bits (CAP_FSETID)."""
    (sandbox / "link").symlink_to("d")
    as_user(sandbox, """
        import os
        os.utime("link", follow_symlinks=False)
    """, uid=OTHER, groups=())
    f = sandbox / "s"
    f.write_bytes(b"old")
    os.chown(f, OTHER, OTHER)
    f.chmod(0o6777)
    with open(f, "ab") as out:
        out.write(b"root")
    assert stat.S_IMODE(f.stat().st_mode) == 0o6777


def test_an_exchange_by_another_user_leaves_both_names_usable(sandbox: Path) -> None:
    """renameat2(RENAME_EXCHANGE) of root's file and symlink by uid 1001. Before: the
    kernel's write-back of the cached times (SETATTR mtime+ctime, sent with the
    exchanging caller's credentials) got EPERM, and the next ``cat s`` as root EIO."""
    (sandbox / "a").write_bytes(b"data")
    (sandbox / "s").symlink_to("d")
    as_user(sandbox, """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.renameat2(-100, b"s", -100, b"a", 2):  # AT_FDCWD, RENAME_EXCHANGE
            raise OSError(ctypes.get_errno(), "renameat2")
    """, uid=OTHER, groups=())
    assert (sandbox / "s").read_bytes() == b"data"
    assert (sandbox / "s").read_bytes() == b"data"
    assert os.readlink(sandbox / "a") == "d"


def test_a_time_beyond_the_format_is_clamped_and_leaves_no_trace(mnt: Mount) -> None:
    """Issue 22 §1: ``utime`` of 2**40 seconds answered EIO, and the in-memory inode
    kept the value it could not store, so every later create in the directory
    answered EIO until remount. Now it is clamped to the latest time the API
    carries (i64 ns, 2262-04-11), as ext4 clamps to its range."""
    far = 2**40 * 10**9
    os.utime(mnt.path, ns=(far, far))
    assert os.stat(mnt.path).st_mtime_ns == 2**63 - 1
    (mnt.path / "after").write_text("x")
    os.utime(mnt.path / "after", ns=(-far, -far))
    assert os.stat(mnt.path / "after").st_atime_ns == -(2**63)
    mnt.remount()
    assert os.stat(mnt.path).st_atime_ns == 2**63 - 1  # the create changed the mtime
    assert (mnt.path / "after").read_text() == "x"


def test_an_execute_only_program_runs(mnt: Mount, sandbox: Path) -> None:
    """Issue 22 §2: ``chmod 111`` on a copy of true, run by a stranger: the kernel
    checked execute permission; the exec's open must not ask for read."""
    f = sandbox / "true"
    f.write_bytes(Path("/bin/true").read_bytes())
    f.chmod(0o111)
    stranger = dict(user=65534, group=65534, extra_groups=[], cwd=sandbox,
                    capture_output=True, text=True, timeout=30)
    assert subprocess.run(["./true"], **stranger).returncode == 0  # type: ignore[call-overload]
    read = subprocess.run(["cat", "true"], **stranger)  # type: ignore[call-overload]
    assert read.returncode != 0 and "Permission denied" in read.stderr
