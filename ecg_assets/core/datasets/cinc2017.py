"""PhysioNet/CinC Challenge 2017: `A*.mat` files (single lead, 300 Hz), with or without `.hea`, and `REFERENCE*.csv`.

REFERENCE rows look like `A00001,N` or, in REFERENCE-v3.csv, `A00/A00001,N,0`: the sub-folder
prefix does not exist on disk; ids are matched to files by `record_ids.RecordIdIndex`. Class
letters are accepted in either case. Files without a REFERENCE row stay in the table, unlabelled.

Files without a `.hea` are read at 300 Hz as lead I with 1000 ADC units per mV, unless the folder's
dataset.yaml states `sampling_rate`, `lead_names`, `gain` or `mat_variable`.

A folder without REFERENCE (recordings to score) is still CinC 2017 when most of its `.mat` files
are named like the challenge's (`A00001.mat`) and hold a single-lead MAT v4 `val` matrix, and no
dataset.yaml states another sampling rate: its records are listed, unlabelled.
"""

from __future__ import annotations

import re
from pathlib import Path

from ecg_assets.core.datasets.base import DatasetFormat, DatasetScan, majority, record_id_of, resolve_inside
from ecg_assets.core.datasets.config import load_dataset_config
from ecg_assets.core.datasets.inventory import FolderInventory
from ecg_assets.core.labels import LabelDecision, LabelMappingError, map_cinc2017
from ecg_assets.core.matfiles import mat4_matrices, mat_version
from ecg_assets.core.paths import dataset_file
from ecg_assets.core.readers import read_mat_signal, read_wfdb
from ecg_assets.core.record_ids import RecordIdIndex
from ecg_assets.core.records import RecordEntry, RecordReadError, Recording
from ecg_assets.core.textfiles import csv_rows

FS = 300.0
GAIN_PER_MV = 1000.0
# Newest reference first: v3 is the relabelled final version of the challenge.
REFERENCE_PREFERENCE = ("REFERENCE-v3.csv", "REFERENCE.csv")
RECORD_NAME = re.compile(r"^A\d{5}$")
DETECTION_SAMPLE = 20
NO_REFERENCE = "no REFERENCE*.csv in the dataset folder: unlabelled"


def reference_file(folder: Path, inventory: FolderInventory | None = None) -> Path | None:
    """The REFERENCE csv to use: the preferred names first, then any other REFERENCE*.csv (names in any case).

    Raises `OutsideFolderError` when it is a symbolic link pointing outside the dataset folder, and
    `LabelMappingError` when it is a link that cannot be followed.
    """
    inventory = inventory if inventory is not None else FolderInventory.of(folder)

    def is_reference(name: str) -> bool:
        return "/" not in name and re.fullmatch(r"reference.*\.csv", name, re.IGNORECASE) is not None

    for name, reason in inventory.problems:
        if is_reference(name):
            dataset_file(folder, name)  # raises for a link leaving the folder
            raise LabelMappingError(f"{folder / name}: {reason}")
    for name in REFERENCE_PREFERENCE:
        found = inventory.top_level(name)
        if found:
            return dataset_file(folder, found)
    others = sorted(name for name in inventory.files if is_reference(name))
    return dataset_file(folder, others[-1]) if others else None


def _looks_like_challenge_file(path: Path) -> bool:
    """A single-lead MAT v4 `val` matrix in a file named like `A00001.mat`."""
    if not RECORD_NAME.match(path.stem):
        return False
    try:
        if mat_version(path) != 4:
            return False
        matrices = mat4_matrices(path)
    except (OSError, RecordReadError):
        return False
    return bool(matrices) and matrices[0].name == "val" and 1 in (matrices[0].rows, matrices[0].cols)


class Cinc2017Format(DatasetFormat):
    name = "cinc2017"
    description = "PhysioNet/CinC 2017: A*.mat single-lead 300 Hz + REFERENCE*.csv"

    def detect(self, inventory: FolderInventory) -> bool:
        mats = inventory.with_suffix(".mat")
        if not mats:
            return False
        if reference_file(inventory.folder, inventory) is not None:
            return True
        if inventory.with_suffix(".hea") or load_dataset_config(inventory.folder).sampling_rate is not None:
            return False
        sample = inventory.evenly_spaced(mats, DETECTION_SAMPLE)
        return majority([_looks_like_challenge_file(inventory.folder / name) for name in sample])

    def list_records(self, folder: Path, inventory: FolderInventory) -> DatasetScan:
        scan = DatasetScan()
        mats = inventory.with_suffix(".mat")
        headers = {name.rsplit(".", 1)[0]: name for name in inventory.with_suffix(".hea")}
        first: dict[str, str] = {}
        for relative in mats:
            first.setdefault(record_id_of(relative), relative)

        def entry(record_id: str, relative: str, labels: tuple[str, ...] = (), reason: str = "") -> RecordEntry:
            beside = headers.get(relative.rsplit(".", 1)[0])
            return RecordEntry(record_id, relative, labels, excluded_reason=reason, files=(beside,) if beside else ())

        reference = reference_file(folder, inventory)
        labelled: set[str] = set()
        if reference is not None:
            index = RecordIdIndex(((record_id, [relative]) for record_id, relative in first.items()), folder.name)
            for line, row in csv_rows(reference):
                raw_id = row[0].strip()
                if not raw_id:
                    continue
                if len(row) < 2 or not row[1].strip():
                    scan.problems.append((raw_id, f"{reference.name} line {line}: row has no class"))
                    continue
                record_id, reason = index.match(raw_id)
                if record_id is None:
                    scan.problems.append((raw_id, f"{reference.name}: {reason}"))
                    continue
                labelled.add(record_id)
                scan.entries.append(entry(record_id, first[record_id], (row[1].strip(),)))
        unlabelled_reason = "" if reference is not None else NO_REFERENCE
        for relative in mats:
            record_id = record_id_of(relative)
            if record_id not in labelled or first[record_id] != relative:
                scan.entries.append(entry(record_id, relative, reason=unlabelled_reason))
        return scan

    def unclaimed_reason(self, relative: str) -> str:
        if relative.lower().endswith(".hea"):
            return "header without a .mat file of the same name beside it: not read"
        return super().unclaimed_reason(relative)

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        return map_cinc2017(native_labels)

    def read(self, folder: Path, entry: RecordEntry, max_duration_s: float | None = None) -> Recording:
        path = resolve_inside(folder, entry.source_file)
        header = path.with_suffix(".hea")
        if header.is_file():
            return read_wfdb(header, max_duration_s, root=folder)
        config = load_dataset_config(folder)  # what it states replaces the challenge's constants
        stated = config.model_fields_set
        recording = read_mat_signal(
            path,
            config.sampling_rate or FS,
            config.lead_names or ["I"],
            gain=config.gain if "gain" in stated else GAIN_PER_MV,
            variable=config.mat_variable,
            max_duration_s=max_duration_s,
        )
        recording.files.append(header)  # looked for: a header added later changes how the record is read
        return recording
