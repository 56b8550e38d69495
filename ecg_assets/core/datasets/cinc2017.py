"""PhysioNet/CinC Challenge 2017: `A*.mat` files (single lead, 300 Hz), with or without `.hea`, and `REFERENCE*.csv`.

REFERENCE rows look like `A00001,N` or, in REFERENCE-v3.csv, `A00/A00001,N,0`: the sub-folder
prefix does not exist on disk; ids are matched to files by `record_ids.RecordIdIndex`.
Files without a REFERENCE row stay in the table, unlabelled.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ecg_assets.core.datasets.base import DatasetFormat, DatasetScan, list_files, record_id_of, resolve_inside
from ecg_assets.core.labels import LabelDecision, map_cinc2017
from ecg_assets.core.paths import dataset_file
from ecg_assets.core.readers import read_mat_signal, read_wfdb
from ecg_assets.core.record_ids import RecordIdIndex
from ecg_assets.core.records import RecordEntry, Recording

FS = 300.0
GAIN_PER_MV = 1000.0
# Newest reference first: v3 is the relabelled final version of the challenge.
REFERENCE_PREFERENCE = ("REFERENCE-v3.csv", "REFERENCE.csv")


def reference_file(folder: Path) -> Path | None:
    """The REFERENCE csv to use: the preferred names first, then any other REFERENCE*.csv.

    Raises `OutsideFolderError` when it is a symbolic link pointing outside the dataset folder.
    """
    for name in REFERENCE_PREFERENCE:
        if (folder / name).is_file():
            return dataset_file(folder, name)
    others = sorted(folder.glob("REFERENCE*.csv"))
    return dataset_file(folder, others[-1].name) if others else None


class Cinc2017Format(DatasetFormat):
    name = "cinc2017"
    description = "PhysioNet/CinC 2017: A*.mat single-lead 300 Hz + REFERENCE*.csv"

    def detect(self, folder: Path) -> bool:
        return reference_file(folder) is not None and any(folder.glob("*.mat"))

    def scan(self, folder: Path) -> DatasetScan:
        scan = DatasetScan()
        files = {record_id_of(relative): relative for relative in list_files(folder, "**/*.mat", scan.problems)}
        index = RecordIdIndex(((record_id, [relative]) for record_id, relative in files.items()), folder.name)
        reference = reference_file(folder)
        labelled: set[str] = set()
        with reference.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            for row in csv.reader(handle):
                if not row or not row[0].strip():
                    continue
                raw_id = row[0].strip()
                if len(row) < 2 or not row[1].strip():
                    scan.problems.append((raw_id, f"row in {reference.name} has no class"))
                    continue
                record_id, reason = index.match(raw_id)
                if record_id is None:
                    scan.problems.append((raw_id, f"{reference.name}: {reason}"))
                    continue
                labelled.add(record_id)
                scan.entries.append(RecordEntry(record_id, files[record_id], (row[1].strip(),)))
        scan.entries += [RecordEntry(rid, relative) for rid, relative in files.items() if rid not in labelled]
        return scan

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        return map_cinc2017(native_labels)

    def read(self, folder: Path, entry: RecordEntry, max_duration_s: float | None = None) -> Recording:
        path = resolve_inside(folder, entry.source_file)
        header = path.with_suffix(".hea")
        if header.is_file():
            return read_wfdb(header, max_duration_s, root=folder)
        return read_mat_signal(path, FS, ["I"], gain=GAIN_PER_MV, max_duration_s=max_duration_s)
