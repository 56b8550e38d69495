import shutil

import numpy as np
import pytest

from ecg_assets.core.datasets import UnknownLayoutError, detect_layout
from ecg_assets.core.datasets.base import resolve_inside
from ecg_assets.core.records import RecordEntry, RecordReadError

from .conftest import sine_leads, write_wfdb_record


def test_demo_cinc2017_layout_is_detected_and_read(demo_root):
    folder = demo_root / "demo_cinc2017"
    layout = detect_layout(folder)
    assert layout.name == "cinc2017"
    scan = layout.scan(folder)
    assert len(scan.entries) == 200 and not scan.problems
    entry = scan.entries[0]
    recording = layout.read(folder, entry)
    assert recording.fs == 300.0 and recording.lead_names == ["I"]
    assert recording.signal.shape[0] == 1 and recording.signal.dtype == np.float32
    assert 0.05 < np.abs(recording.signal).max() < 10  # millivolts, not ADC units


def test_cinc2017_reference_prefix_and_unmatched_rows(tmp_path, demo_root):
    folder = tmp_path / "c17"
    folder.mkdir()
    for name in ("A00001.mat", "A00002.mat", "A00003.mat"):
        shutil.copy(demo_root / "demo_cinc2017" / name, folder / name)
    (folder / "REFERENCE-v3.csv").write_text("A00/A00001,N,0\nA00/A00002,A,0\nA00/A00009,O,0\n")
    scan = detect_layout(folder).scan(folder)
    entries = [(e.record_id, e.native_labels) for e in scan.entries]
    assert entries == [("A00001", ("N",)), ("A00002", ("A",)), ("A00003", ())]  # A00003: no row, unlabelled
    assert dict(scan.problems) == {"A00/A00009": "REFERENCE-v3.csv: matches no record in the dataset folder"}


def test_demo_cinc2021_layout_reads_twelve_leads_and_dx(demo_root):
    folder = demo_root / "demo_cinc2021"
    layout = detect_layout(folder)
    assert layout.name == "cinc2021"
    entry = layout.scan(folder).entries[0]
    assert entry.native_labels and all(code.isdigit() for code in entry.native_labels)
    recording = layout.read(folder, entry)
    assert recording.fs == 500.0 and len(recording.lead_names) == 12
    assert recording.signal.shape == (12, 5000)


def test_generic_wfdb_folder(tmp_path):
    write_wfdb_record(tmp_path / "mitdb", "100", sine_leads(2, 3600, 360.0), 360.0, ["MLII", "V5"], fmt="212")
    layout = detect_layout(tmp_path / "mitdb")
    assert layout.name == "wfdb" and layout.needs_label_csv
    entry = layout.scan(tmp_path / "mitdb").entries[0]
    recording = layout.read(tmp_path / "mitdb", entry, max_duration_s=5.0)
    assert recording.lead_names == ["MLII", "V5"]
    assert recording.signal.shape == (2, 1801)  # only what preprocessing needs was read
    assert recording.original_samples == 3600


def test_unknown_layout_names_what_was_tried(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnknownLayoutError, match="no supported layout"):
        detect_layout(tmp_path)


def test_truncated_signal_file_is_a_read_error(tmp_path):
    header = write_wfdb_record(tmp_path / "d", "r1", sine_leads(2, 1000, 500.0), 500.0, ["I", "II"])
    dat = header.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:10])
    layout = detect_layout(tmp_path / "d")
    with pytest.raises(RecordReadError, match="r1.dat is truncated: 10 bytes"):
        layout.read(tmp_path / "d", RecordEntry("r1", "r1.hea"))


def test_paths_cannot_escape_the_dataset_folder(tmp_path):
    with pytest.raises(RecordReadError, match="outside the dataset folder"):
        resolve_inside(tmp_path, "../etc/passwd")
    with pytest.raises(RecordReadError, match="outside the dataset folder"):
        resolve_inside(tmp_path, "/etc/passwd")
