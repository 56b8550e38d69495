"""Helpers that turn core results into Dagster UI metadata (markdown tables, embedded PNGs)."""

from __future__ import annotations

import base64
from typing import Iterable, Sequence

import dagster as dg
import pandas as pd


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


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
