"""Deployment settings read from the environment, once, at the edge of the Dagster layer."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from pydantic import BaseModel

from ecg_assets.core.artifacts import is_valid_dataset_name
from ecg_assets.core.demo import DEMO_DATASETS
from ecg_assets.core.labels import OVERRIDE_FILE_NAME

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "ECG_DATA_DIR"
ARTIFACTS_DIR_ENV = "ECG_ARTIFACTS_DIR"
DEFAULT_ARTIFACTS_DIR = "artifacts"


class Settings(BaseModel):
    """Where datasets come from and where artifacts go.

    `data_dir` unset means the embedded demo: synthetic datasets generated on first use
    under `<artifacts_dir>/demo_data`.
    """

    data_dir: Path | None = None
    artifacts_dir: Path = Path(DEFAULT_ARTIFACTS_DIR)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        data_dir = environ.get(DATA_DIR_ENV) or None
        artifacts_dir = environ.get(ARTIFACTS_DIR_ENV) or DEFAULT_ARTIFACTS_DIR
        return cls(
            data_dir=Path(data_dir).expanduser().resolve() if data_dir else None,
            artifacts_dir=Path(artifacts_dir).expanduser().resolve(),
        )

    @property
    def is_demo(self) -> bool:
        return self.data_dir is None

    @property
    def demo_root(self) -> Path:
        """Where the synthetic demo datasets are generated."""
        return self.artifacts_dir / "demo_data"

    @property
    def datasets_root(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.demo_root

    def dataset_names(self) -> list[str]:
        """Partition keys: the demo datasets, or every usable sub-folder of `data_dir`."""
        if self.data_dir is None:
            return list(DEMO_DATASETS)
        if not self.data_dir.is_dir():
            logger.warning("%s=%s is not a folder; no dataset partitions", DATA_DIR_ENV, self.data_dir)
            return []
        names = []
        for folder in sorted(self.data_dir.iterdir()):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            if is_valid_dataset_name(folder.name):
                names.append(folder.name)
            else:
                logger.warning("skipping dataset folder %r: not a valid partition name", folder.name)
        return names

    def dataset_dir(self, name: str) -> Path:
        """The folder of dataset `name`: under `data_dir`, or the demo's when it is a demo dataset not found there.

        Partitions persist across settings, so a demo partition stays usable with `data_dir` set.
        """
        if not is_valid_dataset_name(name):
            raise ValueError(f"invalid dataset name {name!r}")
        if self.data_dir is not None and (name not in DEMO_DATASETS or (self.data_dir / name).is_dir()):
            return self.data_dir / name
        return self.demo_root / name

    def is_demo_dataset(self, name: str) -> bool:
        """Whether `name` is read from the generated synthetic demo."""
        return name in DEMO_DATASETS and self.dataset_dir(name).parent == self.demo_root

    def label_override_files(self, name: str) -> list[Path]:
        """Candidate unified_label_mapping.csv files, the dataset's own one last (it wins)."""
        folder = self.dataset_dir(name)
        return [folder.parent / OVERRIDE_FILE_NAME, folder / OVERRIDE_FILE_NAME]
