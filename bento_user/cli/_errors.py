"""Errors the ``bento`` command reports as one line (cf. S3QL's QuietError)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a state the user can fix; ``str()`` says how.

    Exit codes: 1 generic, 2 bad arguments (argparse's), 3 busy, 4 corrupt image.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
