"""Several datasets' stores read as one, in place: what `pooled_model` trains on.

`PooledStore` is a read-only union view over committed `RecordStore`s (no record is copied):
position `offsets[d] + p` is record `p` of dataset `d`. It offers what the batch classes of
`core.data` and the training loop of `core.training` use (`index`, `signals`, `window_samples`,
`window_crops`, `window_values`, `lead_masks`, `row_shape`, `metadata` with a content
fingerprint for resuming, `len`), plus two things only a union has:

- `record_class_masks`: per record, the classes its dataset labels at all (its vocabulary). CinC
  2017 says N, A or O; it never says MI or BBB, and its "O" includes what PTB-XL would call a
  bundle branch block. Training masks the logits of classes outside a record's vocabulary, so a
  class a dataset never labels is never counted as its error (nor learnt as its absence).
- `mixing_weights`: each dataset's share of an epoch's draws (equal per dataset, or capped), for
  the sampler; `None` for proportional mixing (every training record once per epoch).

`plan_pooling` decides which records train and validate the pooled model: the union of the
datasets' train and validation splits, minus recordings that also sit in some test split
(`core.duplicates`), with each other duplicated recording kept once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ecg_assets.core.artifacts import PartitionArtifacts, PooledArtifacts
from ecg_assets.core.atomic_io import atomic_write_json, atomic_write_text, read_json
from ecg_assets.core.duplicates import DuplicateReport, RecordRef, find_duplicates
from ecg_assets.core.labels import LABEL_TO_INDEX, LABELS
from ecg_assets.core.splits import SPLIT_NAMES, read_splits
from ecg_assets.core.store import RecordStore

logger = logging.getLogger(__name__)

Mixing = Literal["proportional", "equal", "capped"]
TRAINING_SPLITS = ("train", "val")


class PooledStoreSpec(BaseModel):
    """A `PooledStore` in plain values (how it travels to torchrun workers)."""

    stores: dict[str, Path]  # dataset -> store folder, in pooling order
    class_vocabularies: dict[str, list[str]] | None = None  # None: no per-dataset class masking
    dataset_shares: dict[str, float] | None = None  # None: proportional mixing


def store_incompatibility(reference: RecordStore, store: RecordStore) -> str | None:
    """Why `store` cannot be pooled with `reference` (another tensor shape or sampling rate), or None."""
    if store.row_shape != reference.row_shape:
        return f"its records are {store.row_shape}, the others' {reference.row_shape}"
    rates = [
        float((candidate.metadata.get("preprocess") or {}).get("target_fs", 0.0)) for candidate in (reference, store)
    ]
    if rates[0] != rates[1]:
        return f"it was resampled to {rates[1]:g} Hz, the others to {rates[0]:g} Hz"
    return None


def dataset_vocabulary(store: RecordStore) -> list[str]:
    """The classes a dataset labels at all (any split), in `LABELS` order."""
    present = set(store.index["label"]) if len(store) else set()
    return [label for label in LABELS if label in present]


class PooledStore:
    """Read-only union of several stores, in the order given (see the module docstring)."""

    def __init__(
        self,
        stores: Mapping[str, RecordStore],
        class_vocabularies: Mapping[str, Sequence[str]] | None = None,
        dataset_shares: Mapping[str, float] | None = None,
    ):
        if not stores:
            raise ValueError("a pooled store needs at least one dataset")
        self.members = dict(stores)
        self.datasets = list(self.members)
        reference = self.members[self.datasets[0]]
        for dataset, store in self.members.items():
            reason = store_incompatibility(reference, store)
            if reason:
                raise ValueError(f"dataset {dataset} cannot be pooled with {self.datasets[0]}: {reason}")
        sizes = [len(store) for store in self.members.values()]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.dataset_codes = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
        self.local_positions = np.concatenate([np.arange(size) for size in sizes]).astype(np.int64)
        self.index = pd.concat(
            [
                store.index.assign(dataset=dataset, dataset_position=np.arange(len(store)))
                for dataset, store in self.members.items()
            ],
            ignore_index=True,
        )
        if "patient_id" in self.index:  # patient "17" of one dataset is not patient "17" of another
            known = self.index["patient_id"].fillna("").astype(str) != ""
            self.index.loc[known, "patient_id"] = self.index["dataset"] + "/" + self.index["patient_id"].astype(str)
        self.lead_masks = np.concatenate([store.lead_masks for store in self.members.values()])
        self.window_samples = np.concatenate([store.window_samples for store in self.members.values()])
        self.class_vocabularies = None if class_vocabularies is None else dict(class_vocabularies)
        self.dataset_shares = None if dataset_shares is None else dict(dataset_shares)
        self.record_class_masks = self._record_class_masks()
        self._metadata = {
            "preprocess": reference.metadata.get("preprocess", {}),
            "datasets": self.datasets,
            "content_fingerprint": self._content_fingerprint(),
        }

    @classmethod
    def from_spec(cls, spec: PooledStoreSpec) -> "PooledStore":
        stores = {dataset: RecordStore(Path(path)) for dataset, path in spec.stores.items()}
        return cls(stores, spec.class_vocabularies, spec.dataset_shares)

    def spec(self) -> PooledStoreSpec:
        return PooledStoreSpec(
            stores={dataset: store.directory for dataset, store in self.members.items()},
            class_vocabularies=self.class_vocabularies,
            dataset_shares=self.dataset_shares,
        )

    def _record_class_masks(self) -> np.ndarray | None:
        if self.class_vocabularies is None:
            return None
        masks = np.zeros((len(self.datasets), len(LABELS)), dtype=bool)
        for code, dataset in enumerate(self.datasets):
            for label in self.class_vocabularies.get(dataset, LABELS):
                masks[code, LABEL_TO_INDEX[label]] = True
        return masks[self.dataset_codes]

    def _content_fingerprint(self) -> str:
        members = [
            [dataset, store.metadata.get("content_fingerprint") or store.generation]
            for dataset, store in self.members.items()
        ]
        payload = {"members": members, "vocabularies": self.class_vocabularies, "shares": self.dataset_shares}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def row_shape(self) -> tuple[int, int]:
        return self.members[self.datasets[0]].row_shape

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    @property
    def generation(self) -> str:
        return str(self._metadata["content_fingerprint"])

    def positions(self, dataset: str, local_positions: Sequence[int]) -> list[int]:
        """Union positions of records `local_positions` of `dataset`'s store."""
        offset = int(self.offsets[self.datasets.index(dataset)])
        return [offset + int(position) for position in local_positions]

    def _member(self, position: int) -> tuple[RecordStore, int]:
        return self.members[self.datasets[self.dataset_codes[position]]], int(self.local_positions[position])

    def signals(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 `[len(indices), 12, L]`, gathered from each member store."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.row_shape), dtype=np.float32)
        codes = self.dataset_codes[indices]
        for code in np.unique(codes):
            selected = np.flatnonzero(codes == code)
            out[selected] = self.members[self.datasets[code]].signals(self.local_positions[indices[selected]])
        return out

    def signal(self, index: int) -> np.ndarray:
        return self.signals([index])[0]

    def stored_signal(self, index: int) -> np.ndarray:
        store, position = self._member(index)
        return store.stored_signal(position)

    def window_values(self, index: int) -> np.ndarray | None:
        store, position = self._member(index)
        return store.window_values(position)

    def window_crops(
        self, indices: Sequence[int] | np.ndarray, starts: Sequence[int] | np.ndarray, length: int
    ) -> np.ndarray:
        """float32 `[len(indices), 12, length]` crops of the records' longer windows (see `RecordStore`)."""
        indices, starts = np.asarray(indices, dtype=np.int64), np.asarray(starts, dtype=np.int64)
        out = np.zeros((len(indices), self.row_shape[0], length), dtype=np.float32)
        codes = self.dataset_codes[indices]
        for code in np.unique(codes):
            selected = np.flatnonzero(codes == code)
            store = self.members[self.datasets[code]]
            out[selected] = store.window_crops(self.local_positions[indices[selected]], starts[selected], length)
        return out

    def mixing_weights(self, positions: Sequence[int] | np.ndarray) -> np.ndarray | None:
        """Sampling weight of each of `positions` so that each dataset gets its share of the draws (None:
        proportional mixing, every record once per epoch)."""
        if self.dataset_shares is None:
            return None
        codes = self.dataset_codes[np.asarray(positions, dtype=np.int64)]
        counts = np.bincount(codes, minlength=len(self.datasets)).astype(np.float64)
        shares = np.array([self.dataset_shares.get(dataset, 0.0) for dataset in self.datasets], dtype=np.float64)
        return shares[codes] / counts[codes]


@dataclass
class PoolingPlan:
    """Which records train and validate the pooled model, and why others do not."""

    datasets: list[str]
    splits: dict[str, dict[str, list[int]]]  # dataset -> split -> store positions (train/val after exclusions)
    excluded: pd.DataFrame  # dataset, record_id, split, reason, twin
    vocabularies: dict[str, list[str]]
    shares: dict[str, float] | None

    def union_splits(self, store: PooledStore) -> dict[str, list[int]]:
        """The plan's splits as positions into `store` (a `PooledStore` of `datasets`, in that order)."""
        union: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
        for dataset in self.datasets:
            for name in SPLIT_NAMES:
                union[name] += store.positions(dataset, self.splits[dataset][name])
        return union

    def contributions(self) -> pd.DataFrame:
        """Per dataset: records contributed to each split, records excluded, classes labelled, share of draws."""
        rows = []
        total_train = sum(len(self.splits[dataset]["train"]) for dataset in self.datasets)
        for dataset in self.datasets:
            excluded = self.excluded[self.excluded["dataset"] == dataset]
            share = (
                self.shares[dataset] / sum(self.shares.values())
                if self.shares
                else len(self.splits[dataset]["train"]) / max(total_train, 1)
            )
            rows.append(
                {
                    "dataset": dataset,
                    "train": len(self.splits[dataset]["train"]),
                    "val": len(self.splits[dataset]["val"]),
                    "test": len(self.splits[dataset]["test"]),
                    "excluded": len(excluded),
                    "classes": ", ".join(self.vocabularies[dataset]),
                    "share_of_draws": round(share, 4),
                }
            )
        return pd.DataFrame(rows)

    def training_records(self) -> pd.DataFrame:
        """dataset, record position and split of every record that trains or validates the pooled model."""
        rows = [
            {"dataset": dataset, "position": position, "split": name}
            for dataset in self.datasets
            for name in TRAINING_SPLITS
            for position in self.splits[dataset][name]
        ]
        return pd.DataFrame(rows, columns=["dataset", "position", "split"])


def split_roles(splits: Mapping[str, Mapping[str, Sequence[int]]]) -> dict[tuple[str, int], str]:
    """`(dataset, position) -> split name` over every dataset's splits."""
    return {
        (dataset, int(position)): name
        for dataset, split in splits.items()
        for name in SPLIT_NAMES
        for position in split.get(name, [])
    }


def plan_pooling(
    stores: Mapping[str, RecordStore],
    splits: Mapping[str, Mapping[str, Sequence[int]]],
    duplicates: DuplicateReport,
    pooled: Sequence[str],
    mixing: Mixing = "proportional",
    cap: int = 1000,
) -> PoolingPlan:
    """The pooled training and validation sets of datasets `pooled`, in that order.

    `stores` and `splits` cover every dataset whose test split may hold a twin (usually every
    partition with splits), `duplicates` their twins. A recording with a twin in any test split
    never trains or validates the pooled model (every copy in `pooled`'s train and validation
    splits is excluded), so no test score of the pooled model has seen its recording. Any other
    recording held more than once is kept once: its copy in a train split before one in a
    validation split (a validation twin of a training record would flatter model selection),
    then the first dataset in `pooled` order, then the smallest record id. Test splits are never
    changed: they are the datasets' own, shared with their per-dataset models.
    """
    order = {dataset: rank for rank, dataset in enumerate(pooled)}
    roles = split_roles(splits)
    dropped: dict[RecordRef, tuple[str, RecordRef]] = {}
    for group in duplicates.groups():
        in_pool = [
            ref for ref in group if ref.dataset in order and roles.get((ref.dataset, ref.position)) in TRAINING_SPLITS
        ]
        test_twins = [ref for ref in group if roles.get((ref.dataset, ref.position)) == "test"]
        if test_twins:
            for ref in in_pool:
                twin = test_twins[0]
                dropped[ref] = (f"same recording as {twin} in the test split of {twin.dataset}", twin)
            continue
        if len(in_pool) > 1:
            kept = min(
                in_pool, key=lambda ref: (roles[(ref.dataset, ref.position)] != "train", order[ref.dataset], ref)
            )
            for ref in in_pool:
                if ref != kept:
                    role = roles[(kept.dataset, kept.position)]
                    dropped[ref] = (f"same recording as {kept}, kept once (in the {role} split)", kept)
    kept_splits: dict[str, dict[str, list[int]]] = {}
    excluded_rows = []
    for dataset in pooled:
        kept_splits[dataset] = {name: [] for name in SPLIT_NAMES}
        record_ids = stores[dataset].index["record_id"].tolist() if len(stores[dataset]) else []
        for name in SPLIT_NAMES:
            for position in splits[dataset].get(name, []):
                ref = RecordRef(dataset, int(position), str(record_ids[position]))
                if ref in dropped and name in TRAINING_SPLITS:
                    reason, twin = dropped[ref]
                    excluded_rows.append(
                        {
                            "dataset": dataset,
                            "record_id": ref.record_id,
                            "split": name,
                            "reason": reason,
                            "twin": str(twin),
                        }
                    )
                else:
                    kept_splits[dataset][name].append(int(position))
    excluded = pd.DataFrame(excluded_rows, columns=["dataset", "record_id", "split", "reason", "twin"])
    vocabularies = {dataset: dataset_vocabulary(stores[dataset]) for dataset in pooled}
    shares = mixing_shares({dataset: len(kept_splits[dataset]["train"]) for dataset in pooled}, mixing, cap)
    return PoolingPlan(list(pooled), kept_splits, excluded, vocabularies, shares)


def mixing_shares(train_counts: Mapping[str, int], mixing: Mixing, cap: int) -> dict[str, float] | None:
    """Each dataset's share of an epoch's draws: None for proportional (every record once), equal
    shares, or shares proportional to the record count capped at `cap`."""
    if mixing == "proportional":
        return None
    if mixing == "equal":
        return {dataset: 1.0 for dataset, count in train_counts.items() if count}
    if mixing == "capped":
        return {dataset: float(min(count, cap)) for dataset, count in train_counts.items() if count}
    raise ValueError(f"unknown mixing {mixing!r}: proportional, equal or capped")


def write_plan(
    path: Path,
    plan: PoolingPlan,
    stores: Mapping[str, RecordStore],
    spec: PooledStoreSpec,
    settings: Mapping[str, Any],
) -> None:
    """`plan.json`: the pooled datasets, their store folders, vocabularies, mixing, and the record ids that
    train and validate the pooled model (by id: positions change when a store is re-materialized)."""
    records = {
        dataset: {
            name: [str(stores[dataset].index["record_id"].iloc[position]) for position in plan.splits[dataset][name]]
            for name in SPLIT_NAMES
        }
        for dataset in plan.datasets
    }
    payload = {
        "datasets": plan.datasets,
        "store": json.loads(spec.model_dump_json()),
        "settings": dict(settings),
        "vocabularies": plan.vocabularies,
        "shares": plan.shares,
        "records": records,
    }
    atomic_write_json(path, payload)


def read_plan_records(path: Path) -> dict[str, dict[str, list[str]]]:
    """dataset -> split -> record ids, from `plan.json` (train and val are what the pooled model learnt from)."""
    return {dataset: dict(splits) for dataset, splits in read_json(path)["records"].items()}


def refs_by_id(
    records: Mapping[str, Mapping[str, Sequence[str]]], stores: Mapping[str, RecordStore], splits: Sequence[str]
) -> frozenset[RecordRef]:
    """The `RecordRef`s (current store positions) of the record ids of `splits`; ids no longer stored are skipped."""
    refs = set()
    for dataset, by_split in records.items():
        if dataset not in stores:
            continue
        index = stores[dataset].index
        position_of = {str(record_id): position for position, record_id in enumerate(index["record_id"])}
        for name in splits:
            for record_id in by_split.get(name, []):
                if record_id in position_of:
                    refs.add(RecordRef(dataset, position_of[record_id], record_id))
    return frozenset(refs)


def training_records_with_test_twins(
    training: frozenset[RecordRef],
    splits: Mapping[str, Mapping[str, Sequence[int]]],
    duplicates: DuplicateReport,
) -> pd.DataFrame:
    """Records of `training` that are in some test split themselves (splits changed since) or whose
    recording is (a twin): what must never happen to the pooled model. Columns: dataset, record id, twin."""
    roles = split_roles(splits)
    rows = [
        {"dataset": ref.dataset, "record_id": ref.record_id, "twin": f"{ref} itself (now in its test split)"}
        for ref in sorted(training)
        if roles.get((ref.dataset, ref.position)) == "test"
    ]
    for group in duplicates.groups():
        tests = [ref for ref in group if roles.get((ref.dataset, ref.position)) == "test"]
        for ref in group:
            twins = [test for test in tests if test != ref]
            if ref in training and twins:
                rows.append({"dataset": ref.dataset, "record_id": ref.record_id, "twin": str(twins[0])})
    return pd.DataFrame(rows, columns=["dataset", "record_id", "twin"])


def open_split_partitions(
    artifacts_root: Path, datasets: Sequence[str]
) -> tuple[dict[str, RecordStore], dict[str, dict[str, list[int]]], dict[str, str]]:
    """The store and splits of each dataset that has both on disk; the others with the reason."""
    stores: dict[str, RecordStore] = {}
    splits: dict[str, dict[str, list[int]]] = {}
    missing: dict[str, str] = {}
    for dataset in datasets:
        artifacts = PartitionArtifacts(artifacts_root, dataset)
        try:
            store = RecordStore(artifacts.processed)
        except FileNotFoundError:
            missing[dataset] = "no processed_records store on disk"
            continue
        if not artifacts.splits.is_file():
            missing[dataset] = "no splits.json on disk"
            continue
        split = read_splits(artifacts.splits)
        if any(position >= len(store) for name in SPLIT_NAMES for position in split[name]):
            missing[dataset] = "splits.json does not match the store (re-materialize splits)"
            continue
        stores[dataset], splits[dataset] = store, split
    return stores, splits, missing


def select_datasets(
    stores: Mapping[str, RecordStore],
    splits: Mapping[str, Mapping[str, Sequence[int]]],
    candidates: Sequence[str],
    class_masking: bool,
) -> tuple[list[str], dict[str, str]]:
    """The datasets among `candidates` that can train the pooled model, and why the others cannot."""
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    for dataset in candidates:
        if dataset not in stores:
            skipped[dataset] = "no store and splits on disk"
            continue
        vocabulary = dataset_vocabulary(stores[dataset])
        reason = store_incompatibility(stores[chosen[0]], stores[dataset]) if chosen else None
        if reason:
            skipped[dataset] = f"cannot be pooled with {chosen[0]}: {reason}"
        elif not splits[dataset].get("train"):
            skipped[dataset] = "empty train split"
        elif class_masking and len(vocabulary) < 2:
            skipped[dataset] = (
                f"labels one class only ({', '.join(vocabulary) or 'none'}): with per-dataset class masking "
                "its records carry no training signal"
            )
        else:
            chosen.append(dataset)
    return chosen, skipped


@dataclass
class PooledTraining:
    """Everything `pooled_model` trains from, prepared and written (see `prepare_pooled_training`)."""

    store: PooledStore
    splits: dict[str, list[int]]  # positions into `store`
    plan: PoolingPlan
    duplicates: DuplicateReport
    left_out: dict[str, str]  # dataset -> why it does not train the pooled model
    partition_stores: dict[str, RecordStore]  # every partition with a store and splits on disk
    partition_splits: dict[str, dict[str, list[int]]]


def prepare_pooled_training(
    artifacts: PooledArtifacts,
    partitions: Sequence[str],
    candidates: Sequence[str],
    left_out: Mapping[str, str],
    mixing: Mixing,
    cap: int,
    class_masking: bool,
) -> PooledTraining:
    """Open every partition's store and splits, choose the poolable `candidates`, find twins across all
    partitions, plan the pooled train/val sets, and write `splits.json`, `plan.json`, the excluded
    records and the duplicate pairs under `artifacts`. Raises ValueError when no dataset can train."""
    stores, splits, missing = open_split_partitions(artifacts.artifacts_root, partitions)
    chosen, not_poolable = select_datasets(stores, splits, candidates, class_masking)
    left_out = {**left_out, **{dataset: missing.get(dataset, reason) for dataset, reason in not_poolable.items()}}
    if not chosen:
        reasons = "; ".join(f"{dataset}: {reason}" for dataset, reason in left_out.items()) or "no partitions"
        raise ValueError(f"no dataset can train the pooled model ({reasons})")
    duplicates = find_duplicates(stores)  # over every partition: a recording in any test split must not train
    plan = plan_pooling(stores, splits, duplicates, chosen, mixing, cap)
    store = PooledStore(
        {dataset: stores[dataset] for dataset in chosen}, plan.vocabularies if class_masking else None, plan.shares
    )
    union = plan.union_splits(store)
    names = (store.index["dataset"] + "/" + store.index["record_id"]).tolist()
    record_ids = {name: [names[position] for position in union[name]] for name in SPLIT_NAMES}
    atomic_write_json(artifacts.splits, {**union, "record_ids": record_ids})
    settings = {"mixing": mixing, "cap": cap, "class_masking": class_masking}
    write_plan(artifacts.plan, plan, stores, store.spec(), settings)
    atomic_write_text(artifacts.excluded, plan.excluded.to_csv(index=False))
    atomic_write_text(artifacts.duplicates, duplicates.table().to_csv(index=False))
    logger.info(
        "pooling %s%s; %d record(s) left out as twins of test records or repeated recordings",
        ", ".join(chosen),
        f" (left out: {', '.join(left_out)})" if left_out else "",
        len(plan.excluded),
    )
    return PooledTraining(store, union, plan, duplicates, left_out, stores, splits)
