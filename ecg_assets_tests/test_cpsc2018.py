"""Raw CPSC 2018: MAT v5 struct `ECG` (sex, age, data 12 x N at 500 Hz) + REFERENCE.csv codes 1-9; and struct
fields named by dataset.yaml (`mat_variable: ECG.data`) for other struct-style MAT datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from ecg_assets.core.datasets import detect_format
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.labels import CPSC2018_TABLE, map_cpsc2018
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records
from ecg_assets.core.records import RecordReadError
from ecg_assets.core.splits import read_splits
from ecg_assets.core.store import RecordStore
from ecg_assets.defs.assets import label_mapping, processed_records, splits
from ecg_assets.defs.resources import EcgPathsResource

from .accounting import assert_every_file_accounted
from .conftest import materialize_partition, sine_leads

# (codes, sex, age, seconds): the unified label follows from the codes by MI > AF > BBB > OTHER > NORM.
RECORDS = {
    "A0001": (("1",), "Male", 53.0, 12),
    "A0002": (("2",), "Female", 74.0, 10),
    "A0003": (("3",), "Male", 61.0, 15),
    "A0004": (("4",), "Female", 80.0, 10),
    "A0005": (("5", "7"), "Male", 45.0, 20),  # RBBB + PVC -> BBB
    "A0006": (("6",), "Female", 33.0, 9),
    "A0007": (("2", "5"), "Male", 70.0, 30),  # AF + RBBB -> AF
    "A0008": (("8", "9"), "Female", float("nan"), 10),  # age unknown (NaN, as in the real set)
    "A0009": (("1",), "Female", 28.0, 10),
    "A0010": (("9",), "Male", 66.0, 6),
}
EXPECTED = {
    "A0001": "NORM",
    "A0002": "AF",
    "A0003": "OTHER",
    "A0004": "BBB",
    "A0005": "BBB",
    "A0006": "OTHER",
    "A0007": "AF",
    "A0008": "OTHER",
    "A0009": "NORM",
    "A0010": "OTHER",
}


def write_cpsc_record(path: Path, sex: str, age: float, seconds: float, seed: int, as_record_array: bool) -> None:
    """One raw CPSC 2018 file: variable `ECG`, a 1 x 1 struct with fields sex, age, data (12 x N, mV)."""
    data = sine_leads(12, int(seconds * 500), 500.0, seed) * 0.5
    if as_record_array:  # what MATLAB's own files look like to scipy
        ecg = np.zeros((1, 1), dtype=[("sex", object), ("age", object), ("data", object)])
        ecg[0, 0] = (np.array([sex]), np.array([[age]]), data)
    else:  # a dict inside the dict: scipy writes a struct
        ecg = {"sex": sex, "age": age, "data": data}
    scipy.io.savemat(path, {"ECG": ecg}, format="5")


def cpsc_folder(folder: Path, reference: bool = True) -> Path:
    folder.mkdir(parents=True)
    for index, (name, (_, sex, age, seconds)) in enumerate(RECORDS.items()):
        write_cpsc_record(folder / f"{name}.mat", sex, age, seconds, index, as_record_array=index % 2 == 0)
    if reference:
        rows = ["Recording,First_label,Second_label,Third_label"]
        rows += [",".join([name, *codes, *[""] * (3 - len(codes))]) for name, (codes, *_) in RECORDS.items()]
        (folder / "REFERENCE.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_the_cpsc_code_table_maps_to_the_unified_vocabulary():
    assert {code: label for code, (_, label) in CPSC2018_TABLE.items()} == {
        "1": "NORM",
        "2": "AF",
        "3": "OTHER",
        "4": "BBB",
        "5": "BBB",
        "6": "OTHER",
        "7": "OTHER",
        "8": "OTHER",
        "9": "OTHER",
    }
    assert map_cpsc2018(("1", "2")).label == "AF"
    assert map_cpsc2018(("10",)).label is None and "unknown CPSC 2018 code" in map_cpsc2018(("10",)).reason


def test_a_cpsc2018_folder_is_detected_labelled_and_read_with_sex_and_age(tmp_path):
    folder = cpsc_folder(tmp_path / "cpsc")
    assert detect_format(folder).name == "cpsc2018"
    mapping = build_label_mapping(folder, "cpsc")
    assert dict(zip(mapping.table["record_id"], mapping.table["mapped_label"])) == EXPECTED
    assert mapping.table.set_index("record_id").loc["A0005", "native_labels"] == "5;7"
    store, report = process_records(
        folder, detect_format(folder), mapping.included, tmp_path / "out", RecordProcessingConfig(), workers=1
    )
    assert report.processed == 10 and not report.failures
    index = store.index.set_index("record_id")
    assert index.loc["A0001", "sex"] == "Male" and index.loc["A0001", "age"] == "53"
    assert index.loc["A0008", "sex"] == "Female" and index.loc["A0008", "age"] == ""
    assert (index["lead_mask"] == "1" * 12).all() and (index["original_fs"] == 500.0).all()
    assert index.loc["A0007", "original_samples"] == 15000
    assert_every_file_accounted(folder, mapping, tmp_path / "out")


def test_a_cpsc2018_folder_materializes_with_correct_label_counts(tmp_path):
    data = tmp_path / "data"
    cpsc_folder(data / "demo_cinc2021")  # a partition key of the test code location
    resources = {"paths": EcgPathsResource(data_dir=str(data), artifacts_dir=str(tmp_path / "artifacts"))}
    assets = [label_mapping, processed_records, splits]
    result = materialize_partition(assets, partition_key="demo_cinc2021", resources=resources)
    metadata = result.asset_materializations_for_node("label_mapping")[0].metadata
    assert metadata["format"].value == "cpsc2018" and metadata["labelled"].value == 10
    assert "| AF | 2 |" in metadata["label_counts"].value and "| BBB | 2 |" in metadata["label_counts"].value
    store = RecordStore(tmp_path / "artifacts" / "demo_cinc2021" / "processed")
    assert store.index["label"].value_counts().to_dict() == {"OTHER": 4, "NORM": 2, "AF": 2, "BBB": 2}
    assert set(store.index["sex"]) == {"Male", "Female"}
    split = read_splits(tmp_path / "artifacts" / "demo_cinc2021" / "processed" / "splits.json")
    assert sorted(position for positions in split.values() for position in positions) == list(range(10))


def test_without_reference_the_folder_is_still_cpsc2018_by_its_mat_content(tmp_path):
    folder = cpsc_folder(tmp_path / "new_recordings", reference=False)
    dataset_format = detect_format(folder)
    assert dataset_format.name == "cpsc2018"
    scan = dataset_format.scan(folder)
    assert len(scan.entries) == 10 and all("no REFERENCE.csv" in entry.excluded_reason for entry in scan.entries)
    recording = dataset_format.read(folder, scan.entries[0], max_duration_s=10.0)
    assert recording.signal.shape == (12, 5001) and recording.sex == "Male" and recording.age == 53.0


def test_a_cpsc_file_without_data_is_a_failed_record_with_its_reason(tmp_path):
    folder = cpsc_folder(tmp_path / "cpsc")
    scipy.io.savemat(folder / "A0003.mat", {"ECG": {"sex": "Male", "age": 1.0}}, format="5")
    dataset_format = detect_format(folder)
    message = "MAT struct 'ECG' in A0003.mat has no field 'data' .its fields: sex, age."
    with pytest.raises(RecordReadError, match=message):
        dataset_format.read(folder, dataset_format.scan(folder).entries[2])


@pytest.mark.parametrize("variable", ["recording.signal", "ECG.data"])
def test_dataset_yaml_mat_variable_names_a_struct_field(tmp_path, variable):
    folder = tmp_path / "structs"
    folder.mkdir()
    top, field = variable.split(".")
    value = (sine_leads(3, 4000, 250.0) * 100).astype(np.int16)
    scipy.io.savemat(folder / "rec1.mat", {top: {field: value, "note": "x"}}, format="5")
    settings = f"sampling_rate: 250\nlead_names: [I, II, V1]\ngain: 100\nmat_variable: {variable}\n"
    (folder / "dataset.yaml").write_text(settings)
    dataset_format = detect_format(folder)
    assert dataset_format.name == "mat"
    recording = dataset_format.read(folder, dataset_format.scan(folder).entries[0], max_duration_s=10.0)
    assert recording.lead_names == ["I", "II", "V1"] and recording.signal.shape == (3, 2501)
    np.testing.assert_allclose(recording.signal, value[:, :2501] / 100.0, rtol=1e-6)


@pytest.mark.parametrize(
    "variable, message",
    [
        ("recording.samples", r"MAT struct 'recording' in rec1\.mat has no field 'samples' \(its fields: signal\)"),
        ("other.signal", r"MAT file rec1\.mat has no variable 'other' \(it holds: recording\)"),
        ("recording.signal.x", r"MAT variable 'recording.signal' in rec1\.mat is not a struct: it has no field 'x'"),
    ],
)
def test_a_struct_field_that_is_not_there_is_a_failed_record_naming_it(tmp_path, variable, message):
    folder = tmp_path / "structs"
    folder.mkdir()
    scipy.io.savemat(folder / "rec1.mat", {"recording": {"signal": np.ones((2, 900))}}, format="5")
    (folder / "dataset.yaml").write_text(f"sampling_rate: 250\nlead_names: [I, II]\nmat_variable: {variable}\n")
    mapping = build_label_mapping(folder, "structs")
    config = RecordProcessingConfig()
    _, report = process_records(folder, detect_format(folder), mapping.included, tmp_path / "out", config)
    assert len(report.failures) == 1
    assert pd.Series([report.failures[0][1]]).str.contains(message).all(), report.failures
