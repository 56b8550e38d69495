"""Classification metrics shared by validation during training and the final test evaluation."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, f1_score, precision_recall_fscore_support


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, class_indices: Sequence[int]) -> float:
    """Macro F1 over the given classes (those the model was trained on)."""
    if len(y_true) == 0:
        return 0.0
    return float(f1_score(y_true, y_pred, labels=list(class_indices), average="macro", zero_division=0))


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], class_indices: Sequence[int]
) -> dict:
    """Confusion matrix, per-class precision/recall/F1/support and macro/micro/weighted F1.

    Only `class_indices` (the classes the model was trained on) are scored; the confusion
    matrix rows and columns follow that order.
    """
    labels = list(class_indices)
    names = [class_names[index] for index in labels]
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support)
    }
    averages = {
        f"{average}_f1": float(f1_score(y_true, y_pred, labels=labels, average=average, zero_division=0))
        for average in ("macro", "micro", "weighted")
    }
    return {
        "classes": names,
        "n_samples": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        **averages,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classification_report": classification_report(
            y_true, y_pred, labels=labels, target_names=names, zero_division=0, digits=3
        ),
    }


_RESAMPLES_PER_CHUNK = 100


def scored_classes(model_classes: Sequence[int], y_true: np.ndarray) -> list[int]:
    """The classes a test macro F1 averages over: those the model knows that occur in the test records.

    A class the model never learnt cannot be predicted, and a class without test records has no
    recall; both would only pull the average towards 0 without saying anything about the model.
    """
    present = set(np.unique(np.asarray(y_true)).tolist())
    return [int(index) for index in model_classes if int(index) in present]


def test_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, model_classes: Sequence[int]) -> float:
    """Macro F1 over `scored_classes`: the one definition `test_metrics` and the generalisation matrix share."""
    return macro_f1(y_true, y_pred, scored_classes(model_classes, y_true))


def bootstrap_macro_f1_interval(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence[int],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the macro F1 over `classes` (records resampled with replacement).

    Vectorised over resamples: per resample, each class's true positives, false positives and false
    negatives are counted from the drawn records. (nan, nan) without records or classes.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    classes = list(classes)
    if not len(y_true) or not classes:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = []
    for chunk in range(0, resamples, _RESAMPLES_PER_CHUNK):  # bounded memory however many records
        draws = rng.integers(0, len(y_true), size=(min(_RESAMPLES_PER_CHUNK, resamples - chunk), len(y_true)))
        true, pred = y_true[draws], y_pred[draws]
        scores = np.zeros((len(draws), len(classes)))
        for column, label in enumerate(classes):
            tp = ((true == label) & (pred == label)).sum(axis=1)
            fp = ((true != label) & (pred == label)).sum(axis=1)
            fn = ((true == label) & (pred != label)).sum(axis=1)
            denominator = 2 * tp + fp + fn
            scores[:, column] = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
        means.append(scores.mean(axis=1))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(np.concatenate(means), [tail, 100 - tail])
    return float(low), float(high)
