"""China Physiological Signal Challenge 2018 (CPSC 2018): raw MAT files and `REFERENCE.csv`.

Each `A0001.mat` is a MAT v5 file whose variable `ECG` is a struct with fields `sex` (`Male`/`Female`),
`age` (years; NaN when unknown) and `data` (12 x N, 500 Hz, millivolts, leads I, II, III, aVR, aVL,
aVF, V1-V6). `REFERENCE.csv` has the header `Recording,First_label,Second_label,Third_label` and up to
three codes 1-9 per record (`labels.CPSC2018_TABLE`). Sex and age go into the store index.

A folder is CPSC 2018 when its top-level REFERENCE*.csv has `Recording` and `First_label` columns, or,
without any REFERENCE (recordings to score) and without a dataset.yaml stating a sampling rate, when
most of its `.mat` files hold a struct `ECG`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ecg_assets.core.datasets.base import DatasetFormat, DatasetScan, majority, record_id_of, resolve_inside
from ecg_assets.core.datasets.config import load_dataset_config
from ecg_assets.core.datasets.inventory import FolderInventory
from ecg_assets.core.labels import LabelDecision, map_cpsc2018
from ecg_assets.core.matfiles import mat_variable_classes, read_mat_struct
from ecg_assets.core.paths import dataset_file
from ecg_assets.core.readers import as_float32
from ecg_assets.core.record_ids import RecordIdIndex
from ecg_assets.core.records import RecordEntry, RecordReadError, Recording
from ecg_assets.core.signal import LEAD_ORDER
from ecg_assets.core.textfiles import csv_rows

FS = 500.0
STRUCT = "ECG"
REFERENCE_COLUMNS = ("recording", "first_label")
DETECTION_SAMPLE = 20
NO_REFERENCE = "no REFERENCE.csv in the dataset folder: unlabelled"


def _references(inventory: FolderInventory) -> list[str]:
    return [name for name in inventory.files if "/" not in name and re.fullmatch(r"reference.*\.csv", name, re.I)]


def cpsc_reference(folder: Path, inventory: FolderInventory) -> Path | None:
    """The top-level REFERENCE*.csv whose first row names the CPSC 2018 columns, or None."""
    for name in _references(inventory):
        path = dataset_file(folder, name)
        try:
            _, header = next(iter(csv_rows(path)), (0, []))
        except ValueError:
            continue
        if all(column in [cell.strip().lower() for cell in header] for column in REFERENCE_COLUMNS):
            return path
    return None


def _holds_struct(path: Path) -> bool:
    try:
        return mat_variable_classes(path).get(STRUCT) == "struct"
    except (OSError, RecordReadError):
        return False


def _code(cell: str) -> str:
    """`1`, `1.0` (a spreadsheet's number) -> `1`; empty stays empty."""
    cell = cell.strip()
    return cell[:-2] if cell.endswith(".0") and cell[:-2].isdigit() else cell


class Cpsc2018Format(DatasetFormat):
    name = "cpsc2018"
    description = "CPSC 2018: A*.mat (MAT v5 struct ECG: sex, age, data 12 x N at 500 Hz) + REFERENCE.csv codes 1-9"

    def detect(self, inventory: FolderInventory) -> bool:
        mats = inventory.with_suffix(".mat")
        if not mats:
            return False
        if cpsc_reference(inventory.folder, inventory) is not None:
            return True
        if _references(inventory) or inventory.with_suffix(".hea"):
            return False
        if load_dataset_config(inventory.folder).sampling_rate is not None:
            return False  # a dataset.yaml describing the files: a generic MAT folder (`mat_variable: ECG.data`)
        sample = inventory.evenly_spaced(mats, DETECTION_SAMPLE)
        return majority([_holds_struct(inventory.folder / name) for name in sample])

    def list_records(self, folder: Path, inventory: FolderInventory) -> DatasetScan:
        scan = DatasetScan()
        mats = inventory.with_suffix(".mat")
        first: dict[str, str] = {}
        for relative in mats:
            first.setdefault(record_id_of(relative), relative)
        reference = cpsc_reference(folder, inventory)
        labelled: set[str] = set()
        if reference is not None:
            index = RecordIdIndex(((record_id, [relative]) for record_id, relative in first.items()), folder.name)
            rows = csv_rows(reference)
            next(rows)  # the header row
            for line, row in rows:
                raw_id = row[0].strip()
                codes = tuple(code for code in map(_code, row[1:4]) if code)
                if not codes:
                    scan.problems.append((raw_id, f"{reference.name} line {line}: row has no label code"))
                    continue
                record_id, reason = index.match(raw_id)
                if record_id is None:
                    scan.problems.append((raw_id, f"{reference.name}: {reason}"))
                    continue
                labelled.add(record_id)
                scan.entries.append(RecordEntry(record_id, first[record_id], codes))
        reason = "" if reference is not None else NO_REFERENCE
        for relative in mats:
            record_id = record_id_of(relative)
            if record_id not in labelled or first[record_id] != relative:
                scan.entries.append(RecordEntry(record_id, relative, excluded_reason=reason))
        return scan

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        return map_cpsc2018(native_labels)

    def read(self, folder: Path, entry: RecordEntry, max_duration_s: float | None = None) -> Recording:
        path = resolve_inside(folder, entry.source_file)
        fields = read_mat_struct(path, STRUCT)
        if "data" not in fields:
            found = ", ".join(fields)
            raise RecordReadError(f"MAT struct {STRUCT!r} in {path.name} has no field 'data' (its fields: {found})")
        data = fields["data"]
        if data.dtype.kind not in "iuf" or data.ndim != 2 or len(LEAD_ORDER) not in data.shape:
            raise RecordReadError(
                f"{STRUCT}.data in {path.name} is {data.dtype} of shape {data.shape}, not a 12-lead numeric matrix"
            )
        data = data if data.shape[0] == len(LEAD_ORDER) else data.T
        total = data.shape[1]
        window = total if max_duration_s is None else min(total, math.ceil(max_duration_s * FS) + 1)
        if total == 0:
            raise RecordReadError("signal is empty (0 samples)")
        return Recording(
            as_float32(np.asarray(data[:, :window], dtype=np.float64), path.name),
            FS,
            list(LEAD_ORDER),
            total,
            files=[path],
            sex=_text(fields.get("sex")),
            age=_number(fields.get("age")),
        )


def _text(value: np.ndarray | None) -> str:
    if value is None or value.dtype.kind not in "US" or not value.size:
        return ""
    return "".join(str(item) for item in value.ravel()).strip()


def _number(value: np.ndarray | None) -> float | None:
    if value is None or value.dtype.kind not in "iuf" or value.size != 1:
        return None
    number = float(value.ravel()[0])
    return number if math.isfinite(number) else None
