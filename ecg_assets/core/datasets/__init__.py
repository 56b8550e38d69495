"""Dataset formats. Adding one: a module with a `DatasetFormat` subclass, listed in `FORMATS`.

A folder's optional `dataset.yaml` may name its format (`format: ...`); otherwise the first
format whose `detect` accepts the folder reads it.
"""

from __future__ import annotations

from pathlib import Path

from ecg_assets.core.datasets.base import DatasetFormat, DatasetScan
from ecg_assets.core.datasets.cinc2017 import Cinc2017Format
from ecg_assets.core.datasets.cinc2021 import Cinc2021Format
from ecg_assets.core.datasets.config import DatasetConfigError, load_dataset_config
from ecg_assets.core.datasets.mat import MatFormat
from ecg_assets.core.datasets.ptb_diagnostic import PtbDiagnosticFormat
from ecg_assets.core.datasets.ptbxl import PtbXlFormat
from ecg_assets.core.datasets.wfdb_generic import WfdbGenericFormat

# Most specific first.
FORMATS: tuple[DatasetFormat, ...] = (
    PtbXlFormat(),
    PtbDiagnosticFormat(),
    Cinc2017Format(),
    Cinc2021Format(),
    MatFormat(),
    WfdbGenericFormat(),
)


class UnknownFormatError(ValueError):
    """No format recognises a dataset folder."""


def detect_format(folder: Path) -> DatasetFormat:
    """The format of a dataset folder; raises `UnknownFormatError` naming what was tried."""
    if not folder.is_dir():
        raise UnknownFormatError(f"dataset folder {folder} does not exist")
    stated = load_dataset_config(folder).format
    if stated is not None:
        by_name = {dataset_format.name: dataset_format for dataset_format in FORMATS}
        if stated not in by_name:
            raise DatasetConfigError(f"{folder}/dataset.yaml: unknown format {stated!r}; known: {', '.join(by_name)}")
        return by_name[stated]
    for dataset_format in FORMATS:
        if dataset_format.detect(folder):
            return dataset_format
    tried = "; ".join(dataset_format.description for dataset_format in FORMATS)
    raise UnknownFormatError(f"{folder}: no supported format recognised (tried: {tried})")


__all__ = ["FORMATS", "DatasetFormat", "DatasetScan", "UnknownFormatError", "detect_format"]
