"""The record types that flow from dataset readers into preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class RecordEntry:
    """One record as listed by a dataset format, before any signal is read.

    `source_file` is relative to the dataset folder (POSIX separators), so a label mapping
    table stays valid when the data folder moves. `excluded_reason` marks a record the format
    found but that must not be processed (for example a second header for the same signal file).
    `files` are the record's other files known without reading it (the signal files its header
    names), relative like `source_file`: what the folder's other files are accounted against.
    """

    record_id: str
    source_file: str
    native_labels: tuple[str, ...] = ()
    patient_id: str | None = None
    strat_fold: int | None = None
    excluded_reason: str = ""
    files: tuple[str, ...] = ()


@dataclass
class Recording:
    """A signal as read from disk: `signal` is float32 `[n_leads, n_samples]` in physical units.

    `original_samples` is the full length on disk; `signal` may hold only the start of it.
    `notes` say what the reader left out (for example channels that are not ECG leads). `files`
    are every file the reader opened or looked for (a header beside a MAT file, absent or not): a
    change to any of them changes the record. `sex` and `age` are set where the file states them.
    """

    signal: np.ndarray
    fs: float
    lead_names: list[str]
    original_samples: int
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    sex: str = ""
    age: float | None = None


class RecordReadError(Exception):
    """A record that cannot be turned into a tensor; the message is shown to users as the reason."""


def duplicate_reason(record_id: str) -> str:
    """Why the second and later rows carrying one record id are skipped."""
    return f"duplicate record id {record_id!r}: an earlier row with this id is processed, this one is skipped"
