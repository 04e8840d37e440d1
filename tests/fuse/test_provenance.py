"""Provenance on a real mount: installed by live upgrade, queried with ``bento prov``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bento_user.runtime import control

from .conftest import Mount, bento
from .test_upgrade import WORKER

# A 3-step pipeline: each step reads its inputs and writes one output.
STEP = "import sys; open(sys.argv[-1], 'w').write(''.join(open(f).read() for f in sys.argv[1:-1]))"

PROV_KINDS = {"prefix", "entity", "activity", "agent", "used", "wasGeneratedBy",
              "wasDerivedFrom", "wasInformedBy", "wasAssociatedWith"}
# relation -> its members that name ids, and the map each id must be in
MEMBERS = {"used": {"prov:activity": "activity", "prov:entity": "entity"},
           "wasGeneratedBy": {"prov:entity": "entity", "prov:activity": "activity"},
           "wasDerivedFrom": {"prov:generatedEntity": "entity", "prov:usedEntity": "entity",
                              "prov:activity": "activity"},
           "wasInformedBy": {"prov:informed": "activity", "prov:informant": "activity"},
           "wasAssociatedWith": {"prov:activity": "activity", "prov:agent": "agent"}}


def run_step(cwd: Path, *files: str) -> int:
    p = subprocess.Popen([sys.executable, "-c", STEP, *files], cwd=cwd)
    assert p.wait() == 0
    return p.pid


def test_pipeline_lineage_json_and_graph(tmp_path: Path) -> None:
    m = Mount(tmp_path)
    m.mount()
    try:
        (m.path / "in1").write_text("one\n")
        (m.path / "in2").write_text("two\n")
        (m.path / "unrelated").write_text("never read by the pipeline\n")
        assert bento("upgrade", str(m.path), "provenance").returncode == 0
        pids = [run_step(m.path, "in1", "in2", "mid1"), run_step(m.path, "mid1", "mid2"),
                run_step(m.path, "mid2", "in1", "out")]
        (m.path / "unrelated").write_text("written by the test afterwards\n")
        assert (m.path / "out").read_text() == "one\ntwo\none\n"

        tree = bento("prov", str(m.path / "out"), "--depth", "5",
                     "--graph", str(tmp_path / "g.svg")).stdout
        lines = [line.split(" at ")[0].split(" by ")[0] for line in tree.splitlines()]
        assert lines[0] == "/out (inode %d)" % os.stat(m.path / "out").st_ino
        assert f"pid {pids[2]}" in tree and f"pid {pids[1]}" in tree and f"pid {pids[0]}" in tree
        reads = [line.strip("│ ├└─") for line in lines if "read /" in line]
        assert [r.split(" (inode")[0] for r in reads] == [
            "read /mid2", "read /mid1", "read /in1 (now)", "read /in2 (now)", "read /in1 (now)"]
        assert "unrelated" not in tree
        assert (tmp_path / "g.svg").read_text().lstrip().startswith(("<?xml", "<svg"))

        doc = json.loads(bento("prov", str(m.path / "out"), "--json", "--depth", "5").stdout)
        assert set(doc) <= PROV_KINDS and "bento" in doc["prefix"]
        for kind, members in MEMBERS.items():
            for rel in doc.get(kind, {}).values():
                for member, target in members.items():
                    if member in rel:
                        assert rel[member] in doc[target], (kind, member, rel[member])
        acts = {a["bento:pid"]: a for a in doc["activity"].values()}
        assert set(acts) == set(pids)
        assert all(STEP in a["bento:argv"] for a in acts.values())
        labels = {e["prov:label"] for e in doc["entity"].values()}
        assert labels == {"/out", "/mid2", "/mid1", "/in1 (now)", "/in2 (now)"}
        assert len(doc["wasGeneratedBy"]) == 3 and len(doc["used"]) == 5
        assert len(doc["wasDerivedFrom"]) == 5 and len(doc["agent"]) == 1

        assert bento("upgrade", str(m.path), "xv6").returncode == 0  # downgrade
        after = bento("prov", str(m.path / "out"), "--depth", "5").stdout
        assert after == tree.replace(f"graph: {tmp_path / 'g.svg'}\n", "")
    finally:
        m.umount()
    assert "provenance records" in m.fsck()
    offline = bento("prov", "--image", str(m.image), "/out", "--depth", "5").stdout
    assert offline.splitlines()[:3] == tree.splitlines()[:3]


def test_the_hidden_inode_is_invisible_through_the_mount(tmp_path: Path) -> None:
    m = Mount(tmp_path, fs="provenance")
    m.mount()
    try:
        (m.path / "d").mkdir()
        (m.path / "d" / "f").write_text("x")
        status = control.call(str(m.path), "report", name="hidden")
        assert status["data"]  # there is a log
        seen = {os.lstat(m.path).st_ino}
        for top, dirs, files in os.walk(m.path):
            for name in dirs + files:
                seen.add(os.lstat(os.path.join(top, name)).st_ino)
        inos = sorted(seen)
        hidden = next(i for i in range(2, 10) if i not in inos)  # the gap the log took
        log_lines = bento("prov", str(m.path / "d" / "f"), "--json").stdout
        assert f"file{hidden}" not in log_lines
        for name in (".lin", ".provenance", f"#{hidden}", "..."):
            assert not (m.path / name).exists()
        assert os.statvfs(m.path).f_files - os.statvfs(m.path).f_ffree == len(inos) + 1
    finally:
        m.umount()
    m.fsck()


def test_upgrades_to_and_from_provenance_under_load(tmp_path: Path) -> None:
    m = Mount(tmp_path)
    m.mount()
    stop = tmp_path / "stop"
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(m.path), str(n), str(stop)],
                                stdout=subprocess.PIPE, text=True) for n in range(4)]
    try:
        for k in range(20):
            target = "provenance" if k % 2 == 0 else "xv6"
            answer = control.call(str(m.path), "upgrade", target=target)
            assert answer["new"].endswith("Provenance" if k % 2 == 0 else "Xv6")
    finally:
        stop.touch()
        results = [json.loads(w.communicate(timeout=120)[0]) for w in workers]
    assert [r["errors"] for r in results] == [[]] * 4
    m.remount()
    for n, r in enumerate(results):
        last = r["ops"] - 1
        data = (m.path / f"w{n}" / f"f{last % 7}").read_bytes()
        assert data == f"{n}:{last}:".encode() * (1 + last * 37 % 2000)
    m.umount()
    m.fsck()


def test_prov_errors_are_one_line(tmp_path: Path) -> None:
    for args, message in [
        (("/etc/hostname",), "is not on a bento mount"),
        (("/nonexistent/file",), "No such file or directory"),
        (("--image", str(tmp_path / "missing.img"), "/x"), "no such image"),
        (("/etc/hostname", "--depth", "-1"), "--depth must be 0 or more"),
    ]:
        done = bento("prov", *args, check=False)
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
