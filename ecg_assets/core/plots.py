"""Figures written next to the metrics (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ecg_assets.core.atomic_io import atomic_write_bytes  # noqa: E402


def _titled(title: str, dataset: str | None) -> str:
    """A figure title naming the dataset it shows (figures are shared and pasted without context)."""
    return f"{dataset}: {title}" if dataset else title


def _save(figure: plt.Figure, path: Path | None, dpi: int = 110) -> bytes:
    """The figure as PNG bytes, also written (atomically) to `path` when one is given."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    if path is not None:
        atomic_write_bytes(path, buffer.getvalue())
    return buffer.getvalue()


def plot_training_history(
    history: Sequence[dict] | Mapping[str, Sequence[dict]],
    path: Path | None = None,
    title: str = "",
    dataset: str | None = None,
) -> bytes:
    """Loss curves and validation macro F1 per epoch (every epoch given); returns the PNG bytes.

    `history` is one run's epoch records, or `{name: epoch records}` for several (ensemble members),
    drawn as one line each. The title names `dataset` and the number of epochs.
    """
    runs = dict(history) if isinstance(history, Mapping) else {"": list(history)}
    figure, (loss_axis, f1_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    for number, (name, records) in enumerate(runs.items()):
        epochs = [row["epoch"] for row in records]
        color = f"C{number}"
        prefix = f"{name} " if name else ""
        loss_axis.plot(epochs, [row["train_loss"] for row in records], color=color, label=f"{prefix}train")
        validated = [row for row in records if row.get("val_loss") is not None]  # none without a val split
        val_epochs = [row["epoch"] for row in validated]
        loss_axis.plot(
            val_epochs, [row["val_loss"] for row in validated], color=color, linestyle="--", label=f"{prefix}validation"
        )
        f1_axis.plot(
            val_epochs,
            [row["val_macro_f1"] for row in validated],
            marker="o",
            markersize=3,
            color=color,
            label=name or None,
        )
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="Loss (solid: train, dashed: validation)")
    loss_axis.legend(fontsize=7, ncol=2 if len(runs) > 1 else 1)
    f1_axis.set(xlabel="epoch", ylabel="macro F1", title="Validation macro F1", ylim=(0, 1))
    if len(runs) > 1:
        f1_axis.legend(fontsize=7)
    for axis in (loss_axis, f1_axis):
        axis.grid(alpha=0.3)
    epochs_run = max((len(records) for records in runs.values()), default=0)
    figure.suptitle(_titled(title or f"training history, {epochs_run} epoch(s)", dataset))
    return _save(figure, path)


def plot_f1_scores(
    per_class: dict[str, dict],
    path: Path | None = None,
    title: str = "Test F1 per class",
    intervals: dict[str, Sequence[float]] | None = None,
    dataset: str | None = None,
) -> bytes:
    """Bar chart of per-class F1 with support in the labels (and 95 % intervals as error bars when given);
    returns the PNG bytes."""
    names = list(per_class)
    scores = [per_class[name]["f1"] for name in names]
    errors = None
    if intervals:
        low = [max(score - intervals[name][0], 0.0) for name, score in zip(names, scores)]
        high = [max(intervals[name][1] - score, 0.0) for name, score in zip(names, scores)]
        errors = [low, high]
    figure, axis = plt.subplots(figsize=(6, 3.6))
    labels = [f"{name}\n(n={int(per_class[name]['support'])})" for name in names]
    bars = axis.bar(labels, scores, color="tab:blue", yerr=errors, capsize=4 if errors else 0, ecolor="black")
    axis.bar_label(bars, labels=[f"{score:.2f}" for score in scores], padding=2 if errors is None else 8)
    ylabel = "F1" + (" (bars: 95% bootstrap interval)" if errors else "")
    axis.set(ylim=(0, 1.1), ylabel=ylabel, title=_titled(title, dataset))
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path | None = None, dataset: str | None = None
) -> bytes:
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
        title=_titled("Test confusion matrix", dataset),
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
    dataset: str | None = None,
) -> bytes:
    """A grid of example records: one column per record (`signals` is `[k, leads, samples]`), one row per lead.

    Only leads present in at least one example get a row (a record without that lead says
    "missing" there); leads absent from every example are named in one line under the title.
    """
    n_records, n_leads, n_samples = signals.shape
    present = np.ones((n_records, n_leads), bool) if lead_present is None else np.asarray(lead_present, bool)
    rows = [lead for lead in range(n_leads) if present[:, lead].any()] or list(range(n_leads))
    absent = [lead_names[lead] for lead in range(n_leads) if lead not in rows]
    figure, axes = plt.subplots(
        len(rows), n_records, figsize=(4.2 * n_records, 0.62 * len(rows) + 1.2), sharex=True, squeeze=False
    )
    seconds = np.arange(n_samples) / fs
    for column, title in enumerate(titles):
        axes[0, column].set_title(title, fontsize=9)
        for row, lead in enumerate(rows):
            axis = axes[row, column]
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
    heading = _titled(f"example waveforms, {len(rows)} of {n_leads} leads recorded", dataset)
    if absent:
        heading += f"\nnot recorded in these examples: {', '.join(absent)}"
    figure.suptitle(heading, fontsize=10)
    figure.subplots_adjust(hspace=0.08, wspace=0.05)
    return _save(figure, path, dpi=72)


def plot_recording_distributions(
    sampling_rates: Sequence[float], durations_s: Sequence[float], path: Path | None = None, dataset: str | None = None
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
    figure.suptitle(_titled(f"native recordings, {len(sampling_rates)} processed", dataset))
    return _save(figure, path)


def plot_score_matrix(
    scores: np.ndarray,
    annotations: Sequence[Sequence[str]],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str,
    path: Path | None = None,
) -> bytes:
    """Heat map of scores in [0, 1] (`[rows, columns]`, NaN for a gap, drawn grey) with a text per cell."""
    scores = np.asarray(scores, dtype=float)
    rows, columns = scores.shape
    figure, axis = plt.subplots(figsize=(2.3 * columns + 2.5, 1.0 * rows + 1.6))
    colormap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    image = axis.imshow(np.ma.masked_invalid(scores), cmap=colormap, vmin=0, vmax=1, aspect="auto")
    figure.colorbar(image, ax=axis, label="macro F1", fraction=0.04)
    axis.set(
        xticks=range(columns),
        yticks=range(rows),
        xticklabels=column_labels,
        yticklabels=row_labels,
        xlabel="test split of",
        ylabel="model",
        title=title,
    )
    for (row, column), value in np.ndenumerate(scores):
        dark = not np.isnan(value) and value < 0.6
        axis.text(
            column, row, annotations[row][column], ha="center", va="center", fontsize=8,
            color="white" if dark else "black",
        )
    return _save(figure, path)
