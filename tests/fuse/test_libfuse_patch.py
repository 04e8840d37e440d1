"""third_party/libfuse's patch: the mount negotiates FUSE_HANDLE_KILLPRIV_V2, so the
kernel asks for ``security.capability`` once per inode instead of before every
write — and setuid still goes when someone other than root writes, also after the
kernel stopped asking. The first and last test fail on Debian's libfuse 3.14, which
does not negotiate it (there every write costs a GETXATTR round trip); the setuid
test guards what the flag hands to the file system, and passes on both."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from .conftest import Mount, operations
from .test_linux_semantics import OTHER, SYSTEM_PYTHON


def getxattrs(m: Mount) -> int:
    return int(operations(m).get("getxattr", {}).get("calls", 0))


def test_writes_do_not_each_ask_for_security_capability(mnt: Mount) -> None:
    f = mnt.path / "f"
    fd = os.open(f, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"first")
        before = getxattrs(mnt)
        for i in range(20):
            os.pwrite(fd, b"x" * 100, 4096 * i)
    finally:
        os.close(fd)
    assert getxattrs(mnt) - before == 0, "a GETXATTR per write: KILLPRIV_V2 not negotiated"


def test_setuid_still_goes_when_the_kernel_stopped_asking(mnt: Mount) -> None:
    """A stranger writes (the kernel checks once, then marks the inode), root makes
    the file setuid, the stranger writes again through the same descriptor; then
    an O_TRUNC open by the stranger, which the kernel leaves to the file system."""
    box = mnt.path / "box"
    box.mkdir()
    box.chmod(0o777)  # the stranger reaches it by its relative name (tmp_path is 0700)
    f = box / "s"
    f.write_bytes(b"old")
    os.chown(f, OTHER, OTHER)
    f.chmod(0o666)
    script = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.write(fd, b"one")
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
os.write(fd, b"two")
os.close(fd)
"""
    with subprocess.Popen([SYSTEM_PYTHON, "-I", "-c", script, "s"], cwd=box,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          user=OTHER, group=OTHER, extra_groups=[]) as child:
        assert child.stdout is not None and child.stdin is not None
        try:
            assert child.stdout.readline() == "ready\n"
            os.chmod(f, 0o6777)
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.wait(30) == 0
        finally:
            child.kill()
    assert stat.S_IMODE(f.stat().st_mode) == 0o777
    assert f.read_bytes() == b"onetwo"  # "old" overwritten from offset 0, then on
    os.chmod(f, 0o6777)
    truncate = "import os; os.close(os.open('s', os.O_WRONLY | os.O_TRUNC))"
    done = subprocess.run([SYSTEM_PYTHON, "-I", "-c", truncate], cwd=box, user=OTHER,
                          group=OTHER, extra_groups=[], timeout=30)
    assert done.returncode == 0
    assert stat.S_IMODE(f.stat().st_mode) == 0o777
    assert f.read_bytes() == b""


def test_the_mount_runs_the_patched_libfuse(mnt: Mount) -> None:
    """pyfuse3 is linked to the build in .venv/libfuse (its run path), not Debian's."""
    maps = Path(f"/proc/{mnt.pid()}/maps").read_text()
    libs = {line.split()[-1] for line in maps.splitlines() if "libfuse3.so" in line}
    assert libs and all("/.venv/libfuse/" in lib for lib in libs), libs
