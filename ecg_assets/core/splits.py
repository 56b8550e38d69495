"""Train/validation/test splits: stratified by label, reproducible from a seed."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from pydantic import BaseModel, Field, model_validator

from ecg_assets.core.storage import atomic_write_json, read_json

SPLIT_NAMES = ("train", "val", "test")


class SplitConfig(BaseModel):
    """Fractions of each class that go to each split, and the seed that fixes the draw."""

    seed: int = 42
    train_fraction: float = Field(0.8, gt=0, lt=1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> "SplitConfig":
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total}")
        return self


def stratified_split(labels: Sequence[str], config: SplitConfig) -> dict[str, list[int]]:
    """Positions of `labels` per split, stratified by label.

    Each class is shuffled with a generator seeded from `config.seed` and cut by the
    fractions; a class with at least three records puts at least one in validation and
    one in test, so rare classes are evaluated too. The same labels and seed always give
    the same split.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(config.seed)
    splits: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for label in sorted(set(labels.tolist())):
        members = rng.permutation(np.flatnonzero(labels == label))
        n = len(members)
        n_val = max(1, round(n * config.val_fraction)) if n >= 3 and config.val_fraction > 0 else 0
        n_test = max(1, round(n * config.test_fraction)) if n >= 3 and config.test_fraction > 0 else 0
        splits["val"] += members[:n_val].tolist()
        splits["test"] += members[n_val : n_val + n_test].tolist()
        splits["train"] += members[n_val + n_test :].tolist()
    return {name: sorted(positions) for name, positions in splits.items()}


def write_splits(path: Path, splits: dict[str, list[int]], record_ids: Sequence[str], config: SplitConfig) -> None:
    """`splits.json`: positions into the store (and `labels.npy`) per split, plus their record ids."""
    payload = {
        "seed": config.seed,
        "method": "stratified by mapped label",
        "fractions": {"train": config.train_fraction, "val": config.val_fraction, "test": config.test_fraction},
        **splits,
        "record_ids": {name: [record_ids[position] for position in positions] for name, positions in splits.items()},
    }
    atomic_write_json(path, payload)


def read_splits(path: Path) -> dict[str, list[int]]:
    """Store positions per split from `splits.json`."""
    payload = read_json(path)
    return {name: [int(position) for position in payload[name]] for name in SPLIT_NAMES}
