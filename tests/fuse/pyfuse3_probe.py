"""A few-line pyfuse3 file system with no bento code, for the pyfuse3 patch's test:
one file, ``f``, of 1 MiB whose only data is 4 KiB at 64 KiB. With ``--handlers`` it
answers lseek from that map, records fallocate calls in the log file and lets the
kernel cache the root directory's entries (cache-readdir.patch); without, it has
only pyfuse3's defaults (ENOSYS, an integer directory handle). Every readdir is
logged. With ``--poll`` it polls 50 µs for the next
request after each answer (poll.patch). Usage:
pyfuse3_probe.py MOUNTPOINT LOG [--handlers] [--poll]
"""

from __future__ import annotations

import errno
import os
import stat
import sys

import pyfuse3
import trio

FILE_INO = pyfuse3.ROOT_INODE + 1
SIZE, DATA_AT, DATA_LEN = 1 << 20, 64 << 10, 4 << 10


class Probe(pyfuse3.Operations):
    def __init__(self, log: str, handlers: bool) -> None:
        super().__init__()
        self.log, self.handlers = log, handlers

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = inode
        a.st_mode = (stat.S_IFDIR | 0o755) if inode == pyfuse3.ROOT_INODE else (stat.S_IFREG | 0o644)
        a.st_size = 0 if inode == pyfuse3.ROOT_INODE else SIZE
        return a

    async def lookup(self, parent: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if parent != pyfuse3.ROOT_INODE or name != b"f":
            raise pyfuse3.FUSEError(errno.ENOENT)
        return await self.getattr(FILE_INO)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=inode)

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int | pyfuse3.FileInfo:
        if self.handlers:
            return pyfuse3.FileInfo(fh=inode, keep_cache=True, cache_readdir=True)
        return inode

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        with open(self.log, "a") as f:
            f.write(f"readdir {fh} {start_id}\n")
        if start_id == 0:
            pyfuse3.readdir_reply(token, b"f", await self.getattr(FILE_INO), 1)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return bytes(max(0, min(size, SIZE - off)))

    async def lseek(self, fh: int, offset: int, whence: int) -> int:
        if not self.handlers:
            return await super().lseek(fh, offset, whence)
        if offset >= SIZE or (whence == os.SEEK_DATA and offset >= DATA_AT + DATA_LEN):
            raise pyfuse3.FUSEError(errno.ENXIO)
        if whence == os.SEEK_DATA:
            return max(offset, DATA_AT)
        return offset if not DATA_AT <= offset < DATA_AT + DATA_LEN else DATA_AT + DATA_LEN

    async def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        if not self.handlers:
            return await super().fallocate(fh, mode, offset, length)
        with open(self.log, "a") as f:
            f.write(f"fallocate {fh} {mode} {offset} {length}\n")


async def main(mountpoint: str, log: str, handlers: bool, poll: bool) -> None:
    if poll:
        pyfuse3.set_spin(50)
    pyfuse3.init(Probe(log, handlers), mountpoint, {"fsname=probe"})
    try:
        await pyfuse3.main()
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], "--handlers" in sys.argv[3:], "--poll" in sys.argv[3:])
