"""An xv6 with bugs injected, mounted by the sandbox tests (``--fs
tests.fuse.buggy_fs:BuggyXv6``): a lookup of "boom" raises before it changes
anything; a mkdir of "half" raises after it has made the directory, as a bug at the
end of an operation would (the guard must undo it)."""

from __future__ import annotations

from bento_user.api import Attr, InodeNo, Request
from filesystems.xv6 import Xv6


class BuggyXv6(Xv6):
    def lookup(self, req: Request, parent: InodeNo, name: bytes) -> Attr:
        if name == b"boom":
            raise ZeroDivisionError("injected bug")
        return super().lookup(req, parent, name)

    def mkdir(self, req: Request, parent: InodeNo, name: bytes, mode: int) -> Attr:
        attr = super().mkdir(req, parent, name, mode)
        if name == b"half":
            raise ZeroDivisionError("injected bug after the change")
        return attr
