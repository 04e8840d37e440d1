"""An xv6 with a bug injected, mounted by the sandbox test (``--fs tests.fuse.buggy_fs:BuggyXv6``)."""

from __future__ import annotations

from bento_user.api import Attr, InodeNo, Request
from filesystems.xv6 import Xv6


class BuggyXv6(Xv6):
    def lookup(self, req: Request, parent: InodeNo, name: bytes) -> Attr:
        if name == b"boom":
            raise ZeroDivisionError("injected bug")
        return super().lookup(req, parent, name)
