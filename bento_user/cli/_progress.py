"""Progress of long work, for people: rich's bars (percentage, elapsed, time left) on a
terminal; plain lines elsewhere (a CI log, a pipe), or nothing.

Two shapes of work use it. A task in named steps (mkfs, fsck's passes) calls
``progress(step, fraction)``: a step is finished when the next one starts or the
work ends, and is then shown at 100 % whatever its last report said, so a fast pass
never stays at 0 %. Free-form status (the fuzzers) calls ``show(text)``. rich is
imported only when a terminal will see it: a pipe costs nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

REDRAW = 0.1  # seconds between redraws on a terminal


class Progress:
    """``enabled``: None shows bars on a terminal only; True also prints plain lines
    elsewhere (``fsck --progress``). ``log_every``: off a terminal, repeat the
    free-form status as a line this often (the fuzzers' heartbeat in CI logs).
    ``console``: a rich Console to draw on (tests); it implies a terminal."""

    def __init__(self, enabled: bool | None = None, log_every: float | None = None,
                 console: Any = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = console is not None or (enabled is not False and self.stream.isatty())
        self.plain = not self.tty and bool(enabled)
        self.log_every = log_every
        self._console = console
        self._bars: Any = None  # rich.progress.Progress, once something is shown
        self._task: Any = None
        self._step = ""
        self._step_started = 0.0
        self._last = 0.0

    # -- a task in steps --------------------------------------------------------------

    def __call__(self, step: str, fraction: float) -> None:
        if step != self._step:
            self._finish_step()
            self._step, self._step_started = step, time.monotonic()
            if self.tty:
                self._task = self._rich().add_task(step, total=1.0)
        if self.tty:
            self._bars.update(self._task, completed=min(max(fraction, 0.0), 1.0))

    def _finish_step(self) -> None:
        if not self._step:
            return
        if self.tty:
            self._bars.update(self._task, completed=1.0)
        elif self.plain:
            print(f"{self._step}: 100% ({time.monotonic() - self._step_started:.2f} s)",
                  file=self.stream, flush=True)
        self._step = ""

    # -- free-form status -------------------------------------------------------------

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if self._task is None:
                self._task = self._rich(spinner=True).add_task(text, total=None)
            elif force or now - self._last >= REDRAW:
                self._bars.update(self._task, description=text)
                self._last = now
        elif (self.plain or self.log_every is not None) and (
                force or now - self._last >= (self.log_every or 0.0)):
            print(text, file=self.stream, flush=True)
            self._last = now

    # -- the end ----------------------------------------------------------------------

    def done(self, finished: bool = True) -> None:
        """Close the display; the last step counts as finished unless the work failed.
        What follows (a summary) starts on a line of its own."""
        if finished:
            self._finish_step()
        if self._bars is not None:
            self._bars.stop()
        self._bars, self._task, self._step, self._last = None, None, "", 0.0

    def _rich(self, spinner: bool = False) -> Any:
        if self._bars is None:
            from rich.console import Console
            from rich.progress import BarColumn, SpinnerColumn, TaskProgressColumn, TextColumn
            from rich.progress import Progress as Bars
            from rich.progress import TimeElapsedColumn, TimeRemainingColumn

            console = self._console or Console(file=self.stream)
            columns = ([SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
                       if spinner else
                       [TextColumn("{task.description:<24}"), BarColumn(), TaskProgressColumn(),
                        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()])
            self._bars = Bars(*columns, console=console, refresh_per_second=10)
            self._bars.start()
        return self._bars
