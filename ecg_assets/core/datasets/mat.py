"""MAT files without WFDB headers: `*.mat` whose sampling rate and lead names a dataset.yaml states.

Labels come from unified_label_mapping.csv. Each file holds one `[leads, samples]` (or
`[samples, leads]`) numeric matrix in the variable `mat_variable` (default `val`), or in a field of a
struct variable (`mat_variable: ECG.data`, MAT v5).
"""

from __future__ import annotations

from pathlib import Path

from ecg_assets.core.datasets.base import DatasetFormat, DatasetScan, record_id_of, resolve_inside
from ecg_assets.core.datasets.config import CONFIG_FILE_NAME, DatasetConfig, DatasetConfigError, load_dataset_config
from ecg_assets.core.datasets.inventory import FolderInventory
from ecg_assets.core.readers import read_mat_signal
from ecg_assets.core.records import RecordEntry, Recording


def _signal_config(folder: Path) -> DatasetConfig:
    config = load_dataset_config(folder)
    missing = [name for name in ("sampling_rate", "lead_names") if getattr(config, name) is None]
    if missing:
        raise DatasetConfigError(
            f"{folder / CONFIG_FILE_NAME}: MAT files without WFDB headers need {' and '.join(missing)} "
            "stated in dataset.yaml"
        )
    return config


class MatFormat(DatasetFormat):
    name = "mat"
    description = "MAT files without .hea headers + dataset.yaml (sampling_rate, lead_names); labels from CSV"
    needs_label_csv = True

    def detect(self, inventory: FolderInventory) -> bool:
        return bool(inventory.with_suffix(".mat")) and not inventory.with_suffix(".hea")

    def list_records(self, folder: Path, inventory: FolderInventory) -> DatasetScan:
        _signal_config(folder)
        return DatasetScan(
            entries=[RecordEntry(record_id_of(relative), relative) for relative in inventory.with_suffix(".mat")]
        )

    def read(self, folder: Path, entry: RecordEntry, max_duration_s: float | None = None) -> Recording:
        config = _signal_config(folder)
        path = resolve_inside(folder, entry.source_file)
        return read_mat_signal(
            path, config.sampling_rate, config.lead_names, config.gain, config.mat_variable, max_duration_s
        )
