"""Where each partition's artifacts live under the artifacts root (one place for every path)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Dataset (partition) names become folder names: keep them to a safe, portable alphabet.
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Folders under the artifacts root that are not datasets.
POOLED_DIR = "pooled"
GENERALISATION_DIR = "generalisation"
RESERVED_NAMES = frozenset({"logs", "demo_data", POOLED_DIR, GENERALISATION_DIR})


def is_valid_dataset_name(name: str) -> bool:
    return bool(DATASET_NAME.match(name)) and name not in RESERVED_NAMES


class TrainingOutputs:
    """The paths every folder a model is trained into has, under its `root`: checkpoints, the training
    log, figures and the lock its writers take."""

    @property
    def root(self) -> Path:
        raise NotImplementedError

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def training_log(self) -> Path:
        return self.root / "training_log.json"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def lock_file(self) -> Path:
        """Held by each asset writing here while it runs: one writer at a time (`core.locks`)."""
        return self.root / ".lock"


@dataclass(frozen=True)
class PartitionArtifacts(TrainingOutputs):
    """Artifact paths of one dataset partition, as the notebook pipeline laid them out."""

    artifacts_root: Path
    dataset: str

    def __post_init__(self) -> None:
        if not is_valid_dataset_name(self.dataset):
            raise ValueError(f"invalid dataset name {self.dataset!r}")

    @property
    def root(self) -> Path:
        return self.artifacts_root / self.dataset

    @property
    def label_mapping(self) -> Path:
        return self.root / "label_mapping.csv"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def splits(self) -> Path:
        return self.processed / "splits.json"

    @property
    def test_metrics(self) -> Path:
        return self.root / "test_metrics.json"


@dataclass(frozen=True)
class PooledArtifacts(TrainingOutputs):
    """Artifact paths of the pooled model (trained on several datasets' stores, read in place)."""

    artifacts_root: Path

    @property
    def root(self) -> Path:
        return self.artifacts_root / POOLED_DIR

    @property
    def splits(self) -> Path:
        """The pooled train/val/test sets as positions into the pooled store."""
        return self.root / "splits.json"

    @property
    def plan(self) -> Path:
        """Datasets, store folders, vocabularies, mixing shares and the records that train or validate."""
        return self.root / "plan.json"

    @property
    def excluded(self) -> Path:
        return self.root / "excluded_records.csv"

    @property
    def duplicates(self) -> Path:
        return self.root / "duplicates.csv"

    @property
    def lead_sets(self) -> Path:
        return self.root / "lead_set_metrics.json"


@dataclass(frozen=True)
class GeneralisationArtifacts:
    """Where the generalisation matrix is written."""

    artifacts_root: Path

    @property
    def root(self) -> Path:
        return self.artifacts_root / GENERALISATION_DIR

    @property
    def matrix_json(self) -> Path:
        return self.root / "matrix.json"

    @property
    def matrix_csv(self) -> Path:
        return self.root / "matrix.csv"

    @property
    def heatmap(self) -> Path:
        return self.root / "matrix.png"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"


def pipeline_log(artifacts_root: Path) -> Path:
    return artifacts_root / "logs" / "pipeline.log"
