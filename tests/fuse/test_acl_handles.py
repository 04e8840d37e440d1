"""POSIX ACLs and file handles through a real mount (issue 22 §4).

ACLs are checked against the host's ext4 (/tmp): the same setfacl/chmod/create script
runs in both places and must print the same ACLs and modes. Before: setfacl answered
"Operation not supported". Handles must outlive the kernel's cache: before, once the
inode was evicted ``open_by_handle_at`` answered ESTALE.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import Mount, mounted
from .test_linux_semantics import as_user

ACL_SCRIPT = r"""
set -e
umask 077
mkdir d
setfacl -d -m u:1000:rwx,g:1002:rx d
python3 -c "import os; os.close(os.open('d/new', os.O_CREAT | os.O_WRONLY, 0o666)); os.mkdir('d/sub', 0o777)"
for p in d d/new d/sub; do echo "== $p $(stat -c %a $p)"; getfacl -cEn $p; getfacl -cEnd $p; done
umask 022
echo secret > f
chmod 640 f
setfacl -m u:1000:rw f
echo "== f $(stat -c %a f)"; getfacl -cEn f
chmod 600 f
echo "== f $(stat -c %a f)"; getfacl -cn f
setfacl -m u:1000:rw f
setfacl -b f
echo "== f $(stat -c %a f)"; getfacl -cEn f
setfacl -m u:1000:r,m::rw f
echo "== f $(stat -c %a f)"; getfacl -cEn f
"""


def run_script(where: Path) -> str:
    done = subprocess.run(["bash", "-c", ACL_SCRIPT], cwd=where, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_acls_answer_as_ext4_does_and_the_kernel_enforces_them(mnt: Mount, tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    ref.mkdir()
    expected = run_script(ref)
    assert "user:1000:rwx" in expected  # the reference really has ACLs
    box = mnt.path / "box"
    box.mkdir()
    assert run_script(box) == expected

    # the kernel enforces them: user 1000 by its ACL entry, 1001 by "other"
    assert as_user(box, "print(open('f').read().strip())", uid=1000) == "secret"
    assert as_user(box, """
        try:
            open("f")
        except PermissionError:
            print("refused")
    """, uid=1001) == "refused"
    # d/new inherited user:1000:rwx (masked to rw-) from d's default ACL
    box.chmod(0o755)
    subprocess.run(["setfacl", "-m", "u:1000:x", box / "d"], check=True)
    assert as_user(box, "open('d/new', 'w').write('mine'); print('ok')", uid=1000) == "ok"

    before = all_acls(box)
    mnt.remount()  # on disk, not only in the kernel's cache
    assert all_acls(box) == before


def all_acls(where: Path) -> str:
    done = subprocess.run(["getfacl", "-pnR", "."], cwd=where, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout


# -- file handles --------------------------------------------------------------------

libc = ctypes.CDLL(None, use_errno=True)
HANDLE_BYTES = 128


class FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * HANDLE_BYTES)]


def name_to_handle(path: Path) -> FileHandle:
    fh, mount_id = FileHandle(HANDLE_BYTES, 0), ctypes.c_int()
    if libc.name_to_handle_at(-100, os.fsencode(path), ctypes.byref(fh),
                              ctypes.byref(mount_id), 0):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))
    return fh


def open_by_handle(mount: Path, fh: FileHandle, flags: int = os.O_RDONLY) -> int:
    mfd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = libc.open_by_handle_at(mfd, ctypes.byref(fh), flags)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return fd
    finally:
        os.close(mfd)


def evict_inodes() -> None:
    """The kernel drops unused dentries and inodes (FUSE: FORGET reaches the daemon)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("2")


def test_a_handle_outlives_the_kernels_cache_and_goes_stale_with_its_inode(tmp_path: Path) -> None:
    with mounted(Mount(tmp_path, size="64M", mkfs=("--inodes", "32"))) as mnt:
        handles_through(mnt)
    mnt.fsck()


def handles_through(mnt: Mount) -> None:
    """A small inode table: the allocator comes round to a freed number soon."""
    d = mnt.path / "dir"
    d.mkdir()
    (d / "f").write_text("kept")
    (d / "gone").write_text("x")
    handles = {name: name_to_handle(p) for name, p in
               [("dir", d), ("f", d / "f"), ("gone", d / "gone")]}
    old_ino = (d / "gone").stat().st_ino
    (d / "gone").unlink()
    evict_inodes()

    fd = open_by_handle(mnt.path, handles["f"])
    try:
        assert os.read(fd, 100) == b"kept"
    finally:
        os.close(fd)
    fd = open_by_handle(mnt.path, handles["dir"], os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert sorted(os.listdir(fd)) == ["f"]
    finally:
        os.close(fd)

    # the freed inode's number, used again, is another file: the old handle is stale
    reused = None
    for i in range(1000):
        p = d / f"new{i}"
        try:
            p.write_text("new")
        except OSError as e:  # the table is full: the number was never given again
            assert e.errno == errno.ENOSPC
            break
        if p.stat().st_ino == old_ino:
            reused = p
            break
    with pytest.raises(OSError) as stale:
        open_by_handle(mnt.path, handles["gone"])
    assert stale.value.errno == errno.ESTALE
    evict_inodes()
    with pytest.raises(OSError) as stale:
        open_by_handle(mnt.path, handles["gone"])
    assert stale.value.errno == errno.ESTALE
    assert reused is not None, "xv6 filled its inode table without the freed number"
