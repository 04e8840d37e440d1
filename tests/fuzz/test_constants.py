"""Hypothesis draws from the constants of the local modules a process has loaded;
inside ``fixed_constants`` the pool is the file system's own and does not grow when
another local module is imported (before, the same seed drew differently after
``import bento_user.cli``: issue 17's withdrawn ops rules)."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis.internal.conjecture import providers

from filesystems.tiny import Tiny
from fuzz.constants import fixed_constants


def test_a_module_imported_during_a_run_does_not_change_the_pool(tmp_path: Path) -> None:
    (tmp_path / "late_module_for_constants.py").write_text("ODD = 987654321\nNAME = b'late-bytes'\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with fixed_constants(Tiny):
            before = providers._get_local_constants()
            import late_module_for_constants  # noqa: F401
            after = providers._get_local_constants()
            assert 987654321 not in after.integers and after == before
            assert {4096, 255} <= set(after.integers)  # tiny's block size and longest name
        assert 987654321 in providers._get_local_constants().integers  # outside: Hypothesis's own
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("late_module_for_constants", None)
