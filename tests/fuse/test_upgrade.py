"""Live upgrade of a real mount: programs with open files and working directories
inside keep running through 100 upgrades; failed upgrades change nothing; only the
owner may upgrade; ``--watch`` follows edits."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bento_user.runtime import control

from .conftest import BENTO, REPO, Mount, bento

# One worker: its working directory is inside the mount, it holds a file open the
# whole time, and creates, writes, renames, reads back and unlinks until told to stop.
WORKER = r"""
import json, os, sys
top, n, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(f"{top}/w{n}", exist_ok=True)
os.chdir(f"{top}/w{n}")
held = os.open("held", os.O_CREAT | os.O_RDWR, 0o644)
errors, i = [], 0
while not os.path.exists(stop) or i < 50:
    try:
        data = (f"{n}:{i}:".encode() * (1 + i * 37 % 2000))
        with open("tmp", "wb") as f:
            f.write(data)
        os.rename("tmp", f"f{i % 7}")
        with open(f"f{i % 7}", "rb") as f:
            if f.read() != data:
                errors.append(f"{i}: f{i % 7} read back wrong")
        os.pwrite(held, i.to_bytes(8, "little"), 8 * i)
        if os.pread(held, 8, 8 * i) != i.to_bytes(8, "little"):
            errors.append(f"{i}: held file read back wrong")
        if i % 5 == 4:
            os.unlink(f"f{(i - 3) % 7}")
            os.mkdir(f"d{i}")
            os.rmdir(f"d{i}")
        os.stat(".")
    except OSError as e:
        errors.append(f"{i}: {e}")
    i += 1
os.fsync(held)
os.close(held)
print(json.dumps({"ops": i, "errors": errors[:20]}))
"""


def modified_xv6(root: Path, name_max: int) -> Path:
    """A copy of xv6 outside the repository that reports another name_max."""
    copy = root / "xv6mod"
    if not copy.exists():
        shutil.copytree(REPO / "filesystems" / "xv6", copy,
                        ignore=shutil.ignore_patterns("__pycache__"))
    fs = copy / "_fs.py"
    text = re.sub(r"name_max=(NAME_MAX|\d+)\)", f"name_max={name_max})", fs.read_text())
    fs.write_text(text)
    return copy


def status(m: Mount) -> dict[str, object]:
    return control.call(str(m.path), "status")


def upgrade(m: Mount, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return bento("upgrade", str(m.path), target, *extra, check=False)


def test_upgrades_under_load(tmp_path: Path) -> None:
    """Four processes work with open files and cwds in the mount through 100
    upgrades (xv6 <-> a modified copy): no errors, everything verified afterwards."""
    m = Mount(tmp_path)
    m.mount()
    copy = modified_xv6(tmp_path, 200)
    stop = tmp_path / "stop"
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(m.path), str(n), str(stop)],
                                stdout=subprocess.PIPE, text=True) for n in range(4)]
    try:
        time.sleep(0.5)
        pauses = []
        for k in range(100):
            target = str(copy) if k % 2 == 0 else "xv6"
            answer = control.call(str(m.path), "upgrade", target=target)
            pauses.append(answer["pause_s"])
            expected = "xv6mod._fs:Xv6" if k % 2 == 0 else "filesystems.xv6._fs:Xv6"
            assert answer["new"] == expected
            assert os.statvfs(m.path).f_namemax == (200 if k % 2 == 0 else 255)
    finally:
        stop.touch()
        results = [json.loads(w.communicate(timeout=120)[0]) for w in workers]
    assert [r["errors"] for r in results] == [[]] * 4
    assert all(r["ops"] >= 50 for r in results)
    assert status(m)["upgrades"] == 100
    m.remount()
    for n, r in enumerate(results):
        last = r["ops"] - 1
        data = (m.path / f"w{n}" / f"f{last % 7}").read_bytes()
        assert data == f"{n}:{last}:".encode() * (1 + last * 37 % 2000)
        held = (m.path / f"w{n}" / "held").read_bytes()
        assert [int.from_bytes(held[8 * i:8 * i + 8], "little") for i in range(r["ops"])] == \
            list(range(r["ops"]))
    m.umount()
    m.fsck()


BROKEN = {
    "syntax": "class Broken(:\n",
    "raises": """
from filesystems.xv6 import Xv6
class Broken(Xv6):
    @classmethod
    def from_upgrade(cls, state, ks):
        raise KeyError("no such thing")
""",
    "refuses": """
import errno
from bento_user.api import FsError
from filesystems.xv6 import Xv6
class Broken(Xv6):
    @classmethod
    def from_upgrade(cls, state, ks):
        raise FsError(errno.EPROTO, "this version reads xv6/2 only")
""",
    "slow": """
import time
from filesystems.xv6 import Xv6
class Broken(Xv6):
    @classmethod
    def from_upgrade(cls, state, ks):
        time.sleep(1.5)
        return super().from_upgrade(state, ks)
""",
}
REASONS = {
    "syntax": "SyntaxError: invalid syntax (broken_syntax.py, line 1)",
    "raises": "from_upgrade failed: KeyError: 'no such thing'",
    "refuses": "refused the state: this version reads xv6/2 only",
    "slow": "more than the 0.5 s time-out",
    "missing": "cannot import no_such_fs",
}


def test_failed_upgrades_leave_the_mount_unchanged(tmp_path: Path) -> None:
    m = Mount(tmp_path)
    m.mount()
    work = m.path / "work"
    work.mkdir()
    (work / "f").write_bytes(b"before")
    fd = os.open(work / "f", os.O_RDWR)
    try:
        before = status(m)
        for kind, reason in REASONS.items():
            if kind == "missing":
                target = "no_such_fs"
            else:
                target = str(tmp_path / f"broken_{kind}.py")
                Path(target).write_text(BROKEN[kind])
            done = upgrade(m, target, "--timeout", "0.5")
            assert done.returncode == 1, (kind, done.stdout)
            assert done.stderr.count("\n") == 1 and reason in done.stderr, (kind, done.stderr)
            after = status(m)
            assert after["fs"] == before["fs"] and after["upgrades"] == 0
            assert os.pread(fd, 6, 0) == b"before"  # open handles work
            subprocess.run(["ls", "-l"], cwd=work, check=True, capture_output=True)
            (work / kind).write_text(kind)  # and so do changes
        assert sorted(os.listdir(work)) == sorted(["f", *REASONS])
        done = bento("upgrade", str(tmp_path), "xv6", check=False)
        assert done.returncode == 1 and "no bento mount here" in done.stderr
    finally:
        os.close(fd)
        m.umount()
    m.fsck()


def test_only_the_owner_or_root_may_upgrade(mnt: Mount) -> None:
    """Even with the socket reachable, the daemon checks the peer's credentials."""
    sock = control.find_socket(str(mnt.path))
    assert sock is not None
    directory = os.path.dirname(sock)
    mode = os.stat(directory).st_mode & 0o777
    try:
        os.chmod(directory, 0o755)
        os.chmod(sock, 0o666)
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               BENTO, "upgrade", str(mnt.path), "xv6"],
                              capture_output=True, text=True, timeout=60, cwd="/",
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    finally:
        os.chmod(directory, mode)
        os.chmod(sock, 0o600)
    assert done.returncode == 1
    assert "permission denied: uid 65534 does not own this mount" in done.stderr
    assert status(mnt)["upgrades"] == 0


def test_watch_upgrades_on_every_edit(tmp_path: Path) -> None:
    copy = modified_xv6(tmp_path, 200)
    m = Mount(tmp_path, fs=str(copy))
    m.mount("--watch", "--log", str(tmp_path / "log"))
    held: list[int] = []
    try:
        assert os.statvfs(m.path).f_namemax == 200
        fd = os.open(m.path / "kept", os.O_CREAT | os.O_RDWR)
        held.append(fd)
        os.write(fd, b"kept")
        modified_xv6(tmp_path, 201)
        wait_for(lambda: os.statvfs(m.path).f_namemax == 201)
        (copy / "_fs.py").write_text((copy / "_fs.py").read_text() + "\ndef broken(:\n")
        wait_for(lambda: "SyntaxError" in (tmp_path / "log").read_text())
        assert os.statvfs(m.path).f_namemax == 201  # the last good version serves on
        text = (copy / "_fs.py").read_text().replace("\ndef broken(:\n", "\n")
        (copy / "_fs.py").write_text(text.replace("name_max=201)", "name_max=202)"))
        wait_for(lambda: os.statvfs(m.path).f_namemax == 202)
        assert os.pread(fd, 4, 0) == b"kept"
        log = (tmp_path / "log").read_text()
        assert log.count("source changed") >= 3 and log.count("upgraded") >= 2
        assert re.search(r"upgraded xv6mod\._fs:Xv6 -> xv6mod\._fs:Xv6: pause \d+\.\d+ ms", log)
    finally:
        for fd in held:
            os.close(fd)
        m.umount()
    m.fsck()


def test_a_trace_spanning_upgrades_replays_exactly(tmp_path: Path) -> None:
    m = Mount(tmp_path)
    trace, pristine = m.mount_traced()
    try:
        (m.path / "d").mkdir()
        with open(m.path / "d" / "f", "wb") as f:
            f.write(b"before" * 1000)
            f.flush()
            assert upgrade(m, "xv6").returncode == 0
            f.write(b"after" * 1000)  # through a handle opened before the upgrade
        os.rename(m.path / "d" / "f", m.path / "g")
        assert upgrade(m, "filesystems.xv6").returncode == 0
        assert (m.path / "g").read_bytes() == b"before" * 1000 + b"after" * 1000
    finally:
        m.umount()
    records = [json.loads(line) for line in trace.read_text().splitlines()[1:]]
    assert [r["upgrade"] for r in records if "upgrade" in r] == ["xv6", "filesystems.xv6"]
    out = bento("replay", str(trace), str(pristine)).stdout
    assert f"{len(records) - 2} calls replayed through 2 live upgrades, 0 diverged" in out


def wait_for(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
