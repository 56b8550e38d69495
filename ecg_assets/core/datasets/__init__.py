"""Dataset formats. Adding one: a module with a `DatasetFormat` subclass, listed in `FORMATS`.

A folder's optional `dataset.yaml` may name its format (`format: ...`); otherwise the first
format whose `detect` accepts the folder's inventory (every file, classified once) reads it.
"""

from __future__ import annotations

from pathlib import Path

from ecg_assets.core.datasets.base import DatasetFormat, DatasetScan
from ecg_assets.core.datasets.cinc2017 import Cinc2017Format
from ecg_assets.core.datasets.cinc2021 import Cinc2021Format
from ecg_assets.core.datasets.config import DatasetConfigError, load_dataset_config
from ecg_assets.core.datasets.cpsc2018 import Cpsc2018Format
from ecg_assets.core.datasets.inventory import FolderInventory
from ecg_assets.core.datasets.mat import MatFormat
from ecg_assets.core.datasets.ptb_diagnostic import PtbDiagnosticFormat
from ecg_assets.core.datasets.ptbxl import PtbXlFormat
from ecg_assets.core.datasets.wfdb_generic import WfdbGenericFormat
from ecg_assets.core.labels import LabelMappingError
from ecg_assets.core.paths import OutsideFolderError

# Most specific first.
FORMATS: tuple[DatasetFormat, ...] = (
    PtbXlFormat(),
    PtbDiagnosticFormat(),
    Cpsc2018Format(),
    Cinc2017Format(),
    Cinc2021Format(),
    MatFormat(),
    WfdbGenericFormat(),
)


class UnknownFormatError(ValueError):
    """No format recognises a dataset folder."""


def detect_format(folder: Path, inventory: FolderInventory | None = None) -> DatasetFormat:
    """The format of a dataset folder, judged on its whole inventory (hidden and macOS metadata files
    left out); raises `UnknownFormatError` naming what was tried."""
    if not folder.is_dir():
        raise UnknownFormatError(f"dataset folder {folder} does not exist")
    stated = load_dataset_config(folder).format
    if stated is not None:
        by_name = {dataset_format.name: dataset_format for dataset_format in FORMATS}
        if stated not in by_name:
            raise DatasetConfigError(f"{folder}/dataset.yaml: unknown format {stated!r}; known: {', '.join(by_name)}")
        return by_name[stated]
    inventory = inventory if inventory is not None else FolderInventory.of(folder)
    for dataset_format in FORMATS:
        if dataset_format.detect(inventory):
            return dataset_format
    tried = "; ".join(dataset_format.description for dataset_format in FORMATS)
    raise UnknownFormatError(f"{folder}: no supported format recognised (tried: {tried})")


def scan_dataset(folder: Path) -> tuple[DatasetFormat, DatasetScan]:
    """Detect the folder's format and scan it, walking the folder once."""
    inventory = FolderInventory.of(folder) if folder.is_dir() else None
    dataset_format = detect_format(folder, inventory)
    return dataset_format, dataset_format.scan(folder, inventory)


# What stops a partition (or `predict`) with a one-line message: the dataset folder itself is unusable.
DATASET_ERRORS = (DatasetConfigError, UnknownFormatError, LabelMappingError, OutsideFolderError)

__all__ = [
    "DATASET_ERRORS",
    "FORMATS",
    "DatasetFormat",
    "DatasetScan",
    "FolderInventory",
    "UnknownFormatError",
    "detect_format",
    "scan_dataset",
]
