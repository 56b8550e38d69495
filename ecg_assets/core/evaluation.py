"""Test-split evaluation of the best checkpoint: metrics JSON and figures."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_assets.core.atomic_io import atomic_write_json, read_json
from ecg_assets.core.checkpoints import file_sha256
from ecg_assets.core.ensemble import training_histories
from ecg_assets.core.labels import LABELS
from ecg_assets.core.metrics import (
    bootstrap_intervals,
    classification_metrics,
    scored_macro_f1,
    scored_macro_f1_with_interval,
)
from ecg_assets.core.plots import plot_confusion_matrix, plot_f1_scores, plot_training_history
from ecg_assets.core.scoring import load_scoring_model, score_positions
from ecg_assets.core.store import RecordStore
from ecg_assets.core.training import DeviceSettings, read_training_log

logger = logging.getLogger(__name__)


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
    training_log: Path | None = None,
    dataset: str | None = None,
) -> EvaluationOutputs:
    """Score `splits["test"]` with a checkpoint; write `test_metrics.json` and the figures (titled with `dataset`).

    Only the classes the model was trained on are scored (a class absent from training
    cannot be predicted); macro F1 averages those that also occur in the test split
    (`metrics.scored_macro_f1`), so for CinC 2017 it equals the challenge's mean F1 of N, A, O.
    With `expected_sha256`, a checkpoint with another hash is refused (`CheckpointError`).
    The history figure plots every epoch of `training_log` (the checkpoint's own history ends
    at its epoch, the best one for `best.pth`); without a log, the checkpoint's history.
    """
    scoring = load_scoring_model(checkpoint_path, settings.device, expected_sha256)
    labels = store.index["label_index"].to_numpy(dtype=np.int64)
    probabilities, y_true, test_loss = score_positions(scoring, store, splits["test"], settings, batch_size, labels)
    y_pred = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    trained_classes = scoring.trained_classes
    metrics = classification_metrics(y_true, y_pred, LABELS, trained_classes)
    metrics["intervals"] = bootstrap_intervals(y_true, y_pred, LABELS, trained_classes)
    # Macro F1 over the classes the model knows that occur in the test split: the generalisation matrix's too.
    macro, interval, classes = scored_macro_f1_with_interval(y_true, y_pred, trained_classes)
    metrics["macro_f1"], metrics["intervals"]["macro_f1"] = macro, interval
    metrics["macro_f1_classes"] = [LABELS[index] for index in classes]
    metrics.update(
        {
            "test_loss": test_loss,
            "checkpoint": str(checkpoint_path),
            "checkpoint_sha256": expected_sha256 or file_sha256(checkpoint_path),
            "checkpoint_verified": expected_sha256 is not None,
            "checkpoint_epoch": int(scoring.payload["epoch"]),
            "ensemble_members": scoring.members,
            "majority_class_macro_f1": _majority_baseline(labels[splits["train"]], y_true, trained_classes),
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
    history = training_histories(read_training_log(training_log)) if training_log else scoring.payload["history"]
    outputs.pngs["f1"] = plot_f1_scores(
        metrics["per_class"], outputs.f1_plot, intervals=metrics["intervals"]["per_class"], dataset=dataset
    )
    outputs.pngs["history"] = plot_training_history(history, outputs.history_plot, dataset=dataset)
    outputs.pngs["confusion"] = plot_confusion_matrix(
        metrics["confusion_matrix"], metrics["classes"], outputs.confusion_plot, dataset=dataset
    )
    low, high = metrics["intervals"]["macro_f1"]
    logger.info(
        "test macro F1 %.4f (95%% CI %.4f-%.4f, bootstrap over %d test records)",
        metrics["macro_f1"],
        low,
        high,
        metrics["n_samples"],
    )
    return outputs


def read_test_metrics(path: Path) -> dict:
    """A `test_metrics.json` as `evaluate_checkpoint` wrote it (macro/micro/weighted F1, per class, baseline, ...)."""
    return read_json(path)


def _majority_baseline(train_labels: np.ndarray, y_true: np.ndarray, classes: list[int]) -> float:
    """Test macro F1 of always predicting the most frequent training class (a floor to beat)."""
    majority = np.bincount(train_labels).argmax()
    return scored_macro_f1(y_true, np.full_like(y_true, majority), classes)
