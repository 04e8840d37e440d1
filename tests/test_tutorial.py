"""docs/tutorial.md, run: every file it shows is written and every command it shows is
run, in order, in an empty directory, so the tutorial cannot rot.

The format: a ```python block whose first line is ``# file: NAME`` is written to NAME;
in a ```console block, each ``$ `` line is a command (a heredoc runs on to its end
marker), a trailing ``# fails`` means it must exit non-zero, and the lines under it
must each appear in what it prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "docs" / "tutorial.md"

pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root and /dev/fuse")


@dataclass
class Step:
    command: str = ""
    fails: bool = False
    expect: list[str] = field(default_factory=list)
    file: tuple[str, str] | None = None  # (name, content) to write instead


def steps(text: str) -> list[Step]:
    out: list[Step] = []
    for kind, body in re.findall(r"```(python|console)\n(.*?)```", text, re.S):
        lines = body.splitlines()
        if kind == "python":
            if lines and lines[0].startswith("# file: "):
                out.append(Step(file=(lines[0][8:].strip(), "\n".join(lines[1:]) + "\n")))
            continue
        i = 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if not line.startswith("$ "):
                out[-1].expect.append(line.strip())
                continue
            command = line[2:]
            fails = command.endswith("# fails")
            command = command.removesuffix("# fails").rstrip()
            heredoc = re.search(r"<<'(\w+)'$", command)
            if heredoc:
                while lines[i] != heredoc.group(1):
                    command += "\n" + lines[i]
                    i += 1
                command += "\n" + lines[i]
                i += 1
            out.append(Step(command, fails))
    return out


def test_the_tutorial_reads_as_steps() -> None:
    found = steps(TUTORIAL.read_text())
    assert sum(s.file is not None for s in found) >= 2
    assert any("bento fuzz crash" in s.command and s.fails for s in found)
    assert any("bento debug" in s.command for s in found)
    assert any("--watch" in s.command for s in found)


def test_every_command_of_the_tutorial_works(tmp_path: Path) -> None:
    env = dict(os.environ, REPO=str(REPO), PYTHONPATH=str(REPO),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    mounted = tmp_path / "mnt"
    try:
        for step in steps(TUTORIAL.read_text()):
            if step.file is not None:
                (tmp_path / step.file[0]).write_text(step.file[1])
                continue
            if step.command.startswith("export "):
                continue  # the reader's own setup: env above does it
            done = subprocess.run(["bash", "-c", step.command], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)
            printed = done.stdout + done.stderr
            assert (done.returncode != 0) == step.fails, f"$ {step.command}\n{printed}"
            for line in step.expect:
                assert line in printed, f"$ {step.command}: {line!r} not in\n{printed}"
    finally:
        if os.path.ismount(mounted):
            subprocess.run(["fusermount3", "-u", "-z", str(mounted)], check=False)
