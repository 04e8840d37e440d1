"""Shell completion and the manual page (issue 19) are made from the CLI's own parser:
every subcommand is completed and documented, and neither can go stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bento_user.cli import SUBCOMMANDS, main

BENTO = str(Path(sys.executable).with_name("bento"))


def complete(script: Path, line: str) -> list[str]:
    words = line.split(" ")
    done = subprocess.run(
        ["bash", "-c", f'source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; '
         f'COMP_LINE="{line}"; COMP_POINT={len(line)}; _shtab_bento; '
         'printf "%s\\n" "${COMPREPLY[@]}"'], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_bash_completes_subcommands_and_their_options(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "bento.bash"
    script.write_text(capsys.readouterr().out)
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert set(complete(script, "bento ")) >= set(SUBCOMMANDS)
    assert complete(script, "bento fs") == ["fsck"]
    assert {"-n", "-p", "-y", "-f", "--fs"} <= set(complete(script, "bento fsck -"))
    assert "--repair" in complete(script, "bento fuzz image --re")


def test_the_manual_page_documents_every_command(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manpage"]) == 0
    page = tmp_path / "bento.1"
    page.write_text(capsys.readouterr().out)
    warnings = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
                              capture_output=True, text=True)
    assert warnings.returncode == 0 and warnings.stderr == "", warnings.stderr
    text = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, check=True,
                          env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin"}).stdout
    for command in SUBCOMMANDS:
        assert f"bento {command}\n" in text, command
    for section in ("NAME", "SYNOPSIS", "EXIT STATUS", "FILES", "SEE ALSO"):
        assert f"\n{section}\n" in text
    assert "errors left uncorrected" in text and "--repair" in text


def test_an_unknown_shell_is_a_usage_error() -> None:
    done = subprocess.run([BENTO, "completion", "fish"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: bento completion" in done.stderr
    assert "Traceback" not in done.stderr
