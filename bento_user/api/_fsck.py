"""What a checker reports: the one result every file system's ``fsck`` returns, so the
tools (``bento fsck``, the fuzzers) read any file system's verdict the same way.

Exit codes are e2fsck's, which scripts already understand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

EXIT_CLEAN = 0         # no problems
EXIT_CORRECTED = 1     # problems found and repaired
EXIT_ERRORS = 4        # problems left uncorrected
EXIT_OPERATIONAL = 8   # the check could not run (no such image, not this file system)

#: ``progress(step, fraction)``: what a long tool is doing and how far it is (0..1).
Progress = Callable[[str, float], None]


@dataclass
class FsckReport:
    """A checker's findings: ``problems`` (each one line, naming what is wrong where),
    ``notes`` (worth knowing, not wrong: a journal that will be replayed, inodes
    waiting on the orphan list) and ``counts`` for the summary line, in the file
    system's own words (e.g. {"inodes": 12, "directories": 3}). After a repair,
    ``repaired`` says what it fixed and ``problems`` what is still wrong."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)  # a repair's fixes, each one line

    @property
    def clean(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        """e2fsck's: 4 when problems are left, else 1 when a repair fixed some."""
        if not self.clean:
            return EXIT_ERRORS
        return EXIT_CORRECTED if self.repaired else EXIT_CLEAN
