"""What every dataset layout module provides, and the shared scan result type."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from ecg_assets.core.labels import LabelDecision
from ecg_assets.core.records import Recording, RecordEntry, RecordReadError


@dataclass
class DatasetScan:
    """Records a layout found, plus what it could not match (each with a reason)."""

    entries: list[RecordEntry] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (record id or file, reason)


class DatasetLayout(ABC):
    """One native dataset layout: how to recognise it, list its records, label and read them."""

    name: str
    description: str
    needs_label_csv: bool = False  # labels come only from unified_label_mapping.csv

    @abstractmethod
    def detect(self, folder: Path) -> bool:
        """True when `folder` looks like this layout."""

    @abstractmethod
    def scan(self, folder: Path) -> DatasetScan:
        """List records with their native labels, without reading signals."""

    @abstractmethod
    def read(self, folder: Path, entry: RecordEntry, max_duration_s: float | None = None) -> Recording:
        """Read one record's signal (only the first `max_duration_s` seconds when given)."""

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        """Native labels to the unified label; layouts without native labels say OTHER."""
        return LabelDecision("OTHER", "")


def resolve_inside(folder: Path, relative: str) -> Path:
    """`folder / relative`, refusing anything that would resolve outside `folder`."""
    base = folder.resolve()
    candidate = (base / relative).resolve()
    if candidate != base and base not in candidate.parents:
        raise RecordReadError(f"path {relative!r} resolves outside the dataset folder")
    return candidate
