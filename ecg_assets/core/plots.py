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


def _save(figure: plt.Figure, path: Path | None, dpi: int = 110) -> bytes:
    """The figure as PNG bytes, also written (atomically) to `path` when one is given."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    if path is not None:
        atomic_write_bytes(path, buffer.getvalue())
    return buffer.getvalue()


def plot_training_history(history: Sequence[dict], path: Path | None = None) -> bytes:
    """Loss curves and validation macro F1 per epoch; returns the PNG bytes."""
    epochs = [row["epoch"] for row in history]
    validated = [row for row in history if row.get("val_loss") is not None]  # not every epoch is validated
    figure, (loss_axis, f1_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    loss_axis.plot(
        [row["epoch"] for row in validated], [row["val_loss"] for row in validated], marker="o", label="validation"
    )
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    loss_axis.legend()
    f1_axis.plot(
        [row["epoch"] for row in validated], [row["val_macro_f1"] for row in validated], marker="o", color="tab:green"
    )
    f1_axis.set(xlabel="epoch", ylabel="macro F1", title="Validation macro F1", ylim=(0, 1))
    for axis in (loss_axis, f1_axis):
        axis.grid(alpha=0.3)
    return _save(figure, path)


def plot_f1_scores(per_class: dict[str, dict], path: Path | None = None, title: str = "Test F1 per class") -> bytes:
    """Bar chart of per-class F1 with support in the labels; returns the PNG bytes."""
    names = list(per_class)
    scores = [per_class[name]["f1"] for name in names]
    figure, axis = plt.subplots(figsize=(6, 3.6))
    bars = axis.bar([f"{name}\n(n={per_class[name]['support']})" for name in names], scores, color="tab:blue")
    axis.bar_label(bars, labels=[f"{score:.2f}" for score in scores])
    axis.set(ylim=(0, 1.05), ylabel="F1", title=title)
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path | None = None) -> bytes:
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


def plot_example_waveforms(
    signals: np.ndarray,
    titles: Sequence[str],
    lead_names: Sequence[str],
    fs: float,
    lead_present: np.ndarray | None = None,
    path: Path | None = None,
) -> bytes:
    """A 12-lead grid of example records: one column per record (`signals` is `[k, leads, samples]`).

    Leads marked absent in `lead_present` (`[k, leads]`, bool) are labelled "missing" instead of drawn.
    """
    n_records, n_leads, n_samples = signals.shape
    present = np.ones((n_records, n_leads), bool) if lead_present is None else np.asarray(lead_present, bool)
    figure, axes = plt.subplots(
        n_leads, n_records, figsize=(4.2 * n_records, 0.62 * n_leads + 0.6), sharex=True, squeeze=False
    )
    seconds = np.arange(n_samples) / fs
    for column, title in enumerate(titles):
        axes[0, column].set_title(title, fontsize=9)
        for lead in range(n_leads):
            axis = axes[lead, column]
            if present[column, lead]:
                axis.plot(seconds, signals[column, lead], linewidth=0.5, color="tab:red")
            else:
                axis.text(0.5, 0.5, "missing", transform=axis.transAxes, ha="center", va="center", color="grey")
            axis.set_yticks([])
            axis.tick_params(labelsize=7)
            for side in ("top", "right", "left"):
                axis.spines[side].set_visible(False)
            if column == 0:
                axis.set_ylabel(lead_names[lead], rotation=0, ha="right", va="center", fontsize=8)
    for axis in axes[-1]:
        axis.set_xlabel("seconds (after resampling; z-scored per lead)", fontsize=8)
    figure.subplots_adjust(hspace=0.08, wspace=0.05)
    return _save(figure, path, dpi=72)


def plot_recording_distributions(
    sampling_rates: Sequence[float], durations_s: Sequence[float], path: Path | None = None
) -> bytes:
    """Histograms of the native sampling rates and recording lengths (before resampling and cropping)."""
    figure, (rate_axis, length_axis) = plt.subplots(1, 2, figsize=(10, 3.2))
    rates, counts = np.unique(np.asarray(sampling_rates, dtype=float), return_counts=True)
    bars = rate_axis.bar([f"{rate:g}" for rate in rates], counts, color="tab:blue")
    rate_axis.bar_label(bars)
    rate_axis.set(xlabel="native sampling rate (Hz)", ylabel="records", title="Sampling rate")
    length_axis.hist(np.asarray(durations_s, dtype=float), bins=30, color="tab:orange")
    length_axis.set(xlabel="original length (s)", ylabel="records", title="Recording length")
    for axis in (rate_axis, length_axis):
        axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)
