"""Classification metrics shared by validation during training and the final test evaluation."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, f1_score, precision_recall_fscore_support

from ecg_assets.core.labels import LABELS


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


def scored_classes(model_classes: Sequence[int], y_true: np.ndarray) -> list[int]:
    """The classes a test macro F1 averages over: those the model knows that occur in the test records.

    A class the model never learnt cannot be predicted, and a class without test records has no
    recall; both would only pull the average towards 0 without saying anything about the model.
    """
    present = set(np.unique(np.asarray(y_true)).tolist())
    return [int(index) for index in model_classes if int(index) in present]


def scored_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, model_classes: Sequence[int]) -> float:
    """Macro F1 over `scored_classes`: the one definition `test_metrics` and the generalisation matrix share."""
    return macro_f1(y_true, y_pred, scored_classes(model_classes, y_true))


def scored_macro_f1_with_interval(
    y_true: np.ndarray, y_pred: np.ndarray, model_classes: Sequence[int]
) -> tuple[float, list[float], list[int]]:
    """`scored_macro_f1`, its percentile-bootstrap interval (`bootstrap_intervals`) and the classes it averages."""
    classes = scored_classes(model_classes, y_true)
    interval = bootstrap_intervals(y_true, y_pred, LABELS, classes)
    return macro_f1(y_true, y_pred, classes), interval["macro_f1"], classes


BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


def bootstrap_intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    class_indices: Sequence[int],
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict:
    """Percentile-bootstrap intervals over records for every F1 that `classification_metrics` reports.

    Records are resampled with replacement `resamples` times (seeded: the same inputs give the same
    intervals); each resample's per-class, macro, micro and weighted F1 and accuracy are computed over
    `class_indices` exactly as `classification_metrics` does, and the central `confidence` range of
    their distribution is returned as `[low, high]`. The interval says how much the score would move
    with another test set of the same size drawn from the same population; it is not a bound on
    the score on a different population.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    labels = list(class_indices)
    names = [class_names[index] for index in labels]
    n = len(y_true)
    result: dict = {
        "method": "percentile bootstrap over test records",
        "confidence": confidence,
        "resamples": resamples,
        "n_samples": int(n),
    }
    if n == 0 or not labels:
        empty = [0.0, 0.0]
        return {
            **result,
            **{key: empty for key in ("macro_f1", "micro_f1", "weighted_f1", "accuracy")},
            "per_class": {name: empty for name in names},
        }
    rng = np.random.default_rng(seed)
    scores: dict[str, list[np.ndarray]] = {"macro_f1": [], "micro_f1": [], "weighted_f1": [], "accuracy": [], "f1": []}
    for start in range(0, resamples, 250):  # chunks keep memory at 250 x n indices
        picks = rng.integers(0, n, size=(min(250, resamples - start), n))
        true, pred = y_true[picks], y_pred[picks]
        tp = np.stack([((true == label) & (pred == label)).sum(axis=1) for label in labels], axis=1)
        support = np.stack([(true == label).sum(axis=1) for label in labels], axis=1)
        predicted = np.stack([(pred == label).sum(axis=1) for label in labels], axis=1)
        f1 = _safe_ratio(2 * tp, support + predicted)
        scores["f1"].append(f1)
        scores["macro_f1"].append(f1.mean(axis=1))
        scores["micro_f1"].append(_safe_ratio(2 * tp.sum(axis=1), support.sum(axis=1) + predicted.sum(axis=1)))
        scores["weighted_f1"].append(_safe_ratio((f1 * support).sum(axis=1), support.sum(axis=1)))
        scores["accuracy"].append((true == pred).mean(axis=1))
    tail = (1.0 - confidence) / 2 * 100

    def interval(values: np.ndarray) -> list[float]:
        low, high = np.percentile(values, [tail, 100 - tail], axis=0)
        return [round(float(low), 4), round(float(high), 4)]

    per_class = np.concatenate(scores.pop("f1"))
    result.update({key: interval(np.concatenate(values)) for key, values in scores.items()})
    result["per_class"] = {name: interval(per_class[:, column]) for column, name in enumerate(names)}
    return result


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """`numerator / denominator`, 0 where the denominator is 0 (sklearn's `zero_division=0`)."""
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def format_interval(value: float, interval: Sequence[float] | None) -> str:
    """`0.812 (95% CI 0.771-0.851)`; just the value when no interval is known."""
    if not interval:
        return f"{value:.3f}"
    return f"{value:.3f} (95% CI {interval[0]:.3f}-{interval[1]:.3f})"
