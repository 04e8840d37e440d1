"""Progress lines for long work: redrawn in place on a terminal, silent otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last = 0.0
        self._step = ""

    def __call__(self, step: str, fraction: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if step == self._step and now - self._last < 0.1 and fraction < 1:
            return
        if self._step and step != self._step:
            sys.stderr.write("\n")
        self._step, self._last = step, now
        sys.stderr.write(f"\r{step}: {fraction * 100:5.1f}%")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._step:
            sys.stderr.write("\n")
            self._step = ""
