"""PTB Diagnostic ECG Database on a generated folder with PhysioNet's structure: patientNNN/sNNNNxre.hea
+ .dat (12 standard leads) + .xyz (Frank leads), 1000 Hz, 16-bit, gain 2000/mV, CRLF headers."""

from pathlib import Path

import numpy as np
import pytest

from ecg_assets.core.datasets import detect_format
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.preprocessing import process_records
from ecg_assets.core.signal import PreprocessConfig
from ecg_assets.core.splits import METHOD_PATIENTS, SplitConfig, assign_splits

STANDARD = ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"]
FRANK = ["vx", "vy", "vz"]
FS, GAIN, SAMPLES = 1000, 2000, 12000  # 12 s: longer than the 10 s window

# record: (reason for admission, expected label)
RECORDS = {
    "patient001/s0010_re": ("Myocardial infarction", "MI"),
    "patient001/s0014lre": ("Myocardial infarction", "MI"),
    "patient104/s0306lre": ("Healthy control", "NORM"),
    "patient105/s0303lre": ("Bundle branch block", "BBB"),
    "patient106/s0030_re": ("Dysrhythmia", "OTHER"),
    "patient108/s0013_re": ("Heart failure (NYHA 2)", "OTHER"),
}


def write_ptb_record(folder: Path, name: str, reason: str, seed: int = 0) -> np.ndarray:
    """A record laid out like PTB's: .dat holds the 12 standard leads, .xyz the 3 Frank leads."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(SAMPLES) / FS
    rng = np.random.default_rng(seed)
    digital = np.stack([np.sin(2 * np.pi * (1 + k / 3) * t) * 900 + rng.normal(0, 20, SAMPLES) for k in range(15)])
    digital = digital.astype(np.int16)
    (folder / f"{name}.dat").write_bytes(np.ascontiguousarray(digital[:12].T).tobytes())
    (folder / f"{name}.xyz").write_bytes(np.ascontiguousarray(digital[12:].T).tobytes())
    lines = [f"{name} 15 {FS} {SAMPLES}"]
    for channel, lead in enumerate(STANDARD + FRANK):
        checksum = int(digital[channel].astype(np.int64).sum() % 65536)
        checksum = checksum - 65536 if checksum > 32767 else checksum  # PTB headers write it signed
        extension = "dat" if channel < 12 else "xyz"
        lines.append(f"{name}.{extension} 16 {GAIN} 16 0 {digital[channel, 0]} {checksum} 0 {lead}")
    lines += ["", "# age: 81", "# sex: female", "# ECG date: 01/10/1990", "", "# Diagnose:"]
    lines += [f"# Reason for admission: {reason}", "# Acute infarction (localization): infero-latera", "# Smoker: no"]
    (folder / f"{name}.hea").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return digital


@pytest.fixture(scope="module")
def ptb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "ptbdb"
    for seed, (record, (reason, _)) in enumerate(RECORDS.items()):
        patient, name = record.split("/")
        write_ptb_record(root / patient, name, reason, seed)
    write_ptb_record(root / "patient107", "s0400lre", "n/a")
    return root


def test_layout_labels_and_patients(ptb):
    assert detect_format(ptb).name == "ptb_diagnostic"
    mapping = build_label_mapping(ptb, "ptbdb")
    table = mapping.table.set_index("record_id")
    for record, (reason, label) in RECORDS.items():
        assert table.loc[record, "mapped_label"] == label
        assert table.loc[record, "native_labels"] == reason
        assert table.loc[record, "patient_id"] == record.split("/")[0]
    assert table.loc["patient107/s0400lre", "excluded_reason"] == "reason for admission is 'n/a'"


def test_standard_leads_are_read_at_1000_hz_and_frank_leads_are_not(ptb):
    dataset_format = detect_format(ptb)
    entry = next(entry for entry in dataset_format.scan(ptb).entries if entry.record_id == "patient104/s0306lre")
    recording = dataset_format.read(ptb, entry, max_duration_s=10.0)
    assert recording.fs == 1000.0 and recording.lead_names == STANDARD
    assert recording.signal.shape == (12, 10001) and recording.original_samples == SAMPLES
    expected = write_ptb_record(ptb.parent / "copy", "s0306lre", "Healthy control", seed=2)
    assert np.allclose(recording.signal, expected[:12, :10001] / GAIN, atol=1e-6)


def test_processing_and_patient_grouped_splits(ptb, tmp_path):
    mapping = build_label_mapping(ptb, "ptbdb")
    store, report = process_records(ptb, detect_format(ptb), mapping.included, tmp_path, PreprocessConfig())
    assert report.processed == len(RECORDS) and not report.failures
    assert set(store.index["lead_mask"]) == {"1" * 12} and set(store.index["original_fs"]) == {1000.0}
    result = assign_splits(store.index["label"].tolist(), SplitConfig(), store.index["patient_id"].tolist())
    assert result.method == METHOD_PATIENTS
    split_of = {position: name for name, positions in result.positions.items() for position in positions}
    patient001 = [split_of[i] for i, patient in enumerate(store.index["patient_id"]) if patient == "patient001"]
    assert len(patient001) == 2 and len(set(patient001)) == 1


def test_missing_frank_lead_file_fails_the_record_with_its_reason(ptb, tmp_path):
    root = tmp_path / "ptbdb"
    write_ptb_record(root / "patient001", "s0010_re", "Myocardial infarction")
    write_ptb_record(root / "patient002", "s0015lre", "Myocardial infarction")
    (root / "patient002" / "s0015lre.xyz").unlink()
    mapping = build_label_mapping(root, "ptbdb")
    _, report = process_records(root, detect_format(root), mapping.included, tmp_path / "out", PreprocessConfig())
    assert report.failures == [("patient002/s0015lre", "header names signal file s0015lre.xyz, which does not exist")]
