"""Record-level features of a store's records (the rhythm vector of `core.rhythm`), one row per position.

`processed_records` computes them once per record and stores them in the index (`RHYTHM_COLUMNS`);
they are read from there. A store written before those columns existed gets them computed from
each record's longest stored signal (its longer window, or the canonical tensor of a short
record): the same values, a few ms per record, once per store generation and process.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np

from ecg_assets.core.rhythm import N_RHYTHM_FEATURES, RHYTHM_COLUMNS, rhythm_features
from ecg_assets.core.store import RecordStore

logger = logging.getLogger(__name__)

DEFAULT_FS = 500.0


def record_signal(store: RecordStore, position: int, leads: Sequence[int] | None = None) -> np.ndarray:
    """float32 `[present leads, samples]`: the longest preprocessed signal the store holds for a record
    (only those of `leads`, indices into `LEAD_ORDER`, when given)."""
    present = np.flatnonzero(store.lead_masks[position])
    window = store.window_values(position)  # rows: the present leads, in order
    rows = window if window is not None else store.stored_signal(position)[present]
    if leads is not None:
        rows = rows[np.isin(present, leads)]
    return np.asarray(rows, dtype=np.float32)


def compute_rhythm_features(
    store: RecordStore, leads: Sequence[int] | None = None, positions: Sequence[int] | None = None
) -> np.ndarray:
    """float32 `[len(store), N_RHYTHM_FEATURES]` computed from the stored signals (of `leads` only, when
    given), for `positions` (default: every record; the other rows stay zero)."""
    fs = float(store.metadata.get("preprocess", {}).get("target_fs", DEFAULT_FS))
    out = np.zeros((len(store), N_RHYTHM_FEATURES), dtype=np.float32)
    chosen = range(len(store)) if positions is None else positions
    started = time.perf_counter()
    for position in chosen:
        out[position] = rhythm_features(record_signal(store, position, leads), fs)
    logger.info("rhythm features of %d records computed in %.1f s", len(chosen), time.perf_counter() - started)
    return out


_CACHE: dict[tuple[str, str], np.ndarray] = {}
_CACHE_SIZE = 4


def store_rhythm_features(
    store: RecordStore, leads: Sequence[int] | None = None, positions: Sequence[int] | None = None
) -> np.ndarray:
    """The rhythm features of every record of `store`, read-only: the index columns when present, else
    computed once per store generation and process. A pooled store (`core.pooled`) stacks its members'.

    With `leads` (scoring as if only those leads had been recorded), they are computed from those leads
    alone, for `positions` only (the records being scored; the other rows are zero), and not kept.
    """
    if leads is not None:
        return compute_rhythm_features(store, leads, positions)
    members = getattr(store, "members", None)
    if isinstance(members, dict):
        return np.concatenate(
            [store_rhythm_features(member) for member in members.values()] or [np.zeros((0, N_RHYTHM_FEATURES))]
        ).astype(np.float32)
    if len(store) and all(column in store.index for column in RHYTHM_COLUMNS):
        stored = store.index[list(RHYTHM_COLUMNS)].to_numpy(dtype=np.float32)
        if np.isfinite(stored).all():
            return stored
    key = (str(store.directory.resolve()), store.generation)
    if key not in _CACHE:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        features = compute_rhythm_features(store)
        features.flags.writeable = False
        _CACHE[key] = features
    return _CACHE[key]
