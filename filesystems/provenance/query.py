"""Reading provenance records back: a file's lineage, as a tree, W3C PROV-JSON or a
graphviz graph.

The lineage of a file: the processes that created or wrote it (a *generation*: who,
when, with which program and command line), and for each, the files that process had
opened for reading or read before it wrote — each with its own lineage, down to
``depth`` levels. A file that is written more than once has several versions; a
version is named by the time of the record that generated it, so an input is traced
to the writes that happened *before* it was read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

WRITES = {"create", "write", "truncate"}       # records that make a new version
READS = {"read"}
MAX_INPUTS = 25  # inputs followed per writer; a process that read thousands of
                 # files (a build, a diff) is shown with the first ones and a count


@dataclass
class Process:
    key: str
    pid: int
    exe: str = ""
    argv: list[str] = field(default_factory=list)
    uid: int = -1
    ppid: int = 0
    start: int = 0

    @property
    def program(self) -> str:
        return os.path.basename(self.exe) or (self.argv[0] if self.argv else f"pid {self.pid}")


@dataclass
class Generation:
    """``process`` made a version of a file at ``t`` (its first such record)."""

    t: int
    op: str
    process: Process
    inputs: list[Lineage] = field(default_factory=list)
    more: int = 0  # inputs beyond MAX_INPUTS, not followed


@dataclass
class Lineage:
    ino: int
    path: str
    read_at: int | None              # when the consumer read it (None: the queried file)
    generations: list[Generation] = field(default_factory=list)


class History:
    """All records of one file system, indexed by inode and by process."""

    def __init__(self, records: Iterable[dict[str, Any]]) -> None:
        self.processes: dict[str, Process] = {}
        self.paths: dict[int, str] = {}
        self.by_ino: dict[int, list[dict[str, Any]]] = {}
        self.by_proc: dict[str, list[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []  # every operation, in order
        for r in records:
            if r.get("op") == "process":
                self.processes[r["proc"]] = Process(r["proc"], r["pid"], r.get("exe", ""),
                                                    r.get("argv", []), r.get("uid", -1),
                                                    r.get("ppid", 0), r.get("start", 0))
                continue
            self.events.append(r)
            ino = r.get("ino")
            if ino is not None:
                self.by_ino.setdefault(ino, []).append(r)
                if r.get("path"):
                    self.paths[ino] = r["path"]
                if r.get("op") == "rename" and r.get("new_path"):
                    self.paths[ino] = r["new_path"]
            if r.get("proc"):
                self.by_proc.setdefault(r["proc"], []).append(r)
        self.children: dict[int, list[str]] = {}
        for key, p in self.processes.items():
            self.children.setdefault(p.ppid, []).append(key)

    @classmethod
    def parse(cls, log: bytes) -> History:
        return cls(json.loads(line) for line in log.splitlines() if line.strip())

    def process(self, key: str) -> Process:
        p = self.processes.get(key)
        if p is None:
            p = self.processes[key] = Process(key, int(key.split(":")[0]))
        return p

    def path(self, ino: int) -> str:
        return self.paths.get(ino, f"(inode {ino})")

    def generations(self, ino: int, before: int | None = None) -> list[Generation]:
        """Who made versions of ``ino`` (before ``before``): one per process, at its
        first writing record (a create, an open for writing, a first write)."""
        firsts: dict[str, dict[str, Any]] = {}
        for e in self.by_ino.get(ino, ()):
            if before is not None and e["t"] >= before:
                break
            if e.get("proc") and _writes(e):
                firsts.setdefault(e["proc"], e)
        return [Generation(e["t"], e["op"], self.process(e["proc"])) for e in firsts.values()]

    def descendants(self, proc: str) -> set[str]:
        """The processes ``proc`` started, transitively."""
        out: set[str] = set()
        todo = [self.process(proc).pid]
        while todo:
            for key in self.children.get(todo.pop(), ()):
                if key not in out and key != proc:
                    out.add(key)
                    todo.append(self.processes[key].pid)
        return out

    def inputs(self, proc: str, opened: int, last: int, exclude: int) -> list[tuple[int, int]]:
        """(ino, time) of what the writer read: files ``proc`` opened for reading or
        read before ``last`` (its last touch of the output), and files its child
        processes read while the output was open (``opened``..``last``): in ``sh -c
        'cat a > b'`` the shell opens b, its child cat reads a. (A file system sees
        the process that opened a handle, not each writer through it.)"""
        seen: dict[int, int] = {}
        for key, start in [(proc, 0)] + [(k, opened) for k in self.descendants(proc)]:
            for e in self.by_proc.get(key, ()):
                if e["t"] > last:
                    break
                if e["t"] >= start and e.get("ino") not in (None, exclude) and _reads(e):
                    seen.setdefault(e["ino"], e["t"])
        return sorted(seen.items(), key=lambda item: item[1])

    def lineage(self, ino: int, depth: int, path: str | None = None,
                read_at: int | None = None) -> Lineage:
        node = Lineage(ino, path or self.path(ino), read_at)
        for g in self.generations(ino, before=read_at):
            if depth > 0:
                last = max((e["t"] for e in self.by_proc.get(g.process.key, ())
                            if e.get("ino") == ino and (read_at is None or e["t"] < read_at)),
                           default=g.t)
                found = self.inputs(g.process.key, g.t, last, exclude=ino)
                g.more = max(0, len(found) - MAX_INPUTS)
                g.inputs = [self.lineage(i, depth - 1, read_at=t) for i, t in found[:MAX_INPUTS]]
            node.generations.append(g)
        return node


def _writes(e: dict[str, Any]) -> bool:
    return e["op"] in WRITES or (e["op"] == "open" and e.get("mode") != "read")


def _reads(e: dict[str, Any]) -> bool:
    return e["op"] in READS or (e["op"] == "open" and e.get("mode") != "write")


def nodes(node: Lineage) -> Iterable[Lineage]:
    yield node
    for g in node.generations:
        for child in g.inputs:
            yield from nodes(child)


def unnamed(node: Lineage) -> set[int]:
    """Inodes in the lineage whose path no record gave (files the kernel already
    knew when provenance was installed)."""
    return {n.ino for n in nodes(node) if n.path.startswith("(inode ")}


def name(node: Lineage, found: dict[int, str]) -> None:
    """Give the lineage's unnamed files the paths found for them (where they are
    now, marked so)."""
    for n in nodes(node):
        if n.ino in found and n.path.startswith("(inode "):
            n.path = f"{found[n.ino]} (now)"


# -- human output ---------------------------------------------------------------------

def when(t: int) -> str:
    return datetime.fromtimestamp(t / 1e9).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# -- W3C PROV-JSON ----------------------------------------------------------------------

def prov_json(node: Lineage) -> dict[str, Any]:
    """The lineage as a PROV-JSON document (W3C member submission, 2013): entities
    are file versions, activities processes, agents users."""
    doc: dict[str, Any] = {"prefix": {"bento": "urn:bento-user:"}, "entity": {},
                           "activity": {}, "agent": {}, "used": {}, "wasGeneratedBy": {},
                           "wasDerivedFrom": {}, "wasInformedBy": {}, "wasAssociatedWith": {}}
    counter = iter(range(1, 1 << 30))
    acts: dict[str, Process] = {}  # activity id -> its process

    def relation(kind: str, **members: str) -> None:
        doc[kind][f"_:{kind[:1]}{next(counter)}"] = {f"prov:{k}": v for k, v in members.items()}

    def entity(n: Lineage, version: Generation | None) -> str:
        eid = f"bento:file{n.ino}" + (f"-v{version.t}" if version else "")
        doc["entity"].setdefault(eid, {"prov:label": n.path, "bento:inode": n.ino,
                                       "prov:type": "bento:file-version"})
        return eid

    def activity(g: Generation) -> str:
        p = g.process
        aid = f"bento:process{p.key.replace(':', '-')}"
        acts[aid] = p
        if aid not in doc["activity"]:
            doc["activity"][aid] = {"prov:label": p.program, "bento:pid": p.pid,
                                    "bento:exe": p.exe, "bento:argv": " ".join(p.argv)}
            agent = f"bento:user{p.uid}"
            doc["agent"].setdefault(agent, {"prov:type": {"$": "prov:Person",
                                                          "type": "prov:QUALIFIED_NAME"},
                                            "bento:uid": p.uid})
            relation("wasAssociatedWith", activity=aid, agent=agent)
        return aid

    def walk(n: Lineage) -> list[str]:
        made = []
        for g in n.generations:
            eid, aid = entity(n, g), activity(g)
            relation("wasGeneratedBy", entity=eid, activity=aid, time=iso(g.t))
            for child in g.inputs:
                versions = walk(child) or [entity(child, None)]
                for used in versions:
                    relation("used", activity=aid, entity=used, time=iso(child.read_at or 0))
                    relation("wasDerivedFrom", generatedEntity=eid, usedEntity=used,
                             activity=aid)
            made.append(eid)
        return made

    if not walk(node):
        entity(node, None)
    by_pid: dict[int, str] = {}
    for aid, p in acts.items():
        by_pid.setdefault(p.pid, aid)
    for aid, p in acts.items():
        parent = by_pid.get(p.ppid)
        if parent and parent != aid:
            relation("wasInformedBy", informed=aid, informant=parent)
    return {k: v for k, v in doc.items() if v or k == "prefix"}


def iso(t: int) -> str:
    return datetime.fromtimestamp(t / 1e9, tz=timezone.utc).isoformat()


# -- graphviz -------------------------------------------------------------------------------

def dot(doc: dict[str, Any]) -> str:
    """A graphviz DOT text of a PROV-JSON document, in PROV's usual shapes."""
    out = ["digraph lineage {", '  rankdir="BT"; node [fontname="Helvetica", fontsize=10];']

    def q(s: str) -> str:
        return json.dumps(s)

    for eid, a in doc.get("entity", {}).items():
        out.append(f"  {q(eid)} [shape=ellipse, style=filled, fillcolor=\"#fffdd0\", "
                   f"label={q(a['prov:label'])}];")
    for aid, a in doc.get("activity", {}).items():
        label = f"{a['prov:label']} (pid {a['bento:pid']})\n{a['bento:argv'][:60]}"
        out.append(f"  {q(aid)} [shape=box, style=filled, fillcolor=\"#9fb1fc\", label={q(label)}];")
    for gid, a in doc.get("agent", {}).items():
        out.append(f"  {q(gid)} [shape=house, style=filled, fillcolor=\"#fed37f\", "
                   f"label={q('uid ' + str(a['bento:uid']))}];")
    edges = {"used": ("prov:activity", "prov:entity", "used"),
             "wasGeneratedBy": ("prov:entity", "prov:activity", "wasGeneratedBy"),
             "wasAssociatedWith": ("prov:activity", "prov:agent", "wasAssociatedWith"),
             "wasInformedBy": ("prov:informed", "prov:informant", "wasInformedBy")}
    for kind, (src, dst, label) in edges.items():
        for r in doc.get(kind, {}).values():
            out.append(f"  {q(r[src])} -> {q(r[dst])} [label={q(label)}, fontsize=8];")
    out.append("}")
    return "\n".join(out) + "\n"


class GraphError(Exception):
    pass


def draw(doc: dict[str, Any], path: str) -> None:
    """Render with graphviz's ``dot``; the format follows the file's extension."""
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in ("png", "svg", "pdf", "dot"):
        raise GraphError(f"{path}: the graph is drawn as .png, .svg, .pdf or .dot")
    text = dot(doc)
    if fmt == "dot":
        with open(path, "w") as f:
            f.write(text)
        return
    exe = shutil.which("dot")
    if exe is None:
        raise GraphError("graphviz's dot is not installed (apt install graphviz)")
    done = subprocess.run([exe, f"-T{fmt}", "-o", path], input=text, text=True,
                          capture_output=True)
    if done.returncode:
        raise GraphError(f"dot failed: {done.stderr.strip()[:200]}")
