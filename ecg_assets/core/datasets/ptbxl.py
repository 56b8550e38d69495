"""PTB-XL: `ptbxl_database.csv` (one row per ECG), `scp_statements.csv`, `records500/` and `records100/`.

The 500 Hz files (`filename_hr`, e.g. `records500/00000/00001_hr`) are read. The record id is
`ecg_id`; `patient_id` and `strat_fold` are kept for the splits. Labels are derived from the
`scp_codes` dict (`{'NORM': 100.0, 'SR': 0.0}`) through scp_statements.csv (`labels.map_scp_codes`).
Headers under records500/ without a row stay in the table, unlabelled.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ecg_assets.core.datasets.base import DatasetFormat, DatasetScan, record_id_of
from ecg_assets.core.datasets.inventory import FolderInventory
from ecg_assets.core.labels import SCP_STATEMENT_COLUMNS, LabelMappingError, map_scp_codes, require_columns
from ecg_assets.core.paths import dataset_file
from ecg_assets.core.record_ids import normalize_record_id, outside_reason
from ecg_assets.core.records import RecordEntry
from ecg_assets.core.textfiles import read_csv_table

DATABASE_FILE = "ptbxl_database.csv"
STATEMENTS_FILE = "scp_statements.csv"
DATABASE_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_hr")
RECORDS_500HZ = "records500"
RECORDS_100HZ = "records100"


def read_scp_statements(path: Path) -> dict[str, dict[str, object]]:
    """scp_statements.csv as `{statement code: its row}`; `LabelMappingError` when it is unusable."""
    if not path.is_file():
        raise LabelMappingError(f"{path} is missing: PTB-XL labels are derived from it")
    table = read_csv_table(path, index_col=0)
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


def _signal_of(signals: dict[str, str], header: str) -> tuple[str, ...]:
    """The `.dat` beside a PTB-XL header (PTB-XL headers name their own signal file)."""
    found = signals.get(header.rsplit(".", 1)[0])
    return (found,) if found else ()


def _fold(value: str) -> int | None:
    cleaned = _clean_id(value)
    return int(cleaned) if cleaned and cleaned.isdigit() else None


class PtbXlFormat(DatasetFormat):
    name = "ptbxl"
    description = "PTB-XL: ptbxl_database.csv + scp_statements.csv + records500/ (500 Hz WFDB)"

    def detect(self, inventory: FolderInventory) -> bool:
        return inventory.top_level(DATABASE_FILE) is not None or any(
            name == DATABASE_FILE for name, _ in inventory.problems
        )

    def list_records(self, folder: Path, inventory: FolderInventory) -> DatasetScan:
        statements = read_scp_statements(dataset_file(folder, inventory.top_level(STATEMENTS_FILE) or STATEMENTS_FILE))
        database_path = dataset_file(folder, inventory.top_level(DATABASE_FILE) or DATABASE_FILE)
        database = read_csv_table(database_path, dtype=str, keep_default_na=False)
        require_columns(database_path, database.columns, DATABASE_COLUMNS)
        scan = DatasetScan(labeler=lambda codes: map_scp_codes(codes, statements))
        headers = set(inventory.with_suffix(".hea", under=RECORDS_500HZ))
        signals = {name.rsplit(".", 1)[0]: name for name in inventory.with_suffix(".dat", under=RECORDS_500HZ)}
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
                    RecordEntry(
                        ecg_id,
                        relative,
                        codes,
                        _clean_id(row.patient_id),
                        _fold(row.strat_fold),
                        error,
                        files=_signal_of(signals, relative),
                    )
                )
        for relative in sorted(headers - listed):
            scan.entries.append(
                RecordEntry(
                    record_id_of(relative),
                    relative,
                    excluded_reason=f"no row in {DATABASE_FILE}",
                    files=_signal_of(signals, relative),
                )
            )
        return scan

    def ignores(self, relative: str) -> bool:
        return relative.startswith(f"{RECORDS_100HZ}/")

    def unclaimed_reason(self, relative: str) -> str:
        if self.ignores(relative):
            return "PTB-XL 100 Hz copy (records100/): the 500 Hz version in records500/ is read instead"
        return super().unclaimed_reason(relative)
