import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ecg_assets.core import matfiles
from ecg_assets.core.datasets import UnknownFormatError, detect_format
from ecg_assets.core.datasets.base import resolve_inside
from ecg_assets.core.datasets.config import DatasetConfigError, load_dataset_config
from ecg_assets.core.records import RecordEntry, RecordReadError

from .conftest import sine_leads, write_wfdb_record


def test_demo_cinc2017_layout_is_detected_and_read(demo_root):
    folder = demo_root / "demo_cinc2017"
    dataset_format = detect_format(folder)
    assert dataset_format.name == "cinc2017"
    scan = dataset_format.scan(folder)
    assert len(scan.entries) == 200 and not scan.problems
    entry = scan.entries[0]
    recording = dataset_format.read(folder, entry)
    assert recording.fs == 300.0 and recording.lead_names == ["I"]
    assert recording.signal.shape[0] == 1 and recording.signal.dtype == np.float32
    assert 0.05 < np.abs(recording.signal).max() < 10  # millivolts, not ADC units


def test_cinc2017_reference_prefix_and_unmatched_rows(tmp_path, demo_root):
    folder = tmp_path / "c17"
    folder.mkdir()
    for name in ("A00001.mat", "A00002.mat", "A00003.mat"):
        shutil.copy(demo_root / "demo_cinc2017" / name, folder / name)
    (folder / "REFERENCE-v3.csv").write_text("A00/A00001,N,0\nA00/A00002,A,0\nA00/A00009,O,0\n")
    scan = detect_format(folder).scan(folder)
    entries = [(e.record_id, e.native_labels) for e in scan.entries]
    assert entries == [("A00001", ("N",)), ("A00002", ("A",)), ("A00003", ())]  # A00003: no row, unlabelled
    assert dict(scan.problems) == {"A00/A00009": "REFERENCE-v3.csv: matches no record in the dataset folder"}


def test_demo_cinc2021_layout_reads_twelve_leads_and_dx(demo_root):
    folder = demo_root / "demo_cinc2021"
    dataset_format = detect_format(folder)
    assert dataset_format.name == "cinc2021"
    entry = dataset_format.scan(folder).entries[0]
    assert entry.native_labels and all(code.isdigit() for code in entry.native_labels)
    recording = dataset_format.read(folder, entry)
    assert recording.fs == 500.0 and len(recording.lead_names) == 12
    assert recording.signal.shape == (12, 5000)


def test_generic_wfdb_folder(tmp_path):
    write_wfdb_record(tmp_path / "mitdb", "100", sine_leads(2, 3600, 360.0), 360.0, ["MLII", "V5"], fmt="212")
    dataset_format = detect_format(tmp_path / "mitdb")
    assert dataset_format.name == "wfdb" and dataset_format.needs_label_csv
    entry = dataset_format.scan(tmp_path / "mitdb").entries[0]
    recording = dataset_format.read(tmp_path / "mitdb", entry, max_duration_s=5.0)
    assert recording.lead_names == ["MLII", "V5"]
    assert recording.signal.shape == (2, 1801)  # only what preprocessing needs was read
    assert recording.original_samples == 3600


def test_unknown_layout_names_what_was_tried(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnknownFormatError, match="no supported format"):
        detect_format(tmp_path)


def test_truncated_signal_file_is_a_read_error(tmp_path):
    header = write_wfdb_record(tmp_path / "d", "r1", sine_leads(2, 1000, 500.0), 500.0, ["I", "II"])
    dat = header.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:10])
    dataset_format = detect_format(tmp_path / "d")
    with pytest.raises(RecordReadError, match="r1.dat is truncated: 10 bytes"):
        dataset_format.read(tmp_path / "d", RecordEntry("r1", "r1.hea"))


def test_paths_cannot_escape_the_dataset_folder(tmp_path):
    with pytest.raises(RecordReadError, match="outside the dataset folder"):
        resolve_inside(tmp_path, "../etc/passwd")
    with pytest.raises(RecordReadError, match="outside the dataset folder"):
        resolve_inside(tmp_path, "/etc/passwd")


def _mat_folder(folder, value, yaml_text="sampling_rate: 250\nlead_names: [I, II, ABP]\ngain: 100\n", fmt="5"):
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / "rec1.mat", {"val": value}, format=fmt)
    if yaml_text is not None:
        (folder / "dataset.yaml").write_text(yaml_text)
    return folder


@pytest.mark.parametrize("fmt", ["4", "5"])
@pytest.mark.parametrize("transpose", [False, True])
def test_mat_files_with_dataset_yaml(tmp_path, fmt, transpose):
    value = (sine_leads(3, 4000, 250.0) * 100).astype(np.int16)
    folder = _mat_folder(tmp_path / "mats", value.T if transpose else value, fmt=fmt)
    dataset_format = detect_format(folder)
    assert dataset_format.name == "mat" and dataset_format.needs_label_csv
    entry = dataset_format.scan(folder).entries[0]
    recording = dataset_format.read(folder, entry, max_duration_s=10.0)
    assert recording.fs == 250.0 and recording.lead_names == ["I", "II", "ABP"]
    assert recording.original_samples == 4000 and recording.signal.shape == (3, 2501)
    assert np.allclose(recording.signal, value[:, :2501] / 100.0)


def test_mat_files_without_dataset_yaml_stop_the_partition_naming_what_is_missing(tmp_path):
    folder = _mat_folder(tmp_path / "mats", np.ones((2, 100)), yaml_text=None)
    with pytest.raises(DatasetConfigError, match="need sampling_rate and lead_names stated in dataset.yaml"):
        detect_format(folder).scan(folder)


def test_large_mat_v5_is_refused_rather_than_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(matfiles, "MAX_WHOLE_READ_BYTES", 1000)
    folder = _mat_folder(tmp_path / "mats", np.ones((3, 4000)))
    dataset_format = detect_format(folder)
    with pytest.raises(RecordReadError, match="save it as MAT v4 to read only the window needed"):
        dataset_format.read(folder, dataset_format.scan(folder).entries[0], max_duration_s=10.0)


def test_dataset_yaml_can_force_the_layout(demo_root, tmp_path):
    folder = tmp_path / "c21"
    shutil.copytree(demo_root / "demo_cinc2021", folder)
    assert detect_format(folder).name == "cinc2021"
    (folder / "dataset.yaml").write_text("format: wfdb\n")
    assert detect_format(folder).name == "wfdb"
    (folder / "dataset.yaml").write_text("format: edf\n")
    with pytest.raises(DatasetConfigError, match="unknown format 'edf'; known: ptbxl, ptb_diagnostic"):
        detect_format(folder)


def test_the_dataset_yaml_docstring_lists_every_format_name_in_detection_order():
    """The `format:` values the config module documents are the registry's (a new format cannot go unlisted)."""
    from ecg_assets.core.datasets import FORMATS
    from ecg_assets.core.datasets import config

    documented = re.search(r"^format: \S+ +# skip detection: (.+)$", config.__doc__, re.MULTILINE)
    assert documented, "config.py's docstring no longer shows the format: line"
    assert [name.strip() for name in documented.group(1).split(",")] == [fmt.name for fmt in FORMATS]


@pytest.mark.parametrize(
    "text, message",
    [
        ("sampling_rate: 0\n", "sampling_rate: Input should be greater than 0"),
        ("rate: 500\n", "rate: Extra inputs are not permitted"),
        ("[1, 2]\n", "expected a mapping of settings"),
        ("format: [\n", "not readable YAML"),
    ],
)
def test_invalid_dataset_yaml_is_an_error_naming_the_problem(tmp_path, text, message):
    (tmp_path / "dataset.yaml").write_text(text)
    with pytest.raises(DatasetConfigError, match=re.escape(message)):
        load_dataset_config(tmp_path)


def test_header_without_lead_names_takes_them_from_dataset_yaml(tmp_path):
    header = write_wfdb_record(tmp_path / "d", "r1", sine_leads(2, 1000, 500.0), 500.0, ["I", "II"])
    lines = header.read_text().splitlines()
    header.write_text("\n".join([lines[0], *(" ".join(line.split()[:-1]) for line in lines[1:3])]) + "\n")
    dataset_format = detect_format(tmp_path / "d")
    entry = dataset_format.scan(tmp_path / "d").entries[0]
    with pytest.raises(RecordReadError, match=re.escape("no standard ECG lead among channels (unnamed), (unnamed)")):
        dataset_format.read(tmp_path / "d", entry)
    (tmp_path / "d" / "dataset.yaml").write_text("lead_names: [V1, V2]\n")
    assert dataset_format.read(tmp_path / "d", entry).lead_names == ["V1", "V2"]


def test_path_checks_follow_a_repointed_dataset_link_and_new_links_inside_it(tmp_path):
    first, second, outside = tmp_path / "first", tmp_path / "second", tmp_path / "outside"
    for folder in (first, second, outside):
        folder.mkdir()
        (folder / "r.mat").write_bytes(b"x")
    link = tmp_path / "data"
    link.symlink_to(first)
    assert resolve_inside(link, "r.mat") == first / "r.mat"
    assert resolve_inside(link, link / "r.mat") == first / "r.mat"  # an absolute path below the link
    link.unlink()
    link.symlink_to(second)  # the folder's real path is not remembered past a change of folder
    assert resolve_inside(link, "r.mat") == second / "r.mat"
    (second / "r.mat").unlink()
    (second / "r.mat").symlink_to(outside / "r.mat")  # nor is a file's
    with pytest.raises(RecordReadError, match="resolves outside the dataset folder"):
        resolve_inside(link, "r.mat")
    (second / "ok.mat").write_bytes(b"x")
    (second / "sub").symlink_to(second)  # a link that stays inside is fine
    assert resolve_inside(link, "sub/ok.mat") == second / "ok.mat"


def test_readers_use_only_the_public_wfdb_api():
    """wfdb is not pinned: a private function (`wfdb.io._signal._rd_segment`) could change in any release."""
    import ecg_assets.core.readers as readers

    source = Path(readers.__file__).read_text()
    assert not re.search(r"wfdb\.io\._|from wfdb\.io import _|\._rd_", source)


def test_an_upper_case_header_and_a_header_without_length_read_like_the_plain_header(tmp_path):
    header = write_wfdb_record(tmp_path / "d", "r1", sine_leads(2, 6000, 500.0), 500.0, ["I", "II"])
    dataset_format = detect_format(tmp_path / "d")
    plain = dataset_format.read(tmp_path / "d", RecordEntry("r1", "r1.hea"), max_duration_s=10.0)
    lines = header.read_text().splitlines()
    (tmp_path / "d" / "r2.HEA").write_text("\n".join([lines[0].replace("r1", "r2", 1), *lines[1:]]) + "\n")
    (tmp_path / "d" / "r3.hea").write_text("\n".join([" ".join(lines[0].split()[:3]), *lines[1:]]) + "\n")
    for name in ("r2.HEA", "r3.hea"):
        other = dataset_format.read(tmp_path / "d", RecordEntry(name, name), max_duration_s=10.0)
        np.testing.assert_array_equal(other.signal, plain.signal)
        assert other.original_samples == 6000 and other.files[1:] == plain.files[1:]
