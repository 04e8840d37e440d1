"""One status line for long work: redrawn in place on a terminal; elsewhere (a CI log)
a plain line every ``log_every`` seconds, or nothing."""

from __future__ import annotations

import sys
import time

REDRAW = 0.1  # seconds between redraws on a terminal


class Progress:
    """``show(text)`` for free-form status (the fuzzers), ``progress(step, fraction)``
    for a task in named steps (mkfs, fsck: a finished step keeps its line)."""

    def __init__(self, enabled: bool | None = None, log_every: float | None = None) -> None:
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.log_every = log_every
        self._last = 0.0
        self._step = ""
        self._shown = False

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if force or now - self._last >= REDRAW:
                sys.stderr.write(f"\r{text}\x1b[K")
                sys.stderr.flush()
                self._last, self._shown = now, True
        elif self.log_every is not None and now - self._last >= self.log_every:
            print(text, file=sys.stderr, flush=True)
            self._last = now

    def __call__(self, step: str, fraction: float) -> None:
        new_step = step != self._step
        if new_step and self._step and self.tty and self._shown:
            sys.stderr.write("\n")  # the finished step keeps its line
        self._step = step
        self.show(f"{step}: {fraction * 100:5.1f}%", force=new_step or fraction >= 1)

    def done(self) -> None:
        """End the line; what follows (a summary) starts on a line of its own."""
        if self.tty and self._shown:
            sys.stderr.write("\n")
        self._last, self._step, self._shown = 0.0, "", False
