"""What `ecg-assets materialize` shows of a Dagster CLI run: the lines a person reads, and progress bars.

The Dagster CLI prints every event of a run (DEBUG: step workers starting, resources, outputs, ...)
and Python warnings about its own beta and superseded APIs. Without `--verbose` only these remain:
the pipeline's own log lines (INFO and above; a warning repeated by several steps, like the CPU
fallback, once), failures with their tracebacks, failed checks, skipped steps and one line per
finished step. The periodic `stored N/M records` lines of preprocessing and the epoch and batch
lines of training drive a progress bar on a terminal (plain lines otherwise, `cli.progress`).
The Dagster run log itself is untouched: the UI keeps every event and every epoch line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Iterable, Sequence, TextIO

from ecg_assets.cli.progress import ProgressBar

# `2026-12-02 00:57:05 +0000 - dagster - DEBUG - JOB - RUN_ID - rest`
EVENT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - dagster - (?P<level>[A-Z]+) - (?P<job>\S+) - "
    r"(?P<run_id>[0-9a-f]{8}-[0-9a-f-]{27}) - (?P<rest>.*)$"
)
# Structured events: `PID - [STEP - ]EVENT_TYPE - message`; the pipeline's own logs: `STEP - message`.
STRUCTURED_EVENT = re.compile(r"^(?P<pid>\d+) - (?:(?P<step>\S+) - )?(?P<event>[A-Z][A-Z_]+) - (?P<message>.*)$")
USER_LOG = re.compile(r"^(?P<step>\S+) - (?P<message>.*)$")
PYTHON_WARNING = re.compile(r"^\S.*:\d+: (?P<category>\w+Warning): ")
# Dagster's notices about its own APIs: not something a user of this pipeline can act on.
NOISY_WARNINGS = frozenset({"BetaWarning", "SupersessionWarning", "PreviewWarning", "ExperimentalWarning"})
SHOWN_EVENTS = frozenset({"STEP_SKIPPED", "RUN_CANCELED"})
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

# Progress reported by the core's log lines (core/preprocessing.py, core/training.py).
STORED_RECORDS = re.compile(r"^stored (?P<done>\d+)/(?P<total>\d+) records")
STORED_ALL = re.compile(r"^stored \d+ of (?P<total>\d+) records in ")
TRAINING_START = re.compile(r"^training .*, (?P<epochs>\d+) epochs$")
EPOCH_DONE = re.compile(r"^epoch (?P<epoch>\d+)/(?P<epochs>\d+) train_loss")
EPOCH_BATCH = re.compile(r"^epoch (?P<epoch>\d+) batch (?P<batch>\d+)/(?P<batches>\d+)")
# Steps whose progress is drawn from the start of the step: (task, unit).
PROGRESS_TASKS = {
    "processed_records": ("preprocessing", "records"),
    "trained_model": ("training", "epochs"),
    "pooled_model": ("training", "epochs"),
}


class RunOutputFilter:
    """Turns the Dagster CLI's output, line by line, into what is shown (`feed`), drawing progress bars."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False, interactive: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.verbose, self.interactive = verbose, interactive
        self.bar: ProgressBar | None = None
        self.bar_step: str | None = None
        self.epochs: int | None = None
        self._hiding_warning = False
        self._warnings_seen: set[str] = set()

    def feed(self, line: str) -> None:
        """Classify one line of output and print what should be shown of it."""
        line = line.rstrip("\n")
        if self.verbose:
            self._print(line)
            return
        text = self._classify(line)
        if text is not None:
            self._print(text)

    def close(self) -> None:
        self._close_bar()

    def _classify(self, line: str) -> str | None:
        warning = PYTHON_WARNING.match(line)
        if warning:  # `file:line: XWarning: message`, then the offending source line, indented
            self._hiding_warning = warning["category"] in NOISY_WARNINGS
            return None if self._hiding_warning else line
        if self._hiding_warning and line[:1].isspace():
            return None
        self._hiding_warning = False
        event = EVENT_LINE.match(line)
        if event is None:  # anything else (a traceback, the CLI's own errors) is shown as it is
            return line
        level = LEVELS.get(event["level"], LEVELS["INFO"])
        structured = STRUCTURED_EVENT.match(event["rest"])
        if structured:
            return self._event(structured["step"], structured["event"], structured["message"], level)
        user = USER_LOG.match(event["rest"])
        step, message = (user["step"], user["message"]) if user else ("", event["rest"])
        if self.bar_step is not None and step != self.bar_step:  # another step speaks: the bar's step is over
            self._close_bar()
        if self._progress(step, message) or level < LEVELS["INFO"]:
            return None
        if level >= LEVELS["WARNING"]:
            if message in self._warnings_seen:  # e.g. the CPU fallback, said by every step on the CPU
                return None
            self._warnings_seen.add(message)
        return f"{_level_prefix(level)}{step + ': ' if step else ''}{message}"

    def _event(self, step: str | None, event: str, message: str, level: int) -> str | None:
        if self.bar_step is not None and (step != self.bar_step or event in ("STEP_SUCCESS", "STEP_FAILURE")):
            self._close_bar()
        if event == "STEP_SUCCESS":
            timing = re.search(r" in (\S+)\.$", message)
            return f"{step}: done" + (f" in {timing.group(1)}" if timing else "")
        if event == "STEP_START" and step in PROGRESS_TASKS:
            self._start_bar(step, *PROGRESS_TASKS[step])
        if event == "ASSET_CHECK_EVALUATION" and not message.rstrip(".").endswith("passed"):
            return f"{step}: {message}"
        if level >= LEVELS["WARNING"] or event in SHOWN_EVENTS:
            return f"{_level_prefix(level)}{step + ': ' if step else ''}{message}"
        return None

    def _progress(self, step: str, message: str) -> bool:
        """Update the bar from a progress line; True when the line said nothing else worth showing."""
        stored = STORED_RECORDS.match(message)
        if stored:
            self._update(step, "preprocessing", "records", int(stored["done"]), int(stored["total"]))
            return True
        finished = STORED_ALL.match(message)
        if finished:
            self._update(step, "preprocessing", "records", int(finished["total"]), int(finished["total"]))
            self._close_bar()
            return False
        start = TRAINING_START.match(message)
        if start:
            self.epochs = int(start["epochs"])
            self._update(step, "training", "epochs", 0, self.epochs)
            return False
        batch = EPOCH_BATCH.match(message)
        if batch and self.epochs:
            done = int(batch["epoch"]) - 1 + int(batch["batch"]) / int(batch["batches"])
            self._update(step, "training", "epochs", done, self.epochs)
            return True
        epoch = EPOCH_DONE.match(message)
        if epoch:
            self.epochs = int(epoch["epochs"])
            self._update(step, "training", "epochs", int(epoch["epoch"]), self.epochs)
        return False

    def _start_bar(self, step: str, task: str, unit: str) -> None:
        self._close_bar()
        self.bar = ProgressBar(f"{step}: {task}", unit, self.stream, self.interactive)
        self.bar_step = step

    def _update(self, step: str, task: str, unit: str, done: float, total: int) -> None:
        if self.bar is None or self.bar_step != step:
            self._start_bar(step, task, unit)
        assert self.bar is not None
        self.bar.unit = unit
        self.bar.update(done, total)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.bar_step = None, None

    def _print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.bar is not None:
            self.bar.redraw()


def _level_prefix(level: int) -> str:
    """`WARNING ` / `ERROR ` before a line of that level; nothing for INFO."""
    return next((f"{name} " for name, value in LEVELS.items() if value == level and value >= LEVELS["WARNING"]), "")


def filter_lines(lines: Iterable[str], stream: TextIO, verbose: bool = False, interactive: bool | None = None) -> None:
    """Feed every line of `lines` through a `RunOutputFilter` printing to `stream`."""
    output = RunOutputFilter(stream, verbose, interactive)
    try:
        for line in lines:
            output.feed(line)
    finally:
        output.close()


def run_dagster(command: Sequence[str], env: dict[str, str], verbose: bool = False) -> int:
    """Run a Dagster CLI command, showing its output through the filter on stderr; returns its exit code."""
    process = subprocess.Popen(
        list(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert process.stdout is not None
    try:
        filter_lines(process.stdout, sys.stderr, verbose)
    except KeyboardInterrupt:  # the child got the same SIGINT: let it finish cleaning up
        process.wait()
        raise
    return process.wait()
