"""The file system under test: what ``--fs`` names, and the few things every fuzzer
asks of it — a fresh small image, a mount on the direct runtime, an fsck verdict.

Any file system written against the API can be fuzzed: the fuzzers own the block
layer (RAM, recording and fault devices), so all they need from the file system is
its class with ``mkfs`` (required) and ``fsck`` (optional: without it the fuzzers
check behaviour only, and say so).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import numpy as np

from bento_user.api import Filesystem, FsckReport, FsError
from bento_user.blockdev import BlockDevice, RamDevice
from bento_user.runtime.direct import DirectRuntime
from bento_user.runtime.loader import LoadError, absolute, load_filesystem_class


class FuzzError(Exception):
    """A fuzzer cannot start (bad arguments, a file system it cannot use): one line."""


@dataclass
class Target:
    """A file-system class to fuzz and how to reach it (``spec``, for subprocesses
    and regression tests)."""

    spec: str
    cls: type[Filesystem]
    has_fsck: bool = field(default=True)

    @classmethod
    def load(cls, spec: str) -> Target:
        spec = absolute(spec)
        try:
            fs_class = load_filesystem_class(spec)
        except LoadError as e:
            raise FuzzError(str(e)) from None
        if fs_class.mkfs.__func__ is Filesystem.mkfs.__func__:  # type: ignore[attr-defined]
            raise FuzzError(f"{spec}: {fs_class.__name__} has no mkfs classmethod; "
                            "the fuzzers need one to make their images")
        has_fsck = fs_class.fsck.__func__ is not Filesystem.fsck.__func__  # type: ignore[attr-defined]
        return cls(spec, fs_class, has_fsck)

    def supports(self, op: str) -> bool:
        """Does the class implement ``op`` (override the API's ENOSYS)? The fuzzers
        exercise only what a file system implements."""
        return getattr(self.cls, op) is not getattr(Filesystem, op)

    @property
    def name(self) -> str:
        return self.cls.__name__

    def fresh_device(self, nblocks: int) -> RamDevice:
        dev = RamDevice(nblocks)
        self.cls.mkfs(dev)
        return dev

    def open(self, device: BlockDevice, **ks_options: object) -> DirectRuntime:
        """Mount on the direct runtime, committing only when asked (deterministic)."""
        ks_options.setdefault("commit_interval", None)
        return DirectRuntime.open(self.cls(), device, **ks_options)  # type: ignore[arg-type]

    @property
    def can_repair(self) -> bool:
        return self.cls.repair.__func__ is not Filesystem.repair.__func__  # type: ignore[attr-defined]

    def repair(self, device: BlockDevice) -> FsckReport:
        """``fsck -y`` on ``device``, in place."""
        return self.cls.repair(device)

    def fsck(self, image: np.ndarray | BlockDevice) -> list[str]:
        """fsck's problems for an image (a copy is checked; [] without a checker)."""
        if not self.has_fsck:
            return []
        dev = image if isinstance(image, BlockDevice) else RamDevice.from_bytes(image)
        try:
            return list(self.cls.fsck(dev).problems)
        except FsError as e:
            if e.errno == errno.ENOSYS:
                return []
            return [f"fsck refused the image: {e.strerror}"]
