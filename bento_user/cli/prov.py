"""``bento prov PATH``: where a file came from, from the provenance records.

On a mounted file system the records come from the daemon (the image is in use);
``--image IMAGE PATH`` reads an unmounted image, PATH then taken inside it. Works on
any xv6 image that ever ran the provenance file system: plain xv6 keeps the records.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..api import FsError
from ..blockdev import ImageDevice
from ..runtime import control
from ..runtime.direct import DirectRuntime
from ..runtime.loader import instantiate
from ._errors import UserError
from ._fs import add_fs_argument, filesystem_class
from ._terminal import console

if TYPE_CHECKING:
    from rich.tree import Tree

    from filesystems.provenance.query import Lineage

WALK_MAX_DIRS = 20_000  # directories searched for files the records do not name


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prov", help="the lineage of a file (provenance)",
                       description="Who created and wrote PATH, when, with which program, "
                       "and what those processes had read before: the lineage, as a tree.")
    p.add_argument("path")
    p.add_argument("--image", help="read an unmounted image; PATH is inside it")
    add_fs_argument(p)  # xv6 reads them: plain xv6 keeps provenance's records
    p.add_argument("--depth", type=int, default=3, help="levels of inputs to follow (3)")
    p.add_argument("--json", action="store_true", help="print W3C PROV-JSON")
    p.add_argument("--graph", metavar="FILE", help="draw the lineage (.png, .svg, .pdf, .dot)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from filesystems.provenance import query  # the query belongs to the file system

    if args.depth < 0:
        raise UserError("--depth must be 0 or more", 2)
    log, ino, path, find = (_offline(args.image, args.path, args.fs) if args.image
                            else _mounted(args.path))
    try:
        history = query.History.parse(log)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"the provenance records are damaged: {e}", 4) from None
    lineage = history.lineage(ino, args.depth, path=path)
    missing = query.unnamed(lineage)
    if missing:
        query.name(lineage, find(missing))
    doc = query.prov_json(lineage)
    if args.graph:
        try:
            query.draw(doc, args.graph)
        except query.GraphError as e:
            raise UserError(str(e)) from None
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        if not log:
            print(f"{path}: this file system has no provenance records "
                  "(it never ran the provenance file system)")
        console().print(lineage_tree(lineage))
        if args.graph:
            print(f"graph: {args.graph}")
    return 0


Source = tuple[bytes, int, str, Callable[[set[int]], dict[int, str]]]  # log, inode, path, finder


def _mounted(path: str) -> Source:
    try:
        st = os.stat(path)
    except OSError as e:
        raise UserError(f"{path}: {e.strerror}") from None
    mountpoint = os.path.realpath(path)
    while not os.path.ismount(mountpoint):
        mountpoint = os.path.dirname(mountpoint)
    try:
        answer = control.call(mountpoint, "report", name="hidden")
    except control.NotMounted:
        raise UserError(f"{path} is not on a bento mount (use --image for an unmounted "
                        "image)") from None
    except OSError as e:
        raise UserError(f"{mountpoint}: {e.strerror}") from None
    inside = "/" + os.path.relpath(os.path.realpath(path), mountpoint).removeprefix(".")

    def find(inos: set[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        for n, (top, dirs, files) in enumerate(os.walk(mountpoint)):
            for entry in dirs + files:
                full = os.path.join(top, entry)
                try:
                    i = os.lstat(full).st_ino
                except OSError:
                    continue
                if i in inos:
                    found[i] = "/" + os.path.relpath(full, mountpoint)
            if len(found) == len(inos) or n > WALK_MAX_DIRS:
                break
        return found

    return base64.b64decode(answer["data"]), st.st_ino, inside.replace("//", "/"), find


def _offline(image: str, path: str, fs: str) -> Source:
    cls = filesystem_class(fs)
    if not os.path.exists(image):
        raise UserError(f"{image}: no such image", 2)
    try:
        rt = DirectRuntime.open(instantiate(cls, read_only=True), ImageDevice(image, read_only=True))
    except FsError as e:
        raise UserError(f"{image}: cannot read: {e.strerror}", 4) from None
    try:
        inside = "/" + path.lstrip("/")
        try:
            ino = rt.client().stat(inside).ino
        except OSError as e:
            raise UserError(f"{image}: {inside}: {e.strerror}") from None
        log = rt.fs.report("hidden")
        found = _walk_image(rt)
    finally:
        rt.close()
    return log, ino, inside, lambda inos: {i: p for i, p in found.items() if i in inos}


def _walk_image(rt: DirectRuntime) -> dict[int, str]:
    """inode -> path for the image's tree (bounded), to name unnamed files."""
    c, found, todo = rt.client(), {}, ["/"]
    while todo and len(found) < WALK_MAX_DIRS * 10:
        d = todo.pop()
        for name, ino, kind in c.scandir(d):
            if name in (b".", b".."):
                continue
            full = d.rstrip("/") + "/" + name.decode(errors="surrogateescape")
            found[ino] = full
            if stat.S_ISDIR(kind):
                todo.append(full)
    return found


def lineage_tree(node: Lineage) -> Tree:
    """The lineage as rich draws it: the file, who created and wrote it, and under
    each writer the files it had read, each with its own lineage."""
    from rich.text import Text
    from rich.tree import Tree

    tree = Tree(Text.assemble((node.path, "bold"), f" (inode {node.ino})"))
    _add_writers(tree, node)
    return tree


def _add_writers(tree: Tree, node: Lineage) -> None:
    from rich.text import Text

    from filesystems.provenance.query import when

    if not node.generations:
        tree.add(Text("no recorded writer" + (" (made before provenance was recorded)"
                                              if node.read_at is None else ""), "dim"))
        return
    for g in node.generations:
        p = g.process
        who = f"uid {p.uid}" if p.uid >= 0 else "uid ?"
        writer = tree.add(Text.assemble(
            "created " if g.op == "create" else "written ", when(g.t), " by ", (p.program, "bold"),
            f" (pid {p.pid}, {who}): {' '.join(p.argv) or '?'}"))
        if g.more:
            writer.add(Text(f"... and {g.more} more files it read (not shown)", "dim"))
        for child in g.inputs:
            read = writer.add(Text.assemble("read ", (child.path, "bold"),
                                            f" (inode {child.ino}) at {when(child.read_at or 0)}"))
            _add_writers(read, child)
