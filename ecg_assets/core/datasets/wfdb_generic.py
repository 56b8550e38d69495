"""Any WFDB folder (`.hea` + `.dat`/`.mat`, any rate and lead set), labelled by unified_label_mapping.csv."""

from __future__ import annotations

from pathlib import Path

from ecg_assets.core.datasets.base import DatasetLayout, DatasetScan, resolve_inside
from ecg_assets.core.readers import read_wfdb
from ecg_assets.core.records import Recording, RecordEntry


class WfdbGenericLayout(DatasetLayout):
    name = "wfdb"
    description = "generic WFDB records (.hea + .dat/.mat); labels from unified_label_mapping.csv"
    needs_label_csv = True

    def detect(self, folder: Path) -> bool:
        return any(folder.rglob("*.hea"))

    def scan(self, folder: Path) -> DatasetScan:
        entries = []
        for header in sorted(folder.rglob("*.hea")):
            relative = header.relative_to(folder).as_posix()
            entries.append(RecordEntry(relative[: -len(".hea")], relative))
        return DatasetScan(entries=entries)

    def read(self, folder: Path, entry: RecordEntry, max_duration_s: float | None = None) -> Recording:
        return read_wfdb(resolve_inside(folder, entry.source_file), max_duration_s)
