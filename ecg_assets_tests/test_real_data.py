"""The real recordings in ../shared/data, record by record (skipped with the reason when absent)."""

import csv

import pytest

from ecg_assets.core.datasets import detect_format
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.preprocessing import process_records
from ecg_assets.core.readers import comment_value, header_comments
from ecg_assets.core.signal import PreprocessConfig

pytestmark = pytest.mark.shared_data


def test_cinc2017_maps_exactly_as_its_reference_says(shared_data):
    folder = shared_data / "cinc2017"
    mapping = build_label_mapping(folder, "cinc2017")
    assert mapping.dataset_format == "cinc2017" and mapping.problems == [] and mapping.unlabelled.empty
    with (folder / "REFERENCE-v3.csv").open(newline="") as handle:
        reference = [row for row in csv.reader(handle) if row]
    assert len(reference) == len(mapping.table) == 3000
    expected_label = {"N": "NORM", "A": "AF", "O": "OTHER", "~": ""}
    for row, record in zip(reference, mapping.table.itertuples()):
        assert row[0].startswith("A00/") or "/" in row[0]  # the sub-folder prefix the files do not have
        assert record.record_id == row[0].split("/")[-1] and record.source_file == f"{record.record_id}.mat"
        assert record.native_labels == row[1] and record.mapped_label == expected_label[row[1]]


# Hand-checked against the SNOMED table: RBBB (59118001) or IRBBB (713426002) -> BBB even with sinus
# bradycardia; sinus rhythm (426783006) alone -> NORM; any other finding -> OTHER.
CINC2021_BBB = {"E07509", "E07510", "HR06002"}
CINC2021_NORM = {"E07506", "E07511", "E07513", "E07515", "E07518", *(f"HR0600{i}" for i in range(4, 10))}


def test_cinc2021_maps_its_snomed_codes_record_by_record(shared_data, tmp_path):
    folder = shared_data / "cinc2021"
    mapping = build_label_mapping(folder, "cinc2021")
    assert mapping.dataset_format == "cinc2021" and len(mapping.table) == 50 and not mapping.problems
    for record in mapping.table.itertuples():
        codes = comment_value(header_comments(folder / record.source_file), "Dx").split(",")
        assert record.native_labels.split(";") == codes  # every native code kept, in order
        expected = (
            "BBB" if record.record_id in CINC2021_BBB else "NORM" if record.record_id in CINC2021_NORM else "OTHER"
        )
        assert record.mapped_label == expected, (record.record_id, codes)
    store, report = process_records(folder, detect_format(folder), mapping.included, tmp_path, PreprocessConfig())
    assert report.processed == 50 and not report.failures
    assert set(store.index["original_fs"]) == {500.0}


# record -> (lead mask in I..V6 order, rate in Hz the ECG leads are read at, samples on disk, channels not used)
WFDB_SAMPLES = {
    "03700181": ("000000100000", 500.0, 300000, "ABP, RESP"),  # MCL1 ~ V1, 4 samples per 125 Hz frame
    "100": ("010000000010", 360.0, 650000, None),  # MLII ~ II, V5; format 212
    "a103l": ("010000000000", 250.0, 82500, "V, PLETH"),  # signal in a MAT v4 file; "V" names no standard lead
    "s0010_re": ("1" * 12, 1000.0, 38400, "vx, vy, vz"),  # PTB Diagnostic: Frank leads in .xyz not read
}
DUPLICATE_HEADERS = {"100-no-len": "100", "a103l-no-len": "a103l"}  # headers without length, same signal files


def test_wfdb_samples_processes_what_is_ecg_and_explains_what_is_not(shared_data, tmp_path):
    folder = shared_data / "wfdb_samples"
    mapping = build_label_mapping(folder, "wfdb_samples")
    table = mapping.table.set_index("record_id")
    assert mapping.dataset_format == "wfdb" and set(table.index) == {*WFDB_SAMPLES, *DUPLICATE_HEADERS}
    for duplicate, kept in DUPLICATE_HEADERS.items():
        assert table.loc[duplicate, "mapped_label"] == ""
        assert f"as record {kept}, which is processed instead" in table.loc[duplicate, "excluded_reason"]
    assert comment_value(header_comments(folder / "s0010_re.hea"), "Reason for admission") == "Myocardial infarction"

    store, report = process_records(folder, detect_format(folder), mapping.included, tmp_path, PreprocessConfig())
    assert not report.failures and sorted(store.index["record_id"]) == sorted(WFDB_SAMPLES)
    index = store.index.set_index("record_id")
    for record, (mask, fs, samples, unused) in WFDB_SAMPLES.items():
        assert index.loc[record, "lead_mask"] == mask, record
        assert index.loc[record, "original_fs"] == fs and index.loc[record, "original_samples"] == samples, record
        if unused:
            assert report.warnings[f"channels not used (not standard ECG leads): {unused}"] == 1, report.warnings


def test_headers_without_length_read_the_same_signal(shared_data):
    folder = shared_data / "wfdb_samples"
    dataset_format = detect_format(folder)
    entries = {entry.record_id: entry for entry in dataset_format.scan(folder).entries}
    for duplicate, kept in DUPLICATE_HEADERS.items():
        with_length = dataset_format.read(folder, entries[kept], max_duration_s=10.0)
        without = dataset_format.read(folder, entries[duplicate], max_duration_s=10.0)
        assert without.original_samples == with_length.original_samples  # inferred from the file size
        assert (without.signal == with_length.signal).all()
