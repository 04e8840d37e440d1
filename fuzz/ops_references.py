"""The operation fuzzer's rules about what the kernel holds: files looked up or kept
open while their names come and go, two lookups of one file forgotten one at a time,
and readdir resumed from a cookie while entries are added and removed.

A mixin of ``FileSystemMachine`` (ops.py), which provides the model, the clients and
``_hold``/``_release`` (a real mount overrides them: ops_mount.py).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from .model import ROOT, Model, Node, join
from .ops_draws import DATA, NAMES, OFFSETS


class KernelReferences:
    """Rules and an invariant over the references a kernel keeps."""

    model: Model
    held: list[tuple[Any, Node]]    # inode references without a file
    kept: list[tuple[int, Node]]    # descriptors kept open (as root)
    scans_directories: bool
    rt: Any

    @precondition(lambda self: len(self.held) < 6)
    @rule(data=st.data(), again=st.booleans())
    def hold(self, data: st.DataObject, again: bool) -> None:
        """A lookup the kernel keeps; ``again``: of a file already held, so that the
        kernel holds two lookups of one inode and forgets them one at a time."""
        files = self.model.regular_files()
        held = {n.ident for _, n in self.held}
        if again and any(f[3].ident in held for f in files):
            files = [f for f in files if f[3].ident in held]
        if files:
            dpath, _, name, n = data.draw(st.sampled_from(files))
            self.held.append((self._hold(join(dpath, name)), n))

    @precondition(lambda self: len(self.held) < 6)
    @rule(data=st.data(), then=st.sampled_from(["unlink", "rename", "nothing"]), name=NAMES)
    def two_lookups_one_forgotten(self, data: st.DataObject, then: str, name: bytes) -> None:
        """Two lookups of one file (two processes, two dentries); its name goes or
        moves; the kernel forgets one lookup: the other must still see the file."""
        files = self.model.regular_files()
        files = [f for f in files if f[3].data] or files   # data shows a file freed early
        if not files:
            return
        dpath, _, fname, n = data.draw(st.sampled_from(files))
        path, c = join(dpath, fname), self.client(ROOT)
        first, second = self._hold(path), self._hold(path)
        if then == "unlink":
            self.expect(self.model.unlink(ROOT, path), c.unlink, path)
        elif then == "rename":
            self.expect(self.model.rename(ROOT, path, join(dpath, name)), c.rename, path,
                        join(dpath, name))
        self._release(first)
        self.held.append((second, n))   # references_see_their_files looks at it

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        h, _ = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self._release(h)

    @precondition(lambda self: self.scans_directories)
    @rule(data=st.data(), first=st.integers(1, 2), added=st.lists(NAMES, max_size=3),
          removed=st.integers(0, 3))
    def scan_while_changing(self, data: st.DataObject, first: int, added: list[bytes],
                            removed: int) -> None:
        """readdir resumed from a cookie after names came and went (as the kernel
        resumes when its buffer was full): every name there throughout comes back
        exactly once, and no name twice. The first batch stops after ``first`` names
        ('.' and '..' aside), in a directory with more than that if there is one."""
        dirs = self.model.dirs()
        dpath, d = data.draw(st.sampled_from([x for x in dirs if len(x[1].children) > first]
                                             or dirs))
        c = self.client(ROOT)
        ino = c.stat(dpath).ino
        fh = self.rt.call("opendir", ROOT, ino)
        try:
            batch = list(self.rt.call("readdir", fh, 0))
            names = [i for i, e in enumerate(batch) if e.name not in (b".", b"..")]
            seen = batch[:names[first - 1] + 1] if len(names) >= first else batch
            before = set(d.children)
            # names already returned go first: removing one is what invalidates a cookie
            returned = [e.name for e in seen if e.name in before]
            order = returned + sorted(before - set(returned))
            victims = [n for n in order if not d.children[n].is_dir][:removed]
            for name in victims:
                self.expect(self.model.unlink(ROOT, join(dpath, name)), c.unlink, join(dpath, name))
            for name in added:
                if name not in d.children:
                    self.expect(self.model.mkdir(ROOT, dpath, d, name, 0o755), c.mkdir,
                                join(dpath, name), 0o755)
            if seen:
                seen += list(self.rt.call("readdir", fh, seen[-1].next_offset))
        finally:
            self.rt.call("releasedir", fh)
        changed = set(victims) | set(added)  # each may come back once, twice or not at all
        names = [e.name for e in seen if e.name not in (b".", b"..")]
        twice = sorted({n for n in names if names.count(n) > 1} - changed)
        assert not twice, f"{dpath!r}: a scan returned {twice} twice: {names}"
        stayed = before - changed
        assert stayed <= set(names), f"{dpath!r}: a scan missed {sorted(stayed - set(names))}"

    @precondition(lambda self: len(self.kept) < 4)
    @rule(data=st.data())
    def open_keep(self, data: st.DataObject) -> None:
        files = self.model.regular_files()
        if files:
            dpath, _, name, n = data.draw(st.sampled_from(files))
            self.kept.append((self.client(ROOT).open(join(dpath, name), os.O_RDWR), n))

    @precondition(lambda self: self.kept)
    @rule(data=st.data(), content=DATA, offset=OFFSETS, sync=st.booleans())
    def write_kept(self, data: st.DataObject, content: bytes, offset: int, sync: bool) -> None:
        fd, n = self.kept[data.draw(st.integers(0, len(self.kept) - 1))]
        c = self.client(ROOT)
        assert c.pwrite(fd, content, offset) == len(content)
        if sync:
            c.fsync(fd)
        self.model.write(ROOT, n, offset, content)

    @precondition(lambda self: self.kept)
    @rule(data=st.data())
    def close_kept(self, data: st.DataObject) -> None:
        fd, _ = self.kept.pop(data.draw(st.integers(0, len(self.kept) - 1)))
        self.client(ROOT).close(fd)

    @invariant()
    def references_see_their_files(self) -> None:
        """An unlinked file lives on while referenced: same size, data, link count."""
        links = self.model.link_counts()
        for h, n in self.held:
            a = self._held_stat(h)
            assert (a.size, a.nlink) == (len(n.data), links.get(n.ident, 0)), "held inode"
        c = self.client(ROOT)
        for fd, n in self.kept:
            a = c.fstat(fd)
            assert (a.size, a.nlink) == (len(n.data), links.get(n.ident, 0)), "open file"
            assert c.pread(fd, len(n.data) + 1, 0) == n.data, "open file's data"
