"""Identical recordings in several stores (or twice in one): candidates from fingerprints, confirmed by signal.

Every stored record carries a `signal_fingerprint` (`core.signal_fingerprint`: quantised block RMS
values of its first non-flat lead). Twins have the same fingerprint up to rounding, so
candidate pairs are records whose fingerprints agree within `MAX_BLOCK_DIFFERENCE` steps in every
block. They are found without comparing all pairs: `KEY_BLOCKS` blocks, each cut into coarse
cells on two grids offset by half a cell, give every record 2^len(KEY_BLOCKS) bucket keys; two
fingerprints within the tolerance share at least one key. Each candidate pair is then confirmed
by the Pearson correlation of the stored canonical signals, lead by lead, over the leads both
records hold (the smallest correlation must reach `min_correlation`, 0.99 by default).

Stores written before fingerprints existed have no such column: their fingerprints are computed
from the stored signals (the same function, the same float16 samples).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from itertools import product
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ecg_assets.core.signal_fingerprint import BLOCKS, parse_fingerprint, signal_fingerprint
from ecg_assets.core.store import RecordStore

logger = logging.getLogger(__name__)

FINGERPRINT_COLUMN = "signal_fingerprint"
MIN_CORRELATION = 0.99
# Quantisation steps two twins' block RMS values may differ by (1 step = 1/32 z); rounding moves them < 1.
MAX_BLOCK_DIFFERENCE = 3
# Blocks whose coarse cells (width CELL steps, on two grids offset by CELL/2) make the bucket keys.
KEY_BLOCKS = (1, 4, 7, 10, 13)  # 0.3-4.4 s: present in any record longer than ~4.5 s
CELL = 2 * (MAX_BLOCK_DIFFERENCE + 1)


@dataclass(frozen=True, order=True)
class RecordRef:
    """A record of one dataset's store: the dataset (partition), its store position and record id."""

    dataset: str
    position: int
    record_id: str

    def __str__(self) -> str:
        return f"{self.dataset}/{self.record_id}"


@dataclass(frozen=True)
class DuplicatePair:
    first: RecordRef
    second: RecordRef
    correlation: float  # the smallest per-lead correlation over the leads both hold
    leads: int  # how many leads were compared

    @property
    def across_datasets(self) -> bool:
        return self.first.dataset != self.second.dataset


@dataclass
class DuplicateReport:
    pairs: list[DuplicatePair]
    records: int  # records with a fingerprint
    candidates: int  # pairs whose fingerprints agreed (before the signal check)
    computed_fingerprints: int  # records whose fingerprint was computed here (stores without the column)
    seconds: float
    unfingerprinted: list[RecordRef] = field(default_factory=list)  # every lead flat: cannot be matched

    def groups(self) -> list[list[RecordRef]]:
        """Connected groups of twins (one recording each), every group sorted, largest first."""
        parent: dict[RecordRef, RecordRef] = {}

        def root(ref: RecordRef) -> RecordRef:
            parent.setdefault(ref, ref)
            while parent[ref] != ref:
                parent[ref] = parent[parent[ref]]
                ref = parent[ref]
            return ref

        for pair in self.pairs:
            parent[root(pair.first)] = root(pair.second)
        members: dict[RecordRef, list[RecordRef]] = {}
        for ref in list(parent):
            members.setdefault(root(ref), []).append(ref)
        return sorted((sorted(group) for group in members.values()), key=lambda group: (-len(group), group))

    def table(self) -> pd.DataFrame:
        """One row per confirmed pair."""
        rows = [
            {
                "dataset": pair.first.dataset,
                "record_id": pair.first.record_id,
                "twin_dataset": pair.second.dataset,
                "twin_record_id": pair.second.record_id,
                "correlation": round(pair.correlation, 5),
                "leads_compared": pair.leads,
            }
            for pair in self.pairs
        ]
        columns = ["dataset", "record_id", "twin_dataset", "twin_record_id", "correlation", "leads_compared"]
        return pd.DataFrame(rows, columns=columns)


def store_fingerprints(store: RecordStore) -> tuple[list[str], bool]:
    """Every record's fingerprint, from the index, or computed from the stored signals when the
    store predates the column; the flag says whether they were computed."""
    if FINGERPRINT_COLUMN in store.index:
        return [str(value) for value in store.index[FINGERPRINT_COLUMN]], False
    flat = _flat_masks(store)
    fingerprints = []
    for position in range(len(store)):
        mask = store.lead_masks[position]
        fingerprints.append(signal_fingerprint(store.stored_signal(position)[mask], mask, flat[position]))
    return fingerprints, True


def _flat_masks(store: RecordStore) -> np.ndarray:
    if "flat_mask" not in store.index or not len(store):
        return np.zeros((len(store), store.row_shape[0]), dtype=bool)
    codes = np.frombuffer("".join(store.index["flat_mask"]).encode(), np.uint8)
    return codes.reshape(len(store), -1) == ord("1")


def find_duplicates(
    stores: Mapping[str, RecordStore], min_correlation: float = MIN_CORRELATION
) -> DuplicateReport:
    """Every pair of records (across the stores, and within each) that hold the same recording."""
    started = time.perf_counter()
    refs: list[RecordRef] = []
    leads: list[int] = []
    blocks: list[np.ndarray] = []
    unfingerprinted: list[RecordRef] = []
    computed = 0
    for dataset, store in stores.items():
        fingerprints, was_computed = store_fingerprints(store)
        computed += len(fingerprints) if was_computed else 0
        record_ids = store.index["record_id"].tolist() if len(store) else []
        for position, text in enumerate(fingerprints):
            ref = RecordRef(dataset, position, str(record_ids[position]))
            parsed = parse_fingerprint(text)
            if parsed is None:
                unfingerprinted.append(ref)
                continue
            refs.append(ref)
            leads.append(parsed[0])
            blocks.append(parsed[1])
    values = np.stack(blocks).astype(np.int16) if blocks else np.zeros((0, BLOCKS), np.int16)
    candidates = candidate_pairs(np.asarray(leads, dtype=np.int64), values)
    pairs = []
    for first, second in candidates:
        a, b = refs[first], refs[second]
        correlation, compared = signal_correlation(stores[a.dataset], a.position, stores[b.dataset], b.position)
        if compared and correlation >= min_correlation:
            pairs.append(DuplicatePair(a, b, correlation, compared))
    report = DuplicateReport(
        pairs=sorted(pairs, key=lambda pair: (pair.first, pair.second)),
        records=len(refs),
        candidates=len(candidates),
        computed_fingerprints=computed,
        seconds=time.perf_counter() - started,
        unfingerprinted=unfingerprinted,
    )
    logger.info(
        "duplicate search over %d records of %d store(s): %d candidate pair(s), %d confirmed (%d across datasets) "
        "in %.2f s",
        report.records,
        len(stores),
        report.candidates,
        len(report.pairs),
        sum(pair.across_datasets for pair in report.pairs),
        report.seconds,
    )
    return report


def candidate_pairs(leads: np.ndarray, blocks: np.ndarray) -> list[tuple[int, int]]:
    """Pairs `(i, j)`, `i < j`, of the same fingerprint lead whose blocks differ by at most
    `MAX_BLOCK_DIFFERENCE` everywhere (int16 `blocks`, `[records, BLOCKS]`).

    For each of the 2^len(KEY_BLOCKS) grid combinations, records are sorted by bucket key and
    every record is compared with the next 1, 2, ... records of its bucket: memory stays linear
    in the number of records whatever the bucket sizes.
    """
    n = len(leads)
    if n < 2:
        return []
    key_values = blocks[:, list(KEY_BLOCKS)].astype(np.int64)
    found: list[np.ndarray] = []
    for offsets in product((0, CELL // 2), repeat=len(KEY_BLOCKS)):
        cells = (key_values + np.asarray(offsets)) // CELL
        keys = leads.astype(np.int64)
        for column in range(cells.shape[1]):
            keys = keys * 64 + cells[:, column]  # a cell index is below 64 (259 // CELL)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        for distance in range(1, n):
            same = sorted_keys[distance:] == sorted_keys[:-distance]
            if not same.any():
                break  # no bucket holds more than `distance` records
            first, second = order[:-distance][same], order[distance:][same]
            close = np.abs(blocks[first] - blocks[second]).max(axis=1) <= MAX_BLOCK_DIFFERENCE
            low, high = np.minimum(first, second)[close], np.maximum(first, second)[close]
            found.append(low * n + high)
    codes = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    return list(zip((codes // n).tolist(), (codes % n).tolist()))


def signal_correlation(
    first: RecordStore, first_position: int, second: RecordStore, second_position: int
) -> tuple[float, int]:
    """Smallest Pearson correlation over the non-flat leads both records hold, and how many leads that is."""
    common = first.lead_masks[first_position] & second.lead_masks[second_position]
    a = first.signals([first_position])[0][common].astype(np.float64)
    b = second.signals([second_position])[0][common].astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    norms = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    usable = norms > 0
    if not usable.any():
        return 0.0, 0
    correlations = (a * b).sum(axis=1)[usable] / norms[usable]
    return float(correlations.min()), int(usable.sum())


def refs_of(dataset: str, store: RecordStore, positions: Sequence[int]) -> list[RecordRef]:
    """`RecordRef`s of store positions."""
    record_ids = store.index["record_id"].tolist()
    return [RecordRef(dataset, int(position), str(record_ids[position])) for position in positions]
