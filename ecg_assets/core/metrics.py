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
