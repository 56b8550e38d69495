"""Build a dataset's label mapping table: every record, its native labels and its unified label."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from ecg_assets.core.atomic_io import atomic_write_text
from ecg_assets.core.datasets import scan_dataset
from ecg_assets.core.labels import LABELS, label_counts
from ecg_assets.core.overrides import OverrideRow, overrides_for_dataset
from ecg_assets.core.paths import dataset_file
from ecg_assets.core.record_ids import RecordIdIndex, normalize_record_id
from ecg_assets.core.records import RecordEntry, duplicate_reason

logger = logging.getLogger(__name__)

COLUMNS = (
    "record_id",
    "source_file",
    "native_labels",
    "mapped_label",
    "label_source",
    "excluded_reason",
    "patient_id",
    "strat_fold",
    "record_files",
)
NATIVE_SEPARATOR = ";"
FILES_SEPARATOR = ";"

__all__ = ["COLUMNS", "LabelMapping", "build_label_mapping", "normalize_record_id", "read_label_mapping"]


@dataclass
class LabelMapping:
    """The label mapping of one dataset, plus what could not be matched.

    `problems` lists CSV rows that match no record (override rows naming no dataset included) and
    files that look like recordings but belong to no record, each with a reason; `ignored_files` are
    hidden and macOS metadata files and files the layout deliberately leaves unread, with the reason.
    Records without any label (no native label and no override row) are `unlabelled`.
    """

    dataset: str
    dataset_format: str
    table: pd.DataFrame
    problems: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    override_files: list[Path] = field(default_factory=list)
    ignored_files: list[tuple[str, str]] = field(default_factory=list)

    @property
    def included(self) -> pd.DataFrame:
        """Records that have a unified label (the ones to process)."""
        return self.table[self.table["mapped_label"] != ""]

    @property
    def unlabelled(self) -> pd.DataFrame:
        """Records that no label source covers: no native label and no override row."""
        return self.table[(self.table["native_labels"] == "") & (self.table["label_source"] != "override")]

    def counts(self) -> dict[str, int]:
        return label_counts(self.included["mapped_label"])

    def excluded_reasons(self) -> dict[str, int]:
        excluded = self.table[self.table["mapped_label"] == ""]
        return {str(reason): int(count) for reason, count in excluded["excluded_reason"].value_counts().items()}


def _match_overrides(
    index: RecordIdIndex, rows: list[tuple[Path, OverrideRow]]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Override rows onto record ids (rules in `record_ids`); rows that match nothing come back with why."""
    matched: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for path, row in rows:
        record_id, reason = index.match(row.record_id)
        if record_id is None:
            problems.append((row.record_id, f"row in {path.name}: {reason}"))
            continue
        if matched.get(record_id, row.label) != row.label:
            problems.append((row.record_id, f"another row also labels record {record_id}; this later row wins"))
        matched[record_id] = row.label
    return matched, problems


def _duplicate_problems(entries: list[RecordEntry]) -> list[tuple[str, str]]:
    """Label rows that repeat a record (same id, same file): all kept, only the first is processed."""
    counts = Counter((entry.record_id, entry.source_file) for entry in entries)
    return [
        (record_id, duplicate_reason(record_id)) for (record_id, _), count in counts.items() for _ in range(count - 1)
    ]


def _known_datasets(override_file: Path, dataset_dir: Path) -> list[str]:
    """The datasets an override file may name: this one for a file inside the dataset folder, else every
    dataset folder beside it."""
    if override_file.parent.resolve() == dataset_dir.resolve():
        return [dataset_dir.name]
    try:
        return [path.name for path in override_file.parent.iterdir() if path.is_dir() and not path.name.startswith(".")]
    except OSError:
        return [dataset_dir.name]


def build_label_mapping(dataset_dir: Path, dataset: str, override_files: Sequence[Path] = ()) -> LabelMapping:
    """Scan a dataset folder and map every record's native labels to `LABELS`.

    `override_files` are candidate `unified_label_mapping.csv` paths, later ones overriding
    earlier ones; missing files are skipped, symbolic links leaving their folder refused. A
    format that has no native labels maps records without an override row to OTHER, with a
    warning. Every record stays in the table, with the reason when it is excluded; rows sharing
    a record id are all kept (only the first is processed). Every file that looks like a recording
    is a record's file, a problem or an ignored file (`DatasetFormat.scan`).
    """
    dataset_format, scan = scan_dataset(dataset_dir)
    present = [dataset_file(path.parent, path.name) for path in override_files if path.is_file()]
    override_rows: list[tuple[Path, OverrideRow]] = []
    override_problems: list[tuple[str, str]] = []
    for path in present:
        found = overrides_for_dataset(path, dataset, _known_datasets(path, dataset_dir))
        override_rows += [(path, row) for row in found.rows]
        override_problems += found.problems
    index = RecordIdIndex(((entry.record_id, [entry.source_file]) for entry in scan.entries), dataset_dir.name)
    matched, unmatched = _match_overrides(index, override_rows)
    decide = scan.labeler or dataset_format.map_labels

    rows = []
    for entry in scan.entries:
        if entry.excluded_reason:
            label, source, reason = "", "", entry.excluded_reason
        elif entry.record_id in matched:
            label, source, reason = matched[entry.record_id], "override", ""
        elif dataset_format.needs_label_csv:
            label, source, reason = "OTHER", "default", ""
        else:
            decision = decide(entry.native_labels)
            label, source, reason = decision.label or "", "native" if decision.label else "", decision.reason
        rows.append(
            {
                "record_id": entry.record_id,
                "source_file": entry.source_file,
                "native_labels": NATIVE_SEPARATOR.join(entry.native_labels),
                "mapped_label": label,
                "label_source": source,
                "excluded_reason": reason,
                "patient_id": entry.patient_id or "",
                "strat_fold": "" if entry.strat_fold is None else str(entry.strat_fold),
                "record_files": FILES_SEPARATOR.join(name for name in entry.files if name != entry.source_file),
            }
        )
    mapping = LabelMapping(
        dataset,
        dataset_format.name,
        pd.DataFrame(rows, columns=list(COLUMNS)),
        override_files=present,
        ignored_files=list(scan.ignored),
    )
    mapping.problems = list(scan.problems) + override_problems + unmatched + _duplicate_problems(scan.entries)
    defaulted = int((mapping.table["label_source"] == "default").sum())
    if defaulted:
        searched = ", ".join(str(path) for path in override_files) or "nowhere"
        mapping.warnings.append(
            f"dataset {dataset!r} ({dataset_format.description}): {defaulted} record(s) have no row in "
            f"unified_label_mapping.csv (looked in {searched}); mapping them to OTHER"
        )
    for message in mapping.warnings:
        logger.warning(message)
    assert set(mapping.included["mapped_label"]) <= set(LABELS)
    return mapping


def write_label_mapping(table: pd.DataFrame, path: Path) -> None:
    """Write the mapping table as CSV (atomically)."""
    atomic_write_text(path, table.to_csv(index=False))


def read_label_mapping(path: Path) -> pd.DataFrame:
    """Read a mapping table written by `write_label_mapping` (all columns as strings)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)
