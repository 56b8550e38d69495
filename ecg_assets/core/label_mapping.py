"""Build a dataset's label mapping table: every record, its native labels and its unified label."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import pandas as pd

from ecg_assets.core.datasets import detect_layout
from ecg_assets.core.labels import LABELS, label_counts, read_label_overrides
from ecg_assets.core.records import RecordEntry
from ecg_assets.core.storage import atomic_write_text

logger = logging.getLogger(__name__)

COLUMNS = ("record_id", "source_file", "native_labels", "mapped_label", "label_source", "excluded_reason", "patient_id")
NATIVE_SEPARATOR = ";"
_KNOWN_EXTENSIONS = (".hea", ".mat", ".dat")


@dataclass
class LabelMapping:
    """The label mapping of one dataset, plus what could not be matched."""

    dataset: str
    layout: str
    table: pd.DataFrame
    problems: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    override_files: list[Path] = field(default_factory=list)

    @property
    def included(self) -> pd.DataFrame:
        """Records that have a unified label (the ones to process)."""
        return self.table[self.table["mapped_label"] != ""]

    def counts(self) -> dict[str, int]:
        return label_counts(self.included["mapped_label"])

    def excluded_reasons(self) -> dict[str, int]:
        excluded = self.table[self.table["mapped_label"] == ""]
        return {str(reason): int(count) for reason, count in excluded["excluded_reason"].value_counts().items()}


def normalize_record_id(raw: str) -> str:
    """A CSV record id in the form layouts use: POSIX separators, no `./`, no signal/header extension."""
    value = raw.strip().replace("\\", "/")
    while value.startswith("./"):
        value = value[2:]
    for extension in _KNOWN_EXTENSIONS:
        if value.lower().endswith(extension):
            value = value[: -len(extension)]
            break
    return value


def _match_overrides(entries: list[RecordEntry], overrides: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Map override rows onto record ids (exact id first, then by last path component)."""
    by_id = {entry.record_id: entry.record_id for entry in entries}
    by_name: dict[str, str] = {}
    for entry in entries:
        by_name.setdefault(PurePosixPath(entry.record_id).name, entry.record_id)
    matched: dict[str, str] = {}
    unmatched: list[str] = []
    for raw_id, label in overrides.items():
        key = normalize_record_id(raw_id)
        record_id = by_id.get(key) or by_name.get(PurePosixPath(key).name)
        if record_id is None:
            unmatched.append(raw_id)
        else:
            matched[record_id] = label
    return matched, unmatched


def build_label_mapping(dataset_dir: Path, dataset: str, override_files: Sequence[Path] = ()) -> LabelMapping:
    """Scan a dataset folder and map every record's native labels to `LABELS`.

    `override_files` are candidate `unified_label_mapping.csv` paths, later ones overriding
    earlier ones; missing files are skipped. A layout that has no native labels and no CSV
    maps everything to OTHER with a warning.
    """
    layout = detect_layout(dataset_dir)
    scan = layout.scan(dataset_dir)
    present = [path for path in override_files if path.is_file()]
    overrides: dict[str, str] = {}
    for path in present:
        overrides.update(read_label_overrides(path, dataset))
    matched, unmatched = _match_overrides(scan.entries, overrides)

    mapping = LabelMapping(dataset=dataset, layout=layout.name, table=pd.DataFrame(), override_files=present)
    mapping.problems = list(scan.problems)
    mapping.problems += [(raw_id, "row in unified_label_mapping.csv matches no record") for raw_id in unmatched]
    if layout.needs_label_csv and not present:
        searched = ", ".join(str(path) for path in override_files) or "nowhere"
        mapping.warnings.append(
            f"dataset {dataset!r} ({layout.description}) has no unified_label_mapping.csv "
            f"(looked in {searched}); mapping all {len(scan.entries)} record(s) to OTHER"
        )

    rows = []
    for entry in scan.entries:
        if entry.record_id in matched:
            label, source, reason = matched[entry.record_id], "override", ""
        elif layout.needs_label_csv:
            label, source, reason = "OTHER", "default", ""
        else:
            decision = layout.map_labels(entry.native_labels)
            label, source, reason = decision.label or "", "native", decision.reason
        rows.append(
            {
                "record_id": entry.record_id,
                "source_file": entry.source_file,
                "native_labels": NATIVE_SEPARATOR.join(entry.native_labels),
                "mapped_label": label,
                "label_source": source,
                "excluded_reason": reason,
                "patient_id": entry.patient_id or "",
            }
        )
    mapping.table = pd.DataFrame(rows, columns=list(COLUMNS))
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
