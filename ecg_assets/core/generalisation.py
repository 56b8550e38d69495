"""The cross-dataset generalisation matrix: every model scored on every dataset's test split.

A cell is one model on one test split:

- **macro F1** over the classes the model knows that occur in the test split
  (`metrics.scored_macro_f1`, the definition `test_metrics` uses, so the diagonal equals it);
- predictions are made among the classes the **test dataset labels at all** (its vocabulary): a
  CinC 2017 record can only be N, A or O, so a model's BBB on it can be neither right nor wrong
  (the mirror of the class masking the pooled model is trained with). On the diagonal this
  changes nothing: a dataset's own model only knows classes its dataset labels;
- a 95 % percentile-bootstrap interval over the test records and the record count;
- per-class precision, recall, F1 and support;
- **leakage**: test records whose recording (found by `core.duplicates`) trained or validated the
  model are counted and listed, and the macro F1 without them is given next to the full one.

A model without a checkpoint, or a dataset without a test split, is a labelled gap, never an error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

from ecg_assets.core.atomic_io import atomic_write_json, atomic_write_text
from ecg_assets.core.checkpoints import CheckpointError, file_sha256
from ecg_assets.core.duplicates import DuplicateReport, RecordRef
from ecg_assets.core.labels import LABEL_TO_INDEX, LABELS
from ecg_assets.core.metrics import scored_macro_f1_with_interval
from ecg_assets.core.plots import plot_score_matrix
from ecg_assets.core.scoring import ScoringModel, load_scoring_model, score_positions
from ecg_assets.core.signal import LEAD_ORDER
from ecg_assets.core.store import RecordStore
from ecg_assets.core.training import DeviceSettings

logger = logging.getLogger(__name__)

POOLED = "pooled"
LEAKED_IDS_KEPT = 20
LIMB_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")
# Lead subsets the pooled model is scored on, each on the test records that hold every lead of the set.
LEAD_SETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("all 12 leads", LEAD_ORDER),
    ("limb leads", LIMB_LEADS),
    ("I + II", ("I", "II")),
    ("lead I only", ("I",)),
    ("lead II only", ("II",)),
)
AS_RECORDED = "as recorded"


@dataclass
class CellScore:
    """One model on one set of test records."""

    records: int
    macro_f1: float
    ci_low: float
    ci_high: float
    classes: list[str]  # the classes the macro F1 averages over
    per_class: dict[str, dict[str, float]]


def score_cell(
    probabilities: np.ndarray, y_true: np.ndarray, model_classes: Sequence[int], vocabulary: Sequence[str]
) -> CellScore | None:
    """Macro F1 (with its bootstrap interval) and per-class scores of scored test records, predicted among
    the test dataset's `vocabulary`; None when the model knows none of the classes in the records."""
    allowed = np.zeros(len(LABELS), dtype=bool)
    allowed[[LABEL_TO_INDEX[label] for label in vocabulary]] = True
    y_pred = (probabilities * allowed).argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    macro, (low, high), classes = scored_macro_f1_with_interval(y_true, y_pred, model_classes)
    if not len(y_true) or not classes:
        return None
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    per_class = {
        LABELS[label]: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(classes, precision, recall, f1, support)
    }
    return CellScore(
        records=int(len(y_true)),
        macro_f1=macro,
        ci_low=low,
        ci_high=high,
        classes=[LABELS[label] for label in classes],
        per_class=per_class,
    )


def unmeasurable_reason(model_classes: Sequence[int], vocabulary: Sequence[str]) -> str | None:
    """Why a model cannot be measured on a dataset at all, or None: predictions are made among the classes
    both know, so with fewer than two every prediction is forced (a dataset labelling only OTHER would
    score any model 1.0)."""
    common = [LABELS[index] for index in model_classes if LABELS[index] in vocabulary]
    if len(common) >= 2:
        return None
    return f"nothing to measure: the model and the test dataset share {len(common)} class(es) ({', '.join(common)})"


@dataclass
class ModelSource:
    """A model to put in the matrix: its checkpoint (None when there is none) and what it learnt from."""

    name: str  # the dataset it was trained on, or POOLED
    checkpoint: Path | None
    expected_sha256: str | None = None
    gap: str = ""  # why the model is missing (empty when it is there)
    trained_on: frozenset[RecordRef] = frozenset()  # records of its train and validation sets


@dataclass
class HeldOutSplit:
    """A dataset's test split (store None when the dataset has none)."""

    dataset: str
    store: RecordStore | None
    positions: list[int] = field(default_factory=list)
    gap: str = ""

    @property
    def vocabulary(self) -> list[str]:
        if self.store is None or not len(self.store):
            return []
        present = set(self.store.index["label"])
        return [label for label in LABELS if label in present]


@dataclass
class Cell:
    model: str
    test_set: str
    status: str  # "scored" or "gap"
    gap: str = ""
    records: int = 0
    macro_f1: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    classes: list[str] = field(default_factory=list)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    leaked_records: int = 0
    leaked_record_ids: list[str] = field(default_factory=list)
    macro_f1_without_leaked: float | None = None
    checkpoint_sha256: str = ""

    @property
    def diagonal(self) -> bool:
        return self.model == self.test_set


@dataclass
class GeneralisationMatrix:
    models: list[str]
    test_sets: list[str]
    cells: list[Cell]
    duplicate_pairs: int
    duplicate_pairs_across_datasets: int

    def cell(self, model: str, test_set: str) -> Cell:
        return next(cell for cell in self.cells if cell.model == model and cell.test_set == test_set)

    def to_json(self) -> dict:
        return {
            "definition": "macro F1 over the classes the model knows that occur in the test split; predictions "
            "among the classes the test dataset labels; 95% percentile bootstrap over test records",
            "models": self.models,
            "test_sets": self.test_sets,
            "duplicate_pairs": self.duplicate_pairs,
            "duplicate_pairs_across_datasets": self.duplicate_pairs_across_datasets,
            "cells": [_finite(asdict(cell)) for cell in self.cells],
        }

    def table(self) -> pd.DataFrame:
        """One row per cell: scores, interval, record count, leakage and per-class F1."""
        rows = []
        for cell in self.cells:
            row = {
                "model": cell.model,
                "test_set": cell.test_set,
                "status": cell.status,
                "gap": cell.gap,
                "records": cell.records,
                "macro_f1": cell.macro_f1,
                "ci_low": cell.ci_low,
                "ci_high": cell.ci_high,
                "classes": " ".join(cell.classes),
                "leaked_records": cell.leaked_records,
                "macro_f1_without_leaked": cell.macro_f1_without_leaked,
            }
            row.update({f"f1_{label}": cell.per_class.get(label, {}).get("f1") for label in LABELS})
            rows.append(row)
        return pd.DataFrame(rows)


def _finite(values: dict) -> dict:
    """NaN (an interval without records) as None, so the JSON is valid."""
    return {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in values.items()}


def build_matrix(
    models: Sequence[ModelSource],
    test_sets: Sequence[HeldOutSplit],
    duplicates: DuplicateReport,
    settings: DeviceSettings,
) -> GeneralisationMatrix:
    """Score every model on every test split (each checkpoint loaded once, see `core.evaluation`)."""
    group_of = {ref: number for number, group in enumerate(duplicates.groups()) for ref in group}
    cells = []
    for source in models:
        scoring, sha256, gap = _load(source, settings)
        trained_groups = {group_of[ref] for ref in source.trained_on if ref in group_of}
        for test_set in test_sets:
            if gap or test_set.gap:
                cells.append(Cell(source.name, test_set.dataset, "gap", gap=gap or test_set.gap))
                continue
            assert scoring is not None and test_set.store is not None
            cell = _score(source, scoring, test_set, settings, group_of, trained_groups)
            cell.checkpoint_sha256 = sha256
            cells.append(cell)
    pairs = duplicates.pairs
    return GeneralisationMatrix(
        models=[source.name for source in models],
        test_sets=[test_set.dataset for test_set in test_sets],
        cells=cells,
        duplicate_pairs=len(pairs),
        duplicate_pairs_across_datasets=sum(pair.across_datasets for pair in pairs),
    )


def _load(source: ModelSource, settings: DeviceSettings) -> tuple[ScoringModel | None, str, str]:
    """The model, its checkpoint's SHA-256, and why it is missing (empty when it is there)."""
    if source.gap:
        return None, "", source.gap
    if source.checkpoint is None or not source.checkpoint.is_file():
        return None, "", f"no checkpoint at {source.checkpoint}"
    try:
        scoring = load_scoring_model(source.checkpoint, settings.device, source.expected_sha256)
    except CheckpointError as error:
        logger.warning("model %s left out of the matrix: %s", source.name, error)
        return None, "", str(error)
    return scoring, source.expected_sha256 or file_sha256(source.checkpoint), ""


def _score(
    source: ModelSource,
    scoring: ScoringModel,
    test_set: HeldOutSplit,
    settings: DeviceSettings,
    group_of: dict[RecordRef, int],
    trained_groups: set[int],
) -> Cell:
    store = test_set.store
    assert store is not None
    probabilities, y_true, _ = score_positions(scoring, store, test_set.positions, settings)
    unmeasurable = unmeasurable_reason(scoring.trained_classes, test_set.vocabulary)
    score = None if unmeasurable else score_cell(probabilities, y_true, scoring.trained_classes, test_set.vocabulary)
    if score is None:
        known = ", ".join(LABELS[index] for index in scoring.trained_classes)
        reason = unmeasurable or f"the model knows none of its test records' classes (it knows {known})"
        return Cell(source.name, test_set.dataset, "gap", gap=reason)
    record_ids = store.index["record_id"].tolist()
    leaked = [
        ordinal
        for ordinal, position in enumerate(test_set.positions)
        if group_of.get(RecordRef(test_set.dataset, int(position), str(record_ids[position])), -1) in trained_groups
    ]
    without = None
    if leaked:
        keep = np.setdiff1d(np.arange(len(test_set.positions)), leaked)
        clean_score = score_cell(probabilities[keep], y_true[keep], scoring.trained_classes, test_set.vocabulary)
        without = clean_score.macro_f1 if clean_score is not None else None
    return Cell(
        model=source.name,
        test_set=test_set.dataset,
        status="scored",
        records=score.records,
        macro_f1=score.macro_f1,
        ci_low=score.ci_low,
        ci_high=score.ci_high,
        classes=score.classes,
        per_class=score.per_class,
        leaked_records=len(leaked),
        leaked_record_ids=[str(record_ids[test_set.positions[ordinal]]) for ordinal in leaked[:LEAKED_IDS_KEPT]],
        macro_f1_without_leaked=without,
    )


def write_matrix(matrix: GeneralisationMatrix, json_path: Path, csv_path: Path) -> None:
    """`matrix.json` (every cell with per-class scores and leaked record ids) and `matrix.csv`, atomically."""
    atomic_write_json(json_path, matrix.to_json())
    atomic_write_text(csv_path, matrix.table().to_csv(index=False))


def lead_set_scores(
    scoring: ScoringModel,
    test_sets: Sequence[HeldOutSplit],
    settings: DeviceSettings,
    lead_sets: Sequence[tuple[str, Sequence[str]]] = LEAD_SETS,
) -> pd.DataFrame:
    """Test macro F1 of one model per dataset and lead set: first every test record as recorded, then
    each lead set on the records that hold all of its leads, scored as if only those were recorded
    (e.g. "lead I only" on 12-lead records next to "all 12 leads" on the same records)."""
    rows = []
    for test_set in test_sets:
        if test_set.gap or test_set.store is None or unmeasurable_reason(scoring.trained_classes, test_set.vocabulary):
            continue
        store = test_set.store
        positions = np.asarray(test_set.positions, dtype=np.int64)
        runs: list[tuple[str, np.ndarray, list[int] | None]] = [(AS_RECORDED, positions, None)]
        for name, leads in lead_sets:
            indices = [LEAD_ORDER.index(lead) for lead in leads]
            holding = positions[store.lead_masks[positions][:, indices].all(axis=1)] if len(positions) else positions
            if len(holding):
                runs.append((name, holding, indices))
        for name, selected, indices in runs:
            probabilities, y_true, _ = score_positions(scoring, store, selected, settings, leads=indices)
            score = score_cell(probabilities, y_true, scoring.trained_classes, test_set.vocabulary)
            rows.append(
                {
                    "dataset": test_set.dataset,
                    "lead_set": name,
                    "records": int(len(selected)),
                    "macro_f1": None if score is None else round(score.macro_f1, 4),
                    "ci_low": None if score is None else round(score.ci_low, 4),
                    "ci_high": None if score is None else round(score.ci_high, 4),
                    "classes": "" if score is None else " ".join(score.classes),
                }
            )
    return pd.DataFrame(rows, columns=["dataset", "lead_set", "records", "macro_f1", "ci_low", "ci_high", "classes"])


def plot_matrix(matrix: GeneralisationMatrix, path: Path | None = None) -> bytes:
    """The matrix as a heat map: macro F1, its interval and record count per cell; gaps grey with their
    reason; cells with leaked test records marked."""
    scores = np.full((len(matrix.models), len(matrix.test_sets)), np.nan)
    annotations = [["" for _ in matrix.test_sets] for _ in matrix.models]
    for row, model in enumerate(matrix.models):
        for column, test_set in enumerate(matrix.test_sets):
            cell = matrix.cell(model, test_set)
            if cell.status != "scored" or cell.macro_f1 is None:
                annotations[row][column] = "\n".join(_wrap(f"gap: {cell.gap}", 28)[:3])
                continue
            scores[row, column] = cell.macro_f1
            text = f"{cell.macro_f1:.2f}\n[{cell.ci_low:.2f}, {cell.ci_high:.2f}]\nn={cell.records}"
            if cell.leaked_records:
                text += f"\nLEAK: {cell.leaked_records} seen in training"
            annotations[row][column] = text
    rows = ["pooled model (all datasets)" if model == POOLED else f"{model} model" for model in matrix.models]
    title = "Test macro F1 [95% bootstrap interval], records"
    return plot_score_matrix(scores, annotations, rows, matrix.test_sets, title, path)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines
