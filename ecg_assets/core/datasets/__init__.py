"""Dataset layouts. Adding a layout: one module with a `DatasetLayout` subclass, listed in `LAYOUTS`."""

from __future__ import annotations

from pathlib import Path

from ecg_assets.core.datasets.base import DatasetLayout, DatasetScan
from ecg_assets.core.datasets.cinc2017 import Cinc2017Layout
from ecg_assets.core.datasets.cinc2021 import Cinc2021Layout
from ecg_assets.core.datasets.wfdb_generic import WfdbGenericLayout

# Most specific first: the first layout whose `detect` accepts a folder reads it.
LAYOUTS: tuple[DatasetLayout, ...] = (Cinc2017Layout(), Cinc2021Layout(), WfdbGenericLayout())


class UnknownLayoutError(ValueError):
    """No layout recognises a dataset folder."""


def detect_layout(folder: Path) -> DatasetLayout:
    """The layout of a dataset folder; raises `UnknownLayoutError` naming what was tried."""
    if not folder.is_dir():
        raise UnknownLayoutError(f"dataset folder {folder} does not exist")
    for layout in LAYOUTS:
        if layout.detect(folder):
            return layout
    tried = "; ".join(layout.description for layout in LAYOUTS)
    raise UnknownLayoutError(f"{folder}: no supported layout recognised (tried: {tried})")


__all__ = ["LAYOUTS", "DatasetLayout", "DatasetScan", "UnknownLayoutError", "detect_layout"]
