"""Progress of long command-line work, on stderr: a redrawn bar with rate and ETA when the stream is a
terminal, a plain line at every tenth of the work when it is not (logs, CI, pipes).

The core reports progress through plain callbacks (`done, total`); this is the one place that draws it.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Callable, TextIO

BAR_WIDTH = 24
REDRAW_SECONDS = 0.1  # a terminal bar is redrawn at most this often (always on completion)
PLAIN_STEPS = 10  # plain lines: one per tenth of the work, and one at the end
CLEAR_LINE = "\r\x1b[K"


class ProgressBar:
    """Progress of one task (`preprocessing`, `scoring`, ...) counted in `unit`s; `update(done, total)` as it goes.

    `interactive` defaults to whether `stream` is a terminal. Rate and ETA are measured from construction.
    """

    def __init__(
        self,
        task: str,
        unit: str = "records",
        stream: TextIO | None = None,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.task, self.unit = task, unit
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = _is_terminal(self.stream) if interactive is None else interactive
        self.clock = clock
        self.started = clock()
        self.done, self.total = 0.0, 0
        self._drawn_at = -math.inf
        self._plain_step = -1
        self._visible = False

    def update(self, done: float, total: int) -> None:
        """Record that `done` of `total` units are finished, and show it if it is time to."""
        self.done, self.total = float(done), int(total)
        finished = self.total > 0 and self.done >= self.total
        if self.interactive:
            now = self.clock()
            if finished or now - self._drawn_at >= REDRAW_SECONDS:
                self._drawn_at = now
                self.redraw()
            return
        step = PLAIN_STEPS if finished else int(PLAIN_STEPS * self.done / self.total) if self.total else 0
        if step > self._plain_step and (step > 0 or finished):
            self._plain_step = step
            self.stream.write(self.text(plain=True) + "\n")
            self.stream.flush()

    def __call__(self, done: float, total: int) -> None:
        self.update(done, total)

    def text(self, plain: bool = False) -> str:
        """`task [#####-----]  45% 90/200 records 31.2 records/s ETA 0:04` (plain: without the bar)."""
        fraction = min(self.done / self.total, 1.0) if self.total else 0.0
        elapsed = self.clock() - self.started
        rate = self.done / elapsed if elapsed > 0 and self.done > 0 else None
        eta = (self.total - self.done) / rate if rate else None
        count = f"{math.floor(self.done)}/{self.total} {self.unit}"
        speed = _rate(rate, self.unit)
        remaining = "done" if fraction >= 1 else f"ETA {_duration(eta)}"
        if plain:
            return f"{self.task}: {count} ({fraction:.0%}, {speed}, {remaining})"
        filled = round(BAR_WIDTH * fraction)
        return f"{self.task} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction:4.0%} {count} {speed} {remaining}"

    def redraw(self) -> None:
        """Draw the bar again (after another line was printed above it)."""
        if self.interactive and self.total:
            self.stream.write(CLEAR_LINE + self.text())
            self.stream.flush()
            self._visible = True

    def clear(self) -> None:
        """Erase the bar so that another line can be printed in its place."""
        if self.interactive and self._visible:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
            self._visible = False

    def close(self) -> None:
        """Leave the last state of the bar on its own line."""
        if self.interactive and self._visible:
            self.redraw()
            self.stream.write("\n")
            self.stream.flush()
            self._visible = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _rate(rate: float | None, unit: str) -> str:
    if rate is None:
        return f"? {unit}/s"
    if rate >= 1:
        return f"{rate:.1f} {unit}/s"
    return f"{1 / rate:.1f} s/{unit.removesuffix('s')}"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StageProgress:
    """One `ProgressBar` per stage of a task (`reading`, then `scoring`, ...): a `progress(stage, done, total)`
    callback for the core. `print_line` prints a line above the current bar without breaking it."""

    def __init__(self, unit: str = "records", stream: TextIO | None = None, interactive: bool | None = None):
        self.unit, self.stream, self.interactive = unit, stream, interactive
        self.bars: dict[str, ProgressBar] = {}
        self.current: ProgressBar | None = None

    def __call__(self, stage: str, done: float, total: int) -> None:
        if stage not in self.bars:
            self.close()
            self.bars[stage] = ProgressBar(stage, self.unit, self.stream, self.interactive)
        self.current = self.bars[stage]
        self.current.update(done, total)

    def print_line(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        if self.current is not None:
            self.current.clear()
        stream.write(text.rstrip("\n") + "\n")
        stream.flush()
        if self.current is not None:
            self.current.redraw()

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


class ProgressLogHandler(logging.Handler):
    """A logging handler that prints records above the bars of a `StageProgress`."""

    def __init__(self, progress: StageProgress, level: int = logging.INFO):
        super().__init__(level)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.progress.print_line(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)
