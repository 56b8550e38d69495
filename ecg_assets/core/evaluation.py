"""Scoring checkpoints: the one place a checkpoint is loaded for scoring and the one function that
scores it on store positions (`test_metrics`, the generalisation matrix, `pooled_model`'s lead
sets and `predict` all go through `load_scoring_model` and `score_records`), plus the test-split
evaluation with its metrics JSON and figures."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from ecg_assets.core.atomic_io import atomic_write_json
from ecg_assets.core.checkpoints import CheckpointError, file_sha256, load_checkpoint
from ecg_assets.core.labels import LABELS
from ecg_assets.core.metrics import classification_metrics, scored_classes, test_macro_f1
from ecg_assets.core.model import build_model
from ecg_assets.core.plots import plot_confusion_matrix, plot_f1_scores, plot_training_history
from ecg_assets.core.store import RecordStore
from ecg_assets.core.training import DeviceSettings, TrainingConfig, inference_batches, predict_probabilities

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("model_state", "model_config", "training_config", "preprocess", "classes", "class_mask")


@dataclass
class ScoringModel:
    """A checkpoint ready to score: the network (in eval mode), the classes it was trained on, its
    training settings (window, inference stride) and the rest of the checkpoint (epoch, history,
    preprocessing settings)."""

    model: nn.Module
    class_mask: torch.Tensor
    training: TrainingConfig
    checkpoint: dict[str, Any]
    path: Path
    sha256: str

    @property
    def model_classes(self) -> list[int]:
        """Indices (into `LABELS`) of the classes the model was trained on."""
        return np.flatnonzero(self.class_mask.cpu().numpy()).tolist()


def load_scoring_model(path: Path, device: torch.device, expected_sha256: str | None = None) -> ScoringModel:
    """Load a checkpoint (`weights_only`) for scoring, refusing one this code cannot use (or whose
    SHA-256 differs from `expected_sha256`, when given) with the reason (`CheckpointError`)."""
    checkpoint = load_checkpoint(path, map_location=device, expected_sha256=expected_sha256)
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: not a model checkpoint of this pipeline")
    if list(checkpoint["classes"]) != list(LABELS):
        raise CheckpointError(f"{path} predicts classes {checkpoint['classes']}, this code knows {list(LABELS)}")
    try:
        training = TrainingConfig.model_validate(checkpoint["training_config"])
        model = build_model(checkpoint["model_config"]).to(device)
        model.load_state_dict(checkpoint["model_state"])
    except (ValidationError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} does not match this code's model or settings: {error}") from error
    model.eval()
    class_mask = torch.as_tensor(checkpoint["class_mask"], device=device)
    sha256 = expected_sha256.strip().lower() if expected_sha256 else file_sha256(path)
    return ScoringModel(model, class_mask, training, checkpoint, path, sha256)


@dataclass
class ScoredRecords:
    """Class probabilities (`[records, len(LABELS)]`, 0 for classes the model does not know), true
    labels and mean cross-entropy of the scored records, in the order given."""

    probabilities: np.ndarray
    labels: np.ndarray
    loss: float

    def predictions(self, allowed: np.ndarray | None = None) -> np.ndarray:
        """Predicted class per record; with `allowed` (bool `[classes]` or `[records, classes]`), the
        most probable allowed class (e.g. among the classes a test dataset labels at all)."""
        probabilities = self.probabilities if allowed is None else self.probabilities * allowed
        return probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)


def score_records(
    scoring: ScoringModel,
    store: RecordStore,
    positions: Sequence[int],
    settings: DeviceSettings,
    batch_size: int = 64,
    leads: Sequence[int] | None = None,
    labels: np.ndarray | None = None,
) -> ScoredRecords:
    """Score records `positions` of `store` with a loaded checkpoint, as it was validated in training
    (its window length and multi-window inference stride).

    `leads` (indices into `LEAD_ORDER`) scores as if only those leads had been recorded (the others
    zeroed); `labels` (one per store record) replaces the store's `label_index` column.
    """
    if labels is None:
        labels = store.index["label_index"].to_numpy(dtype=np.int64) if len(store) else np.zeros(0, np.int64)
    batches = inference_batches(store, positions, labels, batch_size, scoring.training, leads=leads)
    probabilities, y_true, loss = predict_probabilities(scoring.model, batches, settings, scoring.class_mask)
    return ScoredRecords(probabilities, y_true, loss)


@dataclass
class EvaluationOutputs:
    metrics: dict
    metrics_file: Path
    f1_plot: Path
    history_plot: Path
    confusion_plot: Path
    pngs: dict[str, bytes]


def evaluate_checkpoint(
    store: RecordStore,
    splits: dict[str, list[int]],
    checkpoint_path: Path,
    settings: DeviceSettings,
    metrics_file: Path,
    figures_dir: Path,
    batch_size: int = 64,
    expected_sha256: str | None = None,
) -> EvaluationOutputs:
    """Score `splits["test"]` with a checkpoint; write `test_metrics.json` and the figures.

    Only the classes the model was trained on are scored (a class absent from training
    cannot be predicted); macro F1 averages those that also occur in the test split
    (`metrics.test_macro_f1`, the generalisation matrix's definition too), so for CinC 2017 it
    equals the challenge's mean F1 of N, A, O.
    With `expected_sha256`, a checkpoint with another hash is refused (`CheckpointError`).
    """
    scoring = load_scoring_model(checkpoint_path, settings.device, expected_sha256)
    scored = score_records(scoring, store, splits["test"], settings, batch_size)
    y_true, y_pred = scored.labels, scored.predictions()
    trained_classes = scoring.model_classes
    metrics = classification_metrics(y_true, y_pred, LABELS, trained_classes)
    metrics.update(
        {
            "macro_f1": test_macro_f1(y_true, y_pred, trained_classes),
            "macro_f1_classes": [LABELS[index] for index in scored_classes(trained_classes, y_true)],
            "test_loss": scored.loss,
            "checkpoint": str(checkpoint_path),
            "checkpoint_sha256": scoring.sha256,
            "checkpoint_verified": expected_sha256 is not None,
            "checkpoint_epoch": int(scoring.checkpoint["epoch"]),
            "majority_class_macro_f1": _majority_baseline(
                store.index["label_index"].to_numpy(dtype=np.int64)[splits["train"]], y_true, trained_classes
            ),
        }
    )
    outputs = EvaluationOutputs(
        metrics=metrics,
        metrics_file=metrics_file,
        f1_plot=figures_dir / "test_f1_scores.png",
        history_plot=figures_dir / "training_history.png",
        confusion_plot=figures_dir / "test_confusion_matrix.png",
        pngs={},
    )
    atomic_write_json(outputs.metrics_file, metrics)
    outputs.pngs["f1"] = plot_f1_scores(metrics["per_class"], outputs.f1_plot)
    outputs.pngs["history"] = plot_training_history(scoring.checkpoint["history"], outputs.history_plot)
    outputs.pngs["confusion"] = plot_confusion_matrix(
        metrics["confusion_matrix"], metrics["classes"], outputs.confusion_plot
    )
    logger.info("test macro F1 %.4f on %d records", metrics["macro_f1"], metrics["n_samples"])
    return outputs


def _majority_baseline(train_labels: np.ndarray, y_true: np.ndarray, classes: list[int]) -> float:
    """Test macro F1 of always predicting the most frequent training class (a floor to beat)."""
    majority = np.bincount(train_labels).argmax()
    return test_macro_f1(y_true, np.full_like(y_true, majority), classes)
