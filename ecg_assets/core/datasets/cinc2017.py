"""PhysioNet/CinC Challenge 2017: flat `A*.mat` files (single lead, 300 Hz) and `REFERENCE*.csv`.

REFERENCE rows look like `A00001,N` or, in REFERENCE-v3.csv, `A00/A00001,N,0`: the sub-folder
prefix does not exist on disk, so rows are matched to files by the id's last path component.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from ecg_assets.core.datasets.base import DatasetLayout, DatasetScan, resolve_inside
from ecg_assets.core.labels import LabelDecision, map_cinc2017
from ecg_assets.core.readers import read_mat_signal, read_wfdb
from ecg_assets.core.records import Recording, RecordEntry

FS = 300.0
GAIN_PER_MV = 1000.0
# Newest reference first: v3 is the relabelled final version of the challenge.
REFERENCE_PREFERENCE = ("REFERENCE-v3.csv", "REFERENCE.csv")


def reference_file(folder: Path) -> Path | None:
    """The REFERENCE csv to use: the preferred names first, then any other REFERENCE*.csv."""
    for name in REFERENCE_PREFERENCE:
        if (folder / name).is_file():
            return folder / name
    others = sorted(folder.glob("REFERENCE*.csv"))
    return others[-1] if others else None


class Cinc2017Layout(DatasetLayout):
    name = "cinc2017"
    description = "PhysioNet/CinC 2017: A*.mat single-lead 300 Hz + REFERENCE*.csv"

    def detect(self, folder: Path) -> bool:
        return reference_file(folder) is not None and any(folder.glob("*.mat"))

    def scan(self, folder: Path) -> DatasetScan:
        scan = DatasetScan()
        files = {path.stem: path.name for path in sorted(folder.glob("*.mat"))}
        reference = reference_file(folder)
        labelled: set[str] = set()
        with reference.open(newline="", encoding="utf-8-sig") as handle:
            for row in csv.reader(handle):
                if not row or not row[0].strip():
                    continue
                raw_id = row[0].strip().replace("\\", "/")
                record_id = PurePosixPath(raw_id).name
                native = tuple(value.strip() for value in row[1:2])
                if record_id in labelled:
                    scan.problems.append((raw_id, f"duplicate row in {reference.name}"))
                elif record_id not in files:
                    scan.problems.append((raw_id, f"listed in {reference.name} but no {record_id}.mat"))
                else:
                    labelled.add(record_id)
                    scan.entries.append(RecordEntry(record_id, files[record_id], native))
        for stem, file_name in files.items():
            if stem not in labelled:
                scan.problems.append((file_name, f"no row in {reference.name}"))
        return scan

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        return map_cinc2017(native_labels)

    def read(self, folder: Path, entry: RecordEntry, max_duration_s: float | None = None) -> Recording:
        path = resolve_inside(folder, entry.source_file)
        header = path.with_suffix(".hea")
        if header.is_file():
            return read_wfdb(header, max_duration_s)
        return read_mat_signal(path, FS, ["I"], gain=GAIN_PER_MV, max_duration_s=max_duration_s)
