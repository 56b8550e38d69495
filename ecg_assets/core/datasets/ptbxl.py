"""PTB-XL: `ptbxl_database.csv` (one row per ECG), `scp_statements.csv`, `records500/` and `records100/`.

The 500 Hz files (`filename_hr`, e.g. `records500/00000/00001_hr`) are read. The record id is
`ecg_id`; `patient_id` and `strat_fold` are kept for the splits. Labels are derived from the
`scp_codes` dict (`{'NORM': 100.0, 'SR': 0.0}`) through scp_statements.csv (`labels.map_scp_codes`).
Headers under records500/ without a row stay in the table, unlabelled.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from ecg_assets.core.datasets.base import DatasetFormat, DatasetScan, list_files, record_id_of
from ecg_assets.core.labels import SCP_STATEMENT_COLUMNS, LabelMappingError, map_scp_codes, require_columns
from ecg_assets.core.paths import dataset_file
from ecg_assets.core.record_ids import normalize_record_id, outside_reason
from ecg_assets.core.records import RecordEntry

DATABASE_FILE = "ptbxl_database.csv"
STATEMENTS_FILE = "scp_statements.csv"
DATABASE_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_hr")
HEADERS_500HZ = "records500/**/*.hea"


def read_scp_statements(path: Path) -> dict[str, dict[str, object]]:
    """scp_statements.csv as `{statement code: its row}`; `LabelMappingError` when it is unusable."""
    if not path.is_file():
        raise LabelMappingError(f"{path} is missing: PTB-XL labels are derived from it")
    table = pd.read_csv(path, index_col=0, encoding_errors="replace")
    require_columns(path, table.columns, SCP_STATEMENT_COLUMNS)
    return {str(code).strip(): row for code, row in table.to_dict(orient="index").items()}


def parse_scp_codes(value: str) -> tuple[tuple[str, ...], str]:
    """The statement codes of a `scp_codes` cell, and an error reason when it is not a dict literal."""
    try:
        codes = ast.literal_eval(value.strip() or "{}")
    except (ValueError, SyntaxError):
        codes = None
    if not isinstance(codes, dict):
        return (), f"scp_codes is not a dictionary: {value[:60]!r}"
    return tuple(str(code).strip() for code in codes), ""


def _clean_id(value: str) -> str | None:
    """`17787.0` (pandas wrote integers as floats) -> `17787`; empty -> None."""
    value = value.strip()
    if value.endswith(".0") and value[:-2].isdigit():
        value = value[:-2]
    return value or None


def _fold(value: str) -> int | None:
    cleaned = _clean_id(value)
    return int(cleaned) if cleaned and cleaned.isdigit() else None


class PtbXlFormat(DatasetFormat):
    name = "ptbxl"
    description = "PTB-XL: ptbxl_database.csv + scp_statements.csv + records500/ (500 Hz WFDB)"

    def detect(self, folder: Path) -> bool:
        return (folder / DATABASE_FILE).is_file()

    def scan(self, folder: Path) -> DatasetScan:
        statements = read_scp_statements(dataset_file(folder, STATEMENTS_FILE))
        database_path = dataset_file(folder, DATABASE_FILE)
        database = pd.read_csv(database_path, dtype=str, keep_default_na=False, encoding_errors="replace")
        require_columns(database_path, database.columns, DATABASE_COLUMNS)
        scan = DatasetScan(labeler=lambda codes: map_scp_codes(codes, statements))
        headers = list_files(folder, HEADERS_500HZ, scan.problems)
        listed: set[str] = set()
        for line, row in enumerate(database.itertuples(index=False), start=2):
            ecg_id = _clean_id(row.ecg_id) or f"line {line}"
            target = normalize_record_id(row.filename_hr)
            relative = f"{target}.hea"
            if outside_reason(target):
                scan.problems.append(
                    (
                        ecg_id,
                        f"{DATABASE_FILE} line {line}: filename_hr {row.filename_hr!r} is "
                        f"{outside_reason(target)}, outside the dataset folder",
                    )
                )
            elif relative not in headers:
                scan.problems.append((ecg_id, f"{DATABASE_FILE} line {line}: {relative} does not exist"))
            else:
                codes, error = parse_scp_codes(row.scp_codes)
                listed.add(relative)
                scan.entries.append(
                    RecordEntry(ecg_id, relative, codes, _clean_id(row.patient_id), _fold(row.strat_fold), error)
                )
        for relative in headers.keys() - listed:
            scan.entries.append(
                RecordEntry(record_id_of(relative), relative, excluded_reason=f"no row in {DATABASE_FILE}")
            )
        return scan
