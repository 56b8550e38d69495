"""Helpers that turn core results into Dagster UI metadata (markdown tables, embedded PNGs)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import dagster as dg
import numpy as np
import pandas as pd

from ecg_assets.core.plots import plot_example_waveforms, plot_recording_distributions, plot_training_history
from ecg_assets.core.signal import LEAD_ORDER
from ecg_assets.core.store import RecordStore

EXAMPLE_WAVEFORMS = 3


def markdown_table(frame: pd.DataFrame, max_rows: int = 50, empty: str = "none") -> dg.MetadataValue:
    """A DataFrame as a markdown table (first `max_rows` rows, with a note when cut); `empty`, in words, for none."""
    if frame.empty:
        return dg.MetadataValue.md(empty)
    shown = frame.head(max_rows)
    header = "| " + " | ".join(str(column) for column in shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    rows = ["| " + " | ".join(_cell(value) for value in row) + " |" for row in shown.itertuples(index=False)]
    note = [f"\n_{len(frame) - max_rows} more row(s) not shown._"] if len(frame) > max_rows else []
    return dg.MetadataValue.md("\n".join([header, rule, *rows, *note]))


def counts_table(counts: dict[str, int], key: str, value: str = "records") -> dg.MetadataValue:
    return markdown_table(pd.DataFrame(list(counts.items()), columns=[key, value]))


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG embedded in markdown (this Dagster version has no image metadata type)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def reasons_table(
    rows: Sequence[tuple[str, str]], columns: Iterable[str] = ("record_id", "reason")
) -> dg.MetadataValue:
    return markdown_table(pd.DataFrame(list(rows), columns=list(columns)))


def human_size(size: int) -> str:
    """A byte count for people: `1.5 MB` (decimal units, as file managers show them)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def example_waveforms(
    store: RecordStore, fs: float, path: Path, examples: int = EXAMPLE_WAVEFORMS, dataset: str | None = None
) -> dg.MetadataValue:
    """A lead grid of the first record of each of (up to) `examples` labels, embedded as PNG."""
    if not len(store):
        return dg.MetadataValue.md("_no processed records_")
    index = store.index
    positions = np.flatnonzero(~index["label"].duplicated().to_numpy())[:examples]
    rows = index.iloc[positions]
    present = None
    if "lead_mask" in rows.columns:
        present = np.array([[flag == "1" for flag in str(mask)] for mask in rows["lead_mask"]], dtype=bool)
    png = plot_example_waveforms(
        store.signals(positions),
        [f"{record_id} ({label})" for record_id, label in zip(rows["record_id"], rows["label"])],
        LEAD_ORDER,
        fs,
        lead_present=present,
        path=path,
        dataset=dataset,
    )
    return png_markdown(png, "example waveforms")


def recording_distributions(store: RecordStore, path: Path, dataset: str | None = None) -> dg.MetadataValue:
    """Histograms of the native sampling rates and lengths of the processed records, embedded as PNG."""
    rates = store.index["original_fs"].astype(float)
    seconds = store.index["original_samples"].astype(float) / rates
    png = plot_recording_distributions(rates.tolist(), seconds.tolist(), path=path, dataset=dataset)
    return png_markdown(png, "native sampling rate and length histograms")


def training_history(
    history: Sequence[dict] | Mapping[str, Sequence[dict]], path: Path, dataset: str | None = None
) -> dg.MetadataValue:
    """Loss and validation macro F1 per epoch, embedded as PNG."""
    return png_markdown(plot_training_history(history, path, dataset=dataset), "training history")


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
