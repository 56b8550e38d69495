"""Figures written next to the metrics (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ecg_assets.core.storage import atomic_write_bytes  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return buffer.getvalue()


def plot_training_history(history: Sequence[dict], path: Path) -> bytes:
    """Loss curves and validation macro F1 per epoch; returns the PNG bytes."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, f1_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    loss_axis.plot(epochs, [row["val_loss"] for row in history], marker="o", label="validation")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    loss_axis.legend()
    f1_axis.plot(epochs, [row["val_macro_f1"] for row in history], marker="o", color="tab:green")
    f1_axis.set(xlabel="epoch", ylabel="macro F1", title="Validation macro F1", ylim=(0, 1))
    for axis in (loss_axis, f1_axis):
        axis.grid(alpha=0.3)
    return _save(figure, path)


def plot_f1_scores(per_class: dict[str, dict], path: Path, title: str = "Test F1 per class") -> bytes:
    """Bar chart of per-class F1 with support in the labels; returns the PNG bytes."""
    names = list(per_class)
    scores = [per_class[name]["f1"] for name in names]
    figure, axis = plt.subplots(figsize=(6, 3.6))
    bars = axis.bar([f"{name}\n(n={per_class[name]['support']})" for name in names], scores, color="tab:blue")
    axis.bar_label(bars, labels=[f"{score:.2f}" for score in scores])
    axis.set(ylim=(0, 1.05), ylabel="F1", title=title)
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path) -> bytes:
    """Confusion matrix heat map with counts; returns the PNG bytes."""
    matrix = np.asarray(matrix)
    figure, axis = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.1 * len(classes) + 1.5))
    axis.imshow(matrix, cmap="Blues")
    axis.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="true",
        title="Test confusion matrix",
    )
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    return _save(figure, path)
