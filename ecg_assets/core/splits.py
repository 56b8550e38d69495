"""Train/validation/test splits: by PTB-XL's strat_fold, grouped by patient, stratified by label.

Which rule applies (the first that can):

1. every record has a PTB-XL `strat_fold` (1-10): folds 1-8 train, 9 validation, 10 test, as
   PTB-XL recommends (its folds already keep each patient in one fold);
2. records carry patient ids: each patient's records go to one split together (a record
   without a patient id is its own group), patients stratified by their most frequent label;
3. otherwise: stratified by label, each record on its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, model_validator

from ecg_assets.core.atomic_io import atomic_write_json, read_json

SPLIT_NAMES = ("train", "val", "test")
STRAT_FOLD_SPLITS = {"train": frozenset(range(1, 9)), "val": frozenset({9}), "test": frozenset({10})}
METHOD_STRAT_FOLD = "PTB-XL strat_fold: folds 1-8 train, 9 validation, 10 test"
METHOD_PATIENTS = "grouped by patient, stratified by label"
METHOD_STRATIFIED = "stratified by label"


class SplitConfig(BaseModel):
    """Fractions of each class that go to each split, the seed that fixes the draw, and which rules apply."""

    seed: int = 42
    train_fraction: float = Field(0.8, gt=0, lt=1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    use_strat_fold: bool = Field(True, description="Use PTB-XL strat_fold when every record has one.")
    group_by_patient: bool = Field(True, description="Keep each patient's records in one split.")

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> "SplitConfig":
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total}")
        return self


@dataclass
class SplitResult:
    """Store positions per split, the rule that made them, and anything worth telling the user."""

    positions: dict[str, list[int]]
    method: str
    notes: list[str] = field(default_factory=list)


def assign_splits(
    labels: Sequence[str],
    config: SplitConfig,
    patient_ids: Sequence[str | None] | None = None,
    folds: Sequence[int | None] | None = None,
) -> SplitResult:
    """Split records by the first rule that applies (see the module docstring)."""
    n = len(labels)
    patients = [
        str(p).strip() if p is not None and str(p).strip() not in ("", "nan") else None
        for p in patient_ids or [None] * n
    ]
    notes: list[str] = []
    if config.use_strat_fold and folds is not None and n and all(fold in range(1, 11) for fold in folds):
        positions = {
            name: [i for i, fold in enumerate(folds) if fold in members] for name, members in STRAT_FOLD_SPLITS.items()
        }
        spanning = _patients_in_several_splits(positions, patients)
        if not spanning:
            return SplitResult(positions, METHOD_STRAT_FOLD)
        notes.append(f"strat_fold puts {len(spanning)} patient(s) in several splits (e.g. {spanning[0]}): not used")
    grouped = config.group_by_patient and any(patients)
    groups = [patient if grouped and patient else _own_group(i) for i, patient in enumerate(patients)]
    return SplitResult(
        grouped_stratified_split(labels, groups, config), METHOD_PATIENTS if grouped else METHOD_STRATIFIED, notes
    )


def grouped_stratified_split(labels: Sequence[str], groups: Sequence[str], config: SplitConfig) -> dict[str, list[int]]:
    """Positions per split where every group (patient) lands in exactly one split.

    Groups are stratified by their most frequent label; within each label the groups are
    shuffled with the seed and taken for validation until it holds its fraction of that label's
    records, then for test, the rest for training. A label with at least three groups puts at
    least one group in validation and one in test.
    """
    members: dict[str, list[int]] = defaultdict(list)
    for position, group in enumerate(groups):
        members[group].append(position)
    by_label: dict[str, list[str]] = defaultdict(list)
    for group, positions in members.items():  # groups in order of first appearance
        counts = Counter(labels[position] for position in positions)
        by_label[min(counts, key=lambda label: (-counts[label], label))].append(group)
    rng = np.random.default_rng(config.seed)
    splits: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for label in sorted(by_label):
        label_groups = [by_label[label][i] for i in rng.permutation(len(by_label[label]))]
        n_records = sum(len(members[group]) for group in label_groups)
        enough = len(label_groups) >= 3
        targets = {
            name: max(1, round(n_records * fraction)) if enough and fraction > 0 else 0
            for name, fraction in (("val", config.val_fraction), ("test", config.test_fraction))
        }
        taken = {"val": 0, "test": 0}
        for group in label_groups:
            name = next((name for name in ("val", "test") if taken[name] < targets[name]), "train")
            splits[name] += members[group]
            if name != "train":
                taken[name] += len(members[group])
    return {name: sorted(positions) for name, positions in splits.items()}


def cross_validation_folds(
    labels: Sequence[str], groups: Sequence[str | None] | None, folds: int, seed: int
) -> list[list[int]]:
    """Positions (into `labels`) of `folds` disjoint folds, stratified by label and grouped.

    A group (a patient; `None` or empty: the record alone) lands in one fold. Groups are stratified
    by their most frequent label and dealt, largest first within each label (ties in a seeded
    random order), to the fold that holds the fewest records of that label so far, so every fold
    gets about `1/folds` of each class.
    """
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    keys = [
        str(group) if group not in (None, "") else _own_group(i)
        for i, group in enumerate(groups or [None] * len(labels))
    ]
    members: dict[str, list[int]] = defaultdict(list)
    for position, key in enumerate(keys):
        members[key].append(position)
    by_label: dict[str, list[str]] = defaultdict(list)
    for key, positions in members.items():
        counts = Counter(labels[position] for position in positions)
        by_label[min(counts, key=lambda label: (-counts[label], label))].append(key)
    rng = np.random.default_rng(seed)
    fold_positions: list[list[int]] = [[] for _ in range(folds)]
    for label in sorted(by_label):
        keys_of_label = [by_label[label][i] for i in rng.permutation(len(by_label[label]))]
        keys_of_label.sort(key=lambda key: -len(members[key]))  # stable: random order among equal sizes
        held = [0] * folds
        for key in keys_of_label:
            target = min(range(folds), key=lambda fold: (held[fold], len(fold_positions[fold])))
            fold_positions[target] += members[key]
            held[target] += len(members[key])
    return [sorted(positions) for positions in fold_positions]


def stratified_split(labels: Sequence[str], config: SplitConfig) -> dict[str, list[int]]:
    """Positions per split, stratified by label, each record on its own (the same draw as before patients)."""
    return grouped_stratified_split(labels, [_own_group(i) for i in range(len(labels))], config)


def strat_folds_for(record_ids: Sequence[str], mapping_table: pd.DataFrame) -> list[int | None]:
    """The PTB-XL strat_fold of each record id, from a label mapping table (None where it has none)."""
    if "strat_fold" not in mapping_table.columns:
        return [None] * len(record_ids)
    folds = mapping_table.drop_duplicates("record_id").set_index("record_id")["strat_fold"]
    values = [str(folds.get(record_id, "")).strip() for record_id in record_ids]
    return [int(value) if value.isdigit() else None for value in values]


def _own_group(position: int) -> str:
    return f"\0record {position}"  # cannot collide with a patient id read from a file


def _patients_in_several_splits(positions: dict[str, list[int]], patients: Sequence[str | None]) -> list[str]:
    seen: dict[str, set[str]] = defaultdict(set)
    for name, members in positions.items():
        for position in members:
            if patients[position]:
                seen[patients[position]].add(name)
    return sorted(patient for patient, names in seen.items() if len(names) > 1)


def write_splits(
    path: Path,
    splits: dict[str, list[int]],
    record_ids: Sequence[str],
    config: SplitConfig,
    method: str = METHOD_STRATIFIED,
) -> None:
    """`splits.json`: positions into the store (and `labels.npy`) per split, plus their record ids."""
    payload = {
        "seed": config.seed,
        "method": method,
        "fractions": {"train": config.train_fraction, "val": config.val_fraction, "test": config.test_fraction},
        **splits,
        "record_ids": {name: [record_ids[position] for position in positions] for name, positions in splits.items()},
    }
    atomic_write_json(path, payload)


def read_splits(path: Path) -> dict[str, list[int]]:
    """Store positions per split from `splits.json`."""
    payload = read_json(path)
    return {name: [int(position) for position in payload[name]] for name in SPLIT_NAMES}
