"""Text files written by people and other tools (REFERENCE, unified_label_mapping.csv, PTB-XL tables): one decoder.

Spreadsheet programs save CSV files in several encodings. A byte order mark says which one
unambiguously (UTF-8, UTF-16 or UTF-32, little or big endian), so it is honoured; UTF-16 without
a mark is recognised by its NUL bytes. Anything else must be strict UTF-8: guessing a legacy code
page (cp1252, latin-1) could silently turn an id or a label into another one, so an invalid byte is
a `LabelMappingError` that names the file, the line and the byte, and says how to fix it.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path
from typing import Iterator

import pandas as pd

from ecg_assets.core.labels import LabelMappingError

# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32 BE"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8 with BOM"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16 BE"),
)
# A text file larger than this is not a label table someone wrote: refuse it rather than read it whole.
MAX_TEXT_BYTES = 512 * 2**20


def decode_text(data: bytes, name: str) -> str:
    """The text of a CSV file's bytes (BOM-detected, else strict UTF-8); `LabelMappingError` naming
    `name`, the line and the offending byte otherwise."""
    for mark, codec, label in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return _decode(data[len(mark) :], codec, label, name, len(mark))
    if b"\0" in data:
        codec = _utf16_without_mark(data)
        if codec is None:
            line = data[: data.index(b"\0")].count(b"\n") + 1
            raise LabelMappingError(
                f"{name} contains NUL bytes (line {line}): not a text file, or a damaged one; save it as UTF-8 CSV"
            )
        return _decode(data, codec, codec.upper().replace("-", " ", 1) + " without byte order mark", name, 0)
    return _decode(data, "utf-8", "UTF-8", name, 0)


def _utf16_without_mark(data: bytes) -> str | None:
    """`utf-16-le`/`utf-16-be` when every other byte is NUL (UTF-16 of mostly ASCII text), else None."""
    even, odd = data[0::2], data[1::2]
    if len(data) % 2 == 0 and odd.count(0) >= 0.9 * len(odd) and not even.count(0):
        return "utf-16-le"
    if len(data) % 2 == 0 and even.count(0) >= 0.9 * len(even) and not odd.count(0):
        return "utf-16-be"
    return None


def _decode(data: bytes, codec: str, label: str, name: str, offset: int) -> str:
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as error:
        line = data[: error.start].decode(codec, errors="replace").count("\n") + 1
        raise LabelMappingError(
            f"{name} is not valid {label} text: byte 0x{data[error.start]:02x} at offset {offset + error.start} "
            f"(line {line}); save the file as UTF-8 (or UTF-16 with a byte order mark)"
        ) from error
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise LabelMappingError(f"{name} contains NUL characters (line {line}): a damaged file; save it as UTF-8 CSV")
    return text


def read_text(path: Path) -> str:
    """A text file's content, decoded as `decode_text` says (`LabelMappingError` when unreadable)."""
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise LabelMappingError(f"{path} is {size / 2**20:.0f} MiB: too large for a label table")
        data = path.read_bytes()
    except OSError as error:
        raise LabelMappingError(f"{path} cannot be read: {error.strerror or error}") from error
    return decode_text(data, str(path))


def csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """`(line number, cells)` of every row of a CSV file (any line ending, BOMs honoured, blank rows skipped).

    The delimiter is a comma, unless the first line has none and a semicolon or a tab instead (what
    spreadsheet programs write in locales where the comma is the decimal separator).
    """
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                yield reader.line_num, cells
    except csv.Error as error:
        raise LabelMappingError(f"{path}: not readable as CSV near line {reader.line_num}: {error}") from error


def _delimiter(text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), "")
    if "," in first:
        return ","
    return next((candidate for candidate in (";", "\t") if candidate in first), ",")


def read_csv_table(path: Path, **kwargs) -> pd.DataFrame:
    """`pandas.read_csv` of a CSV file decoded by `read_text` (same errors and delimiter rule as `csv_rows`)."""
    text = read_text(path)
    try:
        return pd.read_csv(io.StringIO(text), sep=_delimiter(text), **kwargs)
    except (ValueError, pd.errors.ParserError) as error:
        raise LabelMappingError(f"{path}: not readable as CSV: {error}") from error
