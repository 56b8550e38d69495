"""Dataset layouts. Adding a layout: one module with a `DatasetLayout` subclass, listed in `LAYOUTS`.

A folder's optional `dataset.yaml` may name its layout (`format: ...`); otherwise the first
layout whose `detect` accepts the folder reads it.
"""

from __future__ import annotations

from pathlib import Path

from ecg_assets.core.datasets.base import DatasetLayout, DatasetScan
from ecg_assets.core.datasets.cinc2017 import Cinc2017Layout
from ecg_assets.core.datasets.cinc2021 import Cinc2021Layout
from ecg_assets.core.datasets.config import DatasetConfigError, load_dataset_config
from ecg_assets.core.datasets.mat import MatLayout
from ecg_assets.core.datasets.ptb_diagnostic import PtbDiagnosticLayout
from ecg_assets.core.datasets.ptbxl import PtbXlLayout
from ecg_assets.core.datasets.wfdb_generic import WfdbGenericLayout

# Most specific first.
LAYOUTS: tuple[DatasetLayout, ...] = (
    PtbXlLayout(),
    PtbDiagnosticLayout(),
    Cinc2017Layout(),
    Cinc2021Layout(),
    MatLayout(),
    WfdbGenericLayout(),
)


class UnknownLayoutError(ValueError):
    """No layout recognises a dataset folder."""


def detect_layout(folder: Path) -> DatasetLayout:
    """The layout of a dataset folder; raises `UnknownLayoutError` naming what was tried."""
    if not folder.is_dir():
        raise UnknownLayoutError(f"dataset folder {folder} does not exist")
    stated = load_dataset_config(folder).format
    if stated is not None:
        by_name = {layout.name: layout for layout in LAYOUTS}
        if stated not in by_name:
            raise DatasetConfigError(f"{folder}/dataset.yaml: unknown format {stated!r}; known: {', '.join(by_name)}")
        return by_name[stated]
    for layout in LAYOUTS:
        if layout.detect(folder):
            return layout
    tried = "; ".join(layout.description for layout in LAYOUTS)
    raise UnknownLayoutError(f"{folder}: no supported layout recognised (tried: {tried})")


__all__ = ["LAYOUTS", "DatasetLayout", "DatasetScan", "UnknownLayoutError", "detect_layout"]
