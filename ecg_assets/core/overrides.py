"""`unified_label_mapping.csv`: label overrides, row by row (`dataset,record_id,mapped_label`).

A file in `ECG_DATA_DIR/` serves every dataset; one inside a dataset folder serves that dataset
(and wins). The `dataset` column is matched like record ids are: exactly, else ignoring letter
case (`CinC2017` is the folder `cinc2017`), unless another folder carries exactly that name. An
empty `dataset` means the dataset the file is read for. A row whose dataset is no dataset folder
is never dropped silently: it comes back as a problem with its line number. Labels are
case-insensitive; an unknown label stops the partition, naming the label and its lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ecg_assets.core.labels import LABELS, LabelMappingError, normalize_label, require_columns
from ecg_assets.core.textfiles import csv_rows

OVERRIDE_COLUMNS = ("dataset", "record_id", "mapped_label")


@dataclass(frozen=True)
class OverrideRow:
    """One row of an override file, label already in canonical spelling."""

    line: int
    dataset: str
    record_id: str
    label: str


@dataclass
class DatasetOverrides:
    """The rows of one override file that apply to one dataset, and the rows that apply to no dataset."""

    rows: list[OverrideRow]
    problems: list[tuple[str, str]]  # (record id as written, reason)


def read_override_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """`(line, {column: value})` of every row (values stripped); `LabelMappingError` for missing columns."""
    rows = csv_rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        header = []
    columns = [name.strip() for name in header]
    require_columns(path, columns, OVERRIDE_COLUMNS)
    positions = {name: columns.index(name) for name in OVERRIDE_COLUMNS}
    return [
        (line, {name: (cells[index].strip() if index < len(cells) else "") for name, index in positions.items()})
        for line, cells in rows
    ]


def overrides_for_dataset(path: Path, dataset: str, known_datasets: Iterable[str] | None = None) -> DatasetOverrides:
    """The rows of `path` for `dataset`; `known_datasets` are the dataset folders the file may name (None: any
    name is some dataset, so rows of other datasets are skipped without a problem).

    Raises `LabelMappingError` when columns are missing or a row of this dataset has a label not in `LABELS`.
    """
    known = None if known_datasets is None else set(known_datasets) | {dataset}
    result = DatasetOverrides([], [])
    unknown: dict[str, list[int]] = {}
    for line, row in read_override_rows(path):
        target = _dataset_named(row["dataset"], dataset, known)
        if target is None:
            result.problems.append(
                (
                    row["record_id"],
                    f"{path.name} line {line}: dataset {row['dataset']!r} matches no dataset folder "
                    f"(known: {', '.join(sorted(known or ()))}); row ignored",
                )
            )
            continue
        if target != dataset:
            continue
        label = normalize_label(row["mapped_label"])
        if label is None:
            unknown.setdefault(row["mapped_label"], []).append(line)
            continue
        result.rows.append(OverrideRow(line, row["dataset"], row["record_id"], label))
    if unknown:
        details = "; ".join(f"{label!r} on line(s) {_short_list(lines)}" for label, lines in unknown.items())
        raise LabelMappingError(f"{path}: unknown label(s) {details}; allowed labels are {', '.join(LABELS)}")
    return result


def _dataset_named(written: str, dataset: str, known: set[str] | None) -> str | None:
    """The dataset a `dataset` cell means: empty is `dataset`; an exact name first, then the one name equal
    ignoring case; None when it names no known dataset."""
    if not written or written == dataset:
        return dataset
    if known is None:
        return dataset if written.casefold() == dataset.casefold() else written
    if written in known:
        return written
    candidates = [name for name in known if name.casefold() == written.casefold()]
    if dataset in candidates:
        return dataset
    return candidates[0] if len(candidates) == 1 else None


def read_label_overrides(path: Path, dataset: str) -> dict[str, str]:
    """`{record_id: label}` of the rows of `path` for `dataset` (later rows win); rows of other datasets are skipped."""
    return {row.record_id: row.label for row in overrides_for_dataset(path, dataset).rows}


def _short_list(values: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(value) for value in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")
