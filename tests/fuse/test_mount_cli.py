"""The ``bento`` mount commands on real mounts: errors, control socket, debugging,
traces, the exception sandbox, a killed daemon."""

from __future__ import annotations

import errno
import json
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BENTO, REPO, Mount, bento, mounted


def one_line_error(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert done.stdout == "" or code == 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0] and "Traceback" not in done.stderr, done.stderr


def test_a_mount_waits_for_the_previous_daemon_to_let_go_of_the_image(tmp_path: Path) -> None:
    """Issue 22 §6: a plain ``umount`` returns before the daemon has committed and
    closed the image, and a mount right after failed "in use" (exit 3). A process
    holding the image's lock for 2 s stands in for that daemon here."""
    m = Mount(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys, time
        f = open({str(m.image)!r}, "rb")
        fcntl.flock(f, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(2)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        started = time.monotonic()
        done = bento("mount", str(m.image), str(m.path), check=False)
        assert done.returncode == 0, done.stderr
        m.mounted = True
        assert "waiting for the previous daemon" in done.stderr
        assert 1.0 < time.monotonic() - started < 30
    finally:
        holder.communicate()
        if m.mounted:
            m.umount()
    m.fsck()


def test_root_gets_dev_and_suid_when_it_asks(tmp_path: Path) -> None:
    """Issue 22 §6. Before: the mount showed nosuid,nodev whatever was asked (libfuse
    mounted through fusermount3 for auto_unmount), and a setuid program ran as its
    caller."""
    m = Mount(tmp_path)
    m.mount("-o", "dev,suid")
    try:
        line = next(line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                    if line.split()[4] == str(m.path))
        flags = line.split()[5].split(",")
        assert "nosuid" not in flags and "nodev" not in flags, line
        shutil.copy("/usr/bin/id", m.path / "id")
        os.chown(m.path / "id", 1000, 1000)
        (m.path / "id").chmod(0o4755)
        out = subprocess.run([str(m.path / "id"), "-u"], capture_output=True, text=True,
                             check=True).stdout
        assert out.strip() == "1000"  # run by root, as its setuid owner
    finally:
        m.umount()
    m.mount()  # the default: nosuid,nodev, and auto_unmount
    try:
        line = next(line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                    if line.split()[4] == str(m.path))
        assert {"nosuid", "nodev"} <= set(line.split()[5].split(","))
    finally:
        m.umount()


def test_mount_errors(tmp_path: Path) -> None:
    m = Mount(tmp_path)
    one_line_error(bento("mount", str(m.image), str(tmp_path / "nope"), check=False), 2,
                   "does not exist")
    one_line_error(bento("mount", str(tmp_path / "none.img"), str(m.path), check=False), 2,
                   "no such image")
    one_line_error(bento("mount", str(m.image), str(m.path), "-o", "bogus", check=False), 2,
                   "unknown mount option")
    one_line_error(bento("mount", str(m.image), str(m.path), "--fs", "no.such:Fs", check=False),
                   2, "cannot import")
    one_line_error(bento("umount", str(m.path), check=False), 1, "no bento mount")
    m.mount()
    try:
        one_line_error(bento("mount", str(m.image), str(m.path), check=False), 3, "busy")
        other = tmp_path / "other"
        other.mkdir()
        one_line_error(bento("mount", str(m.image), str(other), check=False), 3, "in use")
        with open(m.path / "held", "w"):
            one_line_error(bento("umount", str(m.path), check=False), 3, "busy")
    finally:
        m.umount()
    m.fsck()
    corrupt = tmp_path / "corrupt.img"
    shutil.copy(m.image, corrupt)
    with open(corrupt, "r+b") as f:
        f.seek(4096)
        f.write(b"\0" * 4096)  # the superblock
    one_line_error(bento("mount", str(corrupt), str(m.path), check=False), 4, "cannot mount")
    assert not os.path.ismount(m.path)


def test_stat_sync_and_mount_table(mnt: Mount) -> None:
    for i in range(50):
        (mnt.path / f"f{i}").write_bytes(b"x" * 10_000)
    assert len(os.listdir(mnt.path)) == 50
    out = bento("stat", str(mnt.path)).stdout
    assert "create" in out and "buffer cache:" in out and "journal:" in out
    stats = json.loads(bento("stat", str(mnt.path), "--json").stdout)["stats"]
    assert stats["operations"]["create"]["calls"] == 50
    assert stats["operations"]["create"]["p99_us"] > 0
    assert "committed and flushed" in bento("sync", str(mnt.path)).stdout
    table = Path("/proc/self/mounts").read_text()
    line = next(l for l in table.splitlines() if l.split()[1] == str(mnt.path))
    assert line.split()[0] == str(mnt.image) and line.split()[2] == "fuse.bento"
    assert "allow_other" in line and "default_permissions" in line
    st = os.statvfs(mnt.path)
    assert st.f_bsize == 4096 and st.f_blocks > 200_000
    bdi = os.major(os.stat(mnt.path).st_dev), os.minor(os.stat(mnt.path).st_dev)
    assert Path(f"/sys/class/bdi/{bdi[0]}:{bdi[1]}/read_ahead_kb").read_text().strip() == "1024"


def test_stat_on_a_terminal_is_a_table_and_plain_in_a_pipe(mnt: Mount) -> None:
    (mnt.path / "f").write_bytes(b"x" * 10_000)
    tty = subprocess.run(["script", "-qec", f"{BENTO} stat {mnt.path}", "/dev/null"],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="150"))
    assert tty.returncode == 0, tty.stdout
    header = next(line for line in tty.stdout.splitlines() if "operation" in line)
    assert "┃" in header and "p99 µs" in header, tty.stdout       # rich's table
    assert any("│" in line and "create" in line for line in tty.stdout.splitlines())
    piped = bento("stat", str(mnt.path)).stdout
    assert "\x1b" not in piped and "┃" not in piped and "│" not in piped
    assert piped.splitlines()[1].split() == ["operation", "calls", "errors", "p50", "µs", "p90",
                                             "µs", "p99", "µs", "max", "µs", "total", "s"]


@pytest.fixture
def public_mnt() -> Iterator[Mount]:
    """A mount other users can reach (pytest's tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="bento-public-"))
    os.chmod(root, 0o755)
    with mounted(Mount(root)) as m:
        yield m
    m.fsck()
    shutil.rmtree(root)


def test_other_users_and_read_only(public_mnt: Mount) -> None:
    mnt = public_mnt
    (mnt.path / "shared").write_text("for everyone\n")
    os.chmod(mnt.path / "shared", 0o644)
    private = mnt.path / "private"
    private.write_text("root only\n")
    os.chmod(private, 0o600)
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    assert subprocess.run([*as_nobody, "cat", str(mnt.path / "shared")], capture_output=True,
                          text=True).stdout == "for everyone\n"
    denied = subprocess.run([*as_nobody, "cat", str(private)], capture_output=True, text=True)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    mnt.umount()
    mnt.mount("-o", "ro,noatime")
    assert (mnt.path / "shared").read_text() == "for everyone\n"
    with pytest.raises(OSError) as e:
        (mnt.path / "new").write_text("x")
    assert e.value.errno == errno.EROFS


def test_file_system_bug_answers_eio_and_mount_goes_on(tmp_path: Path) -> None:
    m = Mount(tmp_path, fs="tests.fuse.buggy_fs:BuggyXv6")
    m.mount()
    try:
        (m.path / "fine").write_text("ok")
        for _ in range(3):
            with pytest.raises(OSError) as e:
                os.stat(m.path / "boom")
            assert e.value.errno == errno.EIO
        assert (m.path / "fine").read_text() == "ok"
        (m.path / "after").write_text("still serving")
        status = json.loads(bento("stat", str(m.path), "--json").stdout)
        assert status["stats"]["bugs"] >= 1
        log = Path(status["status"]["log"]).read_text()
        assert "ZeroDivisionError: injected bug" in log and "Traceback" in log
    finally:
        m.umount()
    m.fsck()


def test_a_failed_operation_is_undone_and_leaves_no_trace(tmp_path: Path) -> None:
    """Issue 22 §1(b): a mkdir that raises after making its directory answers EIO,
    and then the directory is not there, in memory or on disk: the guard put the
    blocks back and reloaded the file system. Before: "half" existed after the EIO."""
    m = Mount(tmp_path, fs="tests.fuse.buggy_fs:BuggyXv6")
    m.mount()
    try:
        (m.path / "before").write_text("kept")
        with pytest.raises(OSError) as e:
            os.mkdir(m.path / "half")
        assert e.value.errno == errno.EIO
        assert sorted(os.listdir(m.path)) == ["before"]
        os.mkdir(m.path / "half2")
        assert (m.path / "before").read_text() == "kept"
        status = json.loads(bento("stat", str(m.path), "--json").stdout)
        assert status["stats"]["guard"] == {"undone": 1, "read_only": None, "remounted_read_only": False}
    finally:
        m.umount()
    m.fsck()
    m.mount()
    try:
        assert sorted(os.listdir(m.path)) == ["before", "half2"]
    finally:
        m.umount()


def test_sigkill_then_remount_recovers(mnt: Mount) -> None:
    durable = mnt.path / "durable"
    with open(durable, "wb") as f:
        f.write(b"fsynced" * 10_000)
        os.fsync(f.fileno())
    os.mkdir(mnt.path / "dir")
    fd = os.open(mnt.path, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)  # fsyncdir: the new entry is committed too
    os.close(fd)
    for i in range(100):
        (mnt.path / "dir" / f"maybe{i}").write_bytes(b"?" * 3000)  # may or may not survive
    os.kill(mnt.pid(), signal.SIGKILL)
    mnt.mounted = False
    mnt.wait_unmounted()  # auto_unmount: fusermount3 notices the daemon is gone
    mnt.fsck()  # replays the journal in memory: clean
    mnt.mount()
    assert durable.read_bytes() == b"fsynced" * 10_000
    for name in os.listdir(mnt.path / "dir"):
        assert (mnt.path / "dir" / name).read_bytes() in (b"", b"?" * 3000)


def test_sync_1_does_not_reach_the_daemon_but_bento_sync_does(tmp_path: Path) -> None:
    """The README's durability table, lines sync(1) and `bento sync`: Linux sends
    FUSE_SYNCFS only to virtiofs. If this starts failing, the kernel forwards syncfs
    now: use it, and change the table."""
    m = Mount(tmp_path, options=("-o", "commit=3600"))  # no timer commit in between
    m.mount()
    try:
        (m.path / "synced").write_bytes(b"s" * 5000)
        os.sync()
        m.kill_and_remount()
        assert not (m.path / "synced").exists()
        (m.path / "bento-synced").write_bytes(b"b" * 5000)
        os.sync()  # the kernel's cached pages go to the daemon first
        bento("sync", str(m.path))
        m.kill_and_remount()
        assert (m.path / "bento-synced").read_bytes() == b"b" * 5000
    finally:
        m.umount()
    m.fsck()


def test_sigterm_unmounts_cleanly(mnt: Mount) -> None:
    (mnt.path / "a").write_text("kept")
    pid = mnt.pid()
    os.kill(pid, signal.SIGTERM)
    mnt.wait_unmounted()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    mnt.mounted = False
    out = mnt.fsck()
    assert "clean" in out
    mnt.mount()
    assert (mnt.path / "a").read_text() == "kept"


def test_sigusr1_dumps_stacks(mnt: Mount) -> None:
    status = json.loads(bento("stat", str(mnt.path), "--json").stdout)["status"]
    os.kill(status["pid"], signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while "most recent call first" not in Path(status["log"]).read_text():
        assert time.monotonic() < deadline, "no stack dump in the log"
        time.sleep(0.05)


def test_debug_stops_a_request_in_pdb(mnt: Mount) -> None:
    debugger = subprocess.Popen(
        [BENTO, "debug", str(mnt.path), "--on", "mkdir"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    deadline = time.monotonic() + 10
    assert debugger.stderr is not None
    assert "waiting for the next mkdir" in debugger.stderr.readline()
    made = threading.Thread(target=os.mkdir, args=(mnt.path / "debugged",))
    made.start()
    out, _ = debugger.communicate("p name\nwhere\nq\n", timeout=30)
    made.join(timeout=30)
    assert time.monotonic() < deadline + 30
    assert "stopped in mkdir" in out and "b'debugged'" in out and "(bento-pdb)" in out
    assert "_fs.py" in out  # the stop is in the file system's own code
    assert (mnt.path / "debugged").is_dir()
    (mnt.path / "later").write_text("the mount carries on")


def test_trace_then_replay(tmp_path: Path) -> None:
    m = Mount(tmp_path)
    trace, pristine = m.mount_traced()
    try:
        (m.path / "d").mkdir()
        (m.path / "d" / "f").write_bytes(b"data" * 5000)
        os.rename(m.path / "d" / "f", m.path / "g")
        os.symlink("g", m.path / "link")
        os.listdir(m.path)
        with pytest.raises(FileNotFoundError):
            os.stat(m.path / "missing")
        assert (m.path / "g").read_bytes() == b"data" * 5000
    finally:
        m.umount()
    lines = trace.read_text().splitlines()
    ops = {json.loads(line)["op"] for line in lines[1:]}
    assert {"mkdir", "create", "write", "rename", "symlink", "lookup", "readdir"} <= ops
    out = bento("replay", str(trace), str(pristine)).stdout
    assert f"{len(lines) - 1} calls replayed, 0 diverged" in out
    done = subprocess.run(["cmp", str(pristine), str(m.image)], capture_output=True)
    assert done.returncode != 0  # the replay changed the copy, as the mount did its image


@pytest.mark.skipif(not os.path.exists("/sbin/mount.fuse.bento"),
                    reason="mount helper not installed (scripts/setup.sh installs it)")
def test_mount_t_fuse_bento(tmp_path: Path) -> None:
    m = Mount(tmp_path)
    done = subprocess.run(["mount", "-t", "fuse.bento", "-o", "noatime,nodev",
                           str(m.image), str(m.path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    try:
        (m.path / "via-mount").write_text("helper")
    finally:
        bento("umount", str(m.path))
    m.fsck()


@pytest.mark.skipif(not os.path.exists("/sbin/mount.fuse.bento"),
                    reason="mount helper not installed (scripts/setup.sh installs it)")
def test_remount_ro_commits_then_refuses_changes_and_rw_resumes(tmp_path: Path) -> None:
    """Issue 22 §6. Before: ``mount -o remount,ro`` (and ``commit=``) failed as unknown
    options. After remount,ro what was written is on the image (a copy taken then
    shows it), every change is refused by the kernel and by the daemon, and
    remount,rw takes changes again. Before the second fix, a read while read-only
    still updated atime on the image."""
    m = Mount(tmp_path)
    m.mount()
    try:
        (m.path / "before").write_text("written before the remount")
        os.utime(m.path / "before", ns=(1, 2))  # an atime a read must update (relatime)
        done = subprocess.run(["mount", "-o", "remount,ro,commit=2", str(m.path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        line = next(line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                    if line.split()[4] == str(m.path))
        assert "ro" in line.split()[5].split(","), line
        with pytest.raises(OSError) as refused:
            (m.path / "after").write_text("no")
        assert refused.value.errno == errno.EROFS
        copy = tmp_path / "copy.img"
        shutil.copy(m.image, copy)  # the image as a power cut would leave it now
        # a read past the page cache would update atime; read-only, nothing may
        # reach the image, even when the journal commits
        fd = os.open(m.path / "before", os.O_RDONLY | os.O_DIRECT)
        try:
            buf = mmap.mmap(-1, 4096)
            assert os.preadv(fd, [buf], 0) == len("written before the remount")
        finally:
            os.close(fd)
        bento("sync", str(m.path))
        assert m.image.read_bytes() == copy.read_bytes(), "a read-only mount wrote"
        done = subprocess.run(["mount", "-o", "remount,rw", str(m.path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        (m.path / "after").write_text("yes")
    finally:
        m.umount()
    m.fsck()
    (tmp_path / "copy").mkdir()
    other = Mount(tmp_path / "copy")
    shutil.copy(copy, other.image)
    other.mount()
    try:
        assert (other.path / "before").read_text() == "written before the remount"
    finally:
        other.umount()


def test_listing_a_directory_updates_its_atime_unless_nodiratime(tmp_path: Path) -> None:
    """Issue 22 §6: ``-o nodiratime`` was refused as unknown, and a listing never
    updated a directory's atime whatever the mode. relatime: a listing updates an
    atime older than the mtime or ctime; nodiratime: never for directories."""
    m = Mount(tmp_path)
    for options, updated in ((), True), (("-o", "nodiratime"), False):
        m.mount(*options)
        try:
            d = m.path / f"d{len(options)}"
            d.mkdir()
            os.utime(d, ns=(10**9, 10**9))  # older than its ctime: relatime updates it
            os.listdir(d)
            assert (os.stat(d).st_atime_ns > 10**9) is updated, options
        finally:
            m.umount()
    m.fsck()
