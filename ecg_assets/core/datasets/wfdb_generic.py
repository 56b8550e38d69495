"""Any WFDB folder (`.hea` + `.dat`/`.mat`, any rate and lead set), labelled by unified_label_mapping.csv."""

from __future__ import annotations

from pathlib import Path

from ecg_assets.core.datasets.base import DatasetFormat, DatasetScan, record_id_of, scan_headers
from ecg_assets.core.datasets.inventory import FolderInventory
from ecg_assets.core.records import RecordEntry


class WfdbGenericFormat(DatasetFormat):
    name = "wfdb"
    description = "generic WFDB records (.hea + .dat/.mat); labels from unified_label_mapping.csv"
    needs_label_csv = True

    def detect(self, inventory: FolderInventory) -> bool:
        return bool(inventory.with_suffix(".hea"))

    def list_records(self, folder: Path, inventory: FolderInventory) -> DatasetScan:
        return scan_headers(
            folder, inventory.with_suffix(".hea"), lambda relative, _: RecordEntry(record_id_of(relative), relative)
        )
