"""Data-quality rules behind the asset checks: finite signals, usable and disjoint splits, labels that match."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from ecg_assets.core.labels import LABELS
from ecg_assets.core.store import RecordStore


class FailedShareConfig(BaseModel):
    """How many unreadable records a dataset may have before it is flagged."""

    max_failed_share: float = Field(
        0.05, ge=0, le=1, description="Flag the dataset when more than this share of its records failed."
    )


def non_finite_records(store: RecordStore, chunk_size: int = 256) -> list[int]:
    """Store positions of records holding a NaN or an infinity anywhere in what is stored: every
    lead of the canonical tensor (absent ones included) and the longer window (read in chunks;
    memory stays flat)."""
    bad: list[int] = []
    for start in range(0, len(store), chunk_size):
        stop = min(start + chunk_size, len(store))
        finite = np.isfinite(store.stored_rows(start, stop)).reshape(stop - start, -1).all(axis=1)
        for offset in range(stop - start):
            window = store.window_values(start + offset)
            if not finite[offset] or (window is not None and not np.isfinite(window).all()):
                bad.append(start + offset)
    return bad


@dataclass
class SplitCoverage:
    """Split sizes, empty splits and training classes that validation never sees."""

    sizes: dict[str, int]
    empty_splits: list[str]
    train_classes_missing_from_val: list[str]


def split_coverage(labels: Sequence[str], splits: Mapping[str, Sequence[int]]) -> SplitCoverage:
    """Which splits are empty, and which classes are in train but not in validation."""
    labels = np.asarray(labels, dtype=object)
    present = {name: set(labels[list(positions)].tolist()) for name, positions in splits.items()}
    return SplitCoverage(
        sizes={name: len(positions) for name, positions in splits.items()},
        empty_splits=[name for name, positions in splits.items() if len(positions) == 0],
        train_classes_missing_from_val=_in_label_order(present.get("train", set()) - present.get("val", set())),
    )


@dataclass
class SplitOverlaps:
    """Record ids and patient ids found in more than one split (each with the splits it is in)."""

    records: dict[str, list[str]] = field(default_factory=dict)
    patients: dict[str, list[str]] = field(default_factory=dict)
    patients_known: int = 0

    @property
    def disjoint(self) -> bool:
        return not self.records and not self.patients


def split_overlaps(index: pd.DataFrame, splits: Mapping[str, Sequence[int]]) -> SplitOverlaps:
    """Leaks between splits: a record (by id) or a patient in two splits. Empty patient ids are unknown, not shared."""
    overlaps = SplitOverlaps()
    columns = [column for column in ("record_id", "patient_id") if column in index.columns]
    members: dict[str, dict[str, set[str]]] = {column: {} for column in columns}
    for name, positions in splits.items():
        rows = index.iloc[list(positions)]
        for column in columns:
            for value in rows[column].astype(str):
                if value:
                    members[column].setdefault(value, set()).add(name)
    in_several = {
        column: {key: sorted(names) for key, names in found.items() if len(names) > 1}
        for column, found in members.items()
    }
    overlaps.records = in_several.get("record_id", {})
    overlaps.patients = in_several.get("patient_id", {})
    overlaps.patients_known = len(members.get("patient_id", {}))
    return overlaps


@dataclass
class LabelComparison:
    """Per-label counts (label mapping vs processed + failed) and the records that break the match."""

    table: pd.DataFrame
    relabelled: list[str]  # processed with a label other than the mapping's
    unexpected: list[str]  # processed but not a labelled record of the mapping
    duplicated: list[str]  # processed more than once
    unaccounted: list[str]  # labelled in the mapping, neither processed nor failed
    repeated_rows: list[str] = field(default_factory=list)  # later mapping rows of a record id (skipped, by design)

    @property
    def matches(self) -> bool:
        return not (self.relabelled or self.unexpected or self.duplicated or self.unaccounted)


def compare_label_distribution(
    expected: pd.DataFrame, processed: pd.DataFrame, failed_ids: Iterable[str]
) -> LabelComparison:
    """Check the processed records against the label mapping's labelled records.

    `expected` and `processed` have `record_id` and a label column (`mapped_label`, resp. `label`).
    They match when every labelled record was processed once with its mapped label, or failed. A record
    id on several rows is expected once, with its first row's label: preprocessing processes the first
    row and skips the later ones with a reason (`repeated_rows`).
    """
    record_ids = expected["record_id"].astype(str)
    first = expected[~record_ids.duplicated()]
    mapped = dict(zip(first["record_id"].astype(str), first["mapped_label"].astype(str)))
    stored = list(zip(processed["record_id"].astype(str), processed["label"].astype(str)))
    stored_ids = {record_id for record_id, _ in stored}
    failed = {record_id for record_id in map(str, failed_ids) if record_id in mapped and record_id not in stored_ids}
    accounted = failed | {record_id for record_id, _ in stored}
    counts = pd.DataFrame(
        {
            "label_mapping": Counter(mapped.values()),
            "processed": Counter(label for _, label in stored),
            "failed": Counter(mapped[record_id] for record_id in failed),
        }
    )
    counts = counts.reindex(_in_label_order(counts.index)).fillna(0).astype(int)
    counts["difference"] = counts["label_mapping"] - counts["processed"] - counts["failed"]
    return LabelComparison(
        table=counts.rename_axis("label").reset_index(),
        relabelled=[record_id for record_id, label in stored if record_id in mapped and mapped[record_id] != label],
        unexpected=[record_id for record_id, _ in stored if record_id not in mapped],
        duplicated=sorted(record_id for record_id, n in Counter(r for r, _ in stored).items() if n > 1),
        unaccounted=[record_id for record_id in mapped if record_id not in accounted],
        repeated_rows=record_ids[record_ids.duplicated()].tolist(),
    )


def failed_share(processed: int, failed: int) -> float:
    """Failed records as a share of all attempted records (0 when nothing was attempted)."""
    attempted = processed + failed
    return failed / attempted if attempted else 0.0


def _in_label_order(labels: Iterable[str]) -> list[str]:
    """Labels in vocabulary order, unknown ones last (sorted)."""
    labels = set(labels)
    return [label for label in LABELS if label in labels] + sorted(labels - set(LABELS))
