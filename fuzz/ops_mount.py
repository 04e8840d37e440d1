"""The operation fuzzer's machine through a real mount (``bento fuzz ops --mount``).

The same rules and model as ``FileSystemMachine`` (ops.py); only the file system's
life differs: an image and mount point per example, ``bento mount`` in a child
process, and the calls made with real system calls as the machine's users.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from bento_user.blockdev import ImageDevice

from .mount_client import MountClient, Stat
from .model import ROOT
from .ops import ALICE, NBLOCKS, FileSystemMachine


class MountMachine(FileSystemMachine):
    """The same machine through a real mount made by ``bento mount``: one image and
    mount point per example, under ``BENTO_FUZZ_DIR`` (default /var/tmp: O_DIRECT
    needs a real disk file system)."""

    OPTIONS = "timeout=0,no_writeback_cache,no_keep_cache"
    injects_faults = False  # the file system runs in the mount's daemon
    scans_directories = False  # the kernel reads directories in its own batches

    def open_fs(self) -> None:
        if not hasattr(self, "image"):
            self.tmp = tempfile.mkdtemp(prefix="bento-fuzz-ops-",
                                        dir=os.environ.get("BENTO_FUZZ_DIR", "/var/tmp"))
            os.chmod(self.tmp, 0o755)  # the second user must reach the mount point
            self.image = os.path.join(self.tmp, "disk.img")
            self.mnt = os.path.join(self.tmp, "mnt")
            os.mkdir(self.mnt)
            with open(self.image, "wb") as f:
                f.truncate(NBLOCKS * 4096)
            with ImageDevice(self.image) as dev:
                self.target.cls.mkfs(dev)
        bento("mount", self.image, self.mnt, "--fs", self.target.spec, "-o", self.OPTIONS)
        self.clients = {r.uid: MountClient(os.fsencode(self.mnt), r) for r in (ROOT, ALICE)}
        self.live = True

    def close_fs(self) -> None:
        self.live = False
        self.held.clear()
        self.kept.clear()
        for c in self.clients.values():
            c.close_all()
        bento("umount", self.mnt)
        with ImageDevice(self.image, read_only=True) as dev:  # fsck leaves it open
            problems = self.target.fsck(dev)
        assert problems == [], problems

    def _hold(self, path: bytes) -> Any:
        return self.client(ROOT).hold(path)

    def _held_stat(self, h: Any) -> Any:
        return Stat.of(os.fstat(h))

    def _release(self, h: Any) -> None:
        self.client(ROOT).close(h)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            if os.path.ismount(self.mnt):  # a failed step: unmount whatever state it is in
                subprocess.run(["fusermount3", "-u", "-z", self.mnt], capture_output=True)
                time.sleep(0.2)
            shutil.rmtree(self.tmp, ignore_errors=True)


def bento(*args: str) -> None:
    """Run the ``bento`` command in a child process (a mount daemonises: never fork
    this process, which may hold threads and Hypothesis' state)."""
    code = "import sys; from bento_user.cli import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, env=env, timeout=120)
    if done.returncode:
        raise RuntimeError(f"bento {args[0]} failed: {done.stderr.strip()}")
