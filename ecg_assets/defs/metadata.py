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


def markdown_table(frame: pd.DataFrame, max_rows: int = 50) -> dg.MetadataValue:
    """A DataFrame as a markdown table (first `max_rows` rows, with a note when cut)."""
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


def example_waveforms(store: RecordStore, fs: float, path: Path, examples: int = EXAMPLE_WAVEFORMS) -> dg.MetadataValue:
    """A 12-lead grid of the first record of each of (up to) `examples` labels, embedded as PNG."""
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
    )
    return png_markdown(png, "example 12-lead waveforms")


def recording_distributions(store: RecordStore, path: Path) -> dg.MetadataValue:
    """Histograms of the native sampling rates and lengths of the processed records, embedded as PNG."""
    rates = store.index["original_fs"].astype(float)
    seconds = store.index["original_samples"].astype(float) / rates
    png = plot_recording_distributions(rates.tolist(), seconds.tolist(), path=path)
    return png_markdown(png, "native sampling rate and length histograms")


def training_history(history: Sequence[dict] | Mapping[str, Sequence[dict]], path: Path) -> dg.MetadataValue:
    """Loss and validation macro F1 per epoch, embedded as PNG."""
    return png_markdown(plot_training_history(history, path), "training history")


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
