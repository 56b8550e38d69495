"""Every kind of bad input ends as one skipped record with a clear reason, never a crash or a wrong tensor."""

import re
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import scipy.io

from ecg_assets.core.datasets import detect_format
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.labels import LabelMappingError
from ecg_assets.core.preprocessing import process_records
from ecg_assets.core.signal import PreprocessConfig
from ecg_assets.defs.assets import label_mapping, processed_records
from ecg_assets.defs.resources import EcgPathsResource

from .conftest import materialize_partition, sine_leads, write_wfdb_record

FS = 500.0
N = 2000  # 4 s: shorter than the 10 s window, so records are read whole and checksums are verified


def _record(folder: Path, name: str, leads=("I", "II"), signal=None) -> Path:
    signal = sine_leads(len(leads), N, FS) if signal is None else signal
    return write_wfdb_record(folder, name, signal, FS, list(leads))


def _rewrite_header(header: Path, edit) -> None:
    lines = header.read_text().splitlines()
    header.write_text("\n".join(edit(lines)) + "\n")


def truncated_dat(folder: Path) -> None:
    dat = _record(folder, "bad").with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:100])


def garbage_dat(folder: Path) -> None:
    dat = _record(folder, "bad").with_suffix(".dat")
    first_frame = dat.read_bytes()[:4]  # keep the initial values: only the checksum can tell
    dat.write_bytes(first_frame + np.random.default_rng(1).bytes(4 * N - 4))


def truncated_hea(folder: Path) -> None:
    _rewrite_header(_record(folder, "bad"), lambda lines: lines[:2])


def missing_signal_file(folder: Path) -> None:
    _record(folder, "bad").with_suffix(".dat").unlink()


def nan_samples(folder: Path) -> None:
    signal = sine_leads(2, N, FS)
    signal[1, 10:20] = np.nan  # written as WFDB's "no sample" value
    _record(folder, "bad", signal=signal)


def sampling_rate_zero(folder: Path) -> None:
    _rewrite_header(_record(folder, "bad"), lambda lines: [f"bad 2 0 {N}", *lines[1:]])


def sampling_rate_absent(folder: Path) -> None:
    _rewrite_header(_record(folder, "bad"), lambda lines: ["bad 2", *lines[1:]])


def zero_length(folder: Path) -> None:
    header = _record(folder, "bad")
    header.with_suffix(".dat").write_bytes(b"")
    _rewrite_header(header, lambda lines: ["bad 2 500 0", *lines[1:]])


def no_ecg_lead(folder: Path) -> None:
    _record(folder, "bad", leads=("ABP", "RESP"))


def non_utf8_header(folder: Path) -> None:
    header = _record(folder, "bad")
    header.write_bytes(header.read_bytes() + b"# Kommentar: Gr\xfc\xdfe\n")


WFDB_CASES = {
    truncated_dat: r"signal file bad\.dat is truncated: 100 bytes, the header's 2000 samples need 8000",
    garbage_dat: r"signal file bad\.dat fails the header checksum of lead I \(corrupt file\)",
    truncated_hea: r"header is truncated: it announces 2 signal\(s\) but describes 1",
    missing_signal_file: r"header names signal file bad\.dat, which does not exist",
    nan_samples: r"10 non-finite \(NaN or infinite\) sample\(s\)",
    sampling_rate_zero: r"header states an invalid sampling rate \(0\)",
    sampling_rate_absent: r"header states no sampling rate; give sampling_rate in dataset\.yaml",
    zero_length: r"signal is empty \(0 samples\)",
    no_ecg_lead: r"no standard ECG lead among channels ABP, RESP",
    non_utf8_header: r"header bad\.hea is not UTF-8 text \(byte 0xfc on line 4\)",
}


def _mat4(folder: Path, name: str, value) -> None:
    scipy.io.savemat(folder / f"{name}.mat", {"val": value}, format="4")


def mat_missing_variable(folder: Path) -> None:
    scipy.io.savemat(folder / "bad.mat", {"ecg": np.ones((1, 900), np.int16)})


def mat_struct(folder: Path) -> None:
    scipy.io.savemat(folder / "bad.mat", {"val": {"lead": np.ones(900)}})


def mat_three_dimensional(folder: Path) -> None:
    scipy.io.savemat(folder / "bad.mat", {"val": np.ones((1, 900, 2))})


def mat_v73(folder: Path) -> None:
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    (folder / "bad.mat").write_bytes(header.ljust(124, b" ") + b"\x00\x02IM" + b"\x00" * 512)


def mat_not_a_mat_file(folder: Path) -> None:
    (folder / "bad.mat").write_text("this is a text file\n")


def mat_infinite_samples(folder: Path) -> None:
    value = np.sin(np.linspace(0, 20, 3000))[None, :]
    value[0, 5] = np.inf
    _mat4(folder, "bad", value)


def mat_truncated(folder: Path) -> None:
    _mat4(folder, "bad", np.ones((1, 3000), np.int16))
    path = folder / "bad.mat"
    path.write_bytes(path.read_bytes()[:500])


def mat_zero_length(folder: Path) -> None:
    _mat4(folder, "bad", np.zeros((1, 0), np.int16))


def mat_duplicate_reference_row(folder: Path) -> None:
    _mat4(folder, "bad", (np.sin(np.linspace(0, 60, 3000)) * 1000).astype(np.int16)[None, :])


CINC2017_CASES = {
    mat_missing_variable: r"MAT file bad\.mat has no variable 'val' \(it holds: ecg\)",
    mat_struct: r"MAT variable 'val' in bad\.mat is a struct, not a numeric matrix",
    mat_three_dimensional: r"MAT variable 'val' in bad\.mat has shape \(1, 900, 2\), not a 2-D matrix",
    mat_v73: r"bad\.mat is a MAT v7\.3 \(HDF5\) file, which is not supported",
    mat_not_a_mat_file: r"bad\.mat is not a MAT file",
    mat_infinite_samples: r"1 non-finite \(NaN or infinite\) sample\(s\)",
    mat_truncated: r"bad\.mat is truncated: matrix 'val' needs 6024 bytes, the file has 500",
    mat_zero_length: r"signal is empty \(0 samples\)",
    mat_duplicate_reference_row: r"duplicate record id '\w+/bad': an earlier row with this id is processed",
}


def wfdb_folder(folder: Path, cases) -> Path:
    """A generic WFDB dataset: one good record, plus one bad record per case (named after the case)."""
    _record(folder, "good")
    for make in cases:
        case_folder = folder / make.__name__
        make(case_folder)
    return folder


def cinc2017_folder(folder: Path, cases) -> Path:
    """A CinC 2017 dataset: one good record, plus one bad `.mat` per case, each with a REFERENCE row."""
    folder.mkdir(parents=True, exist_ok=True)
    _mat4(folder, "A00001", (np.sin(np.linspace(0, 60, 3000)) * 1000).astype(np.int16)[None, :])
    rows = ["A00001,N"]
    for make in cases:
        (folder / make.__name__).mkdir()
        make(folder / make.__name__)
        rows.append(f"{make.__name__}/bad,A")
        if make is mat_duplicate_reference_row:
            rows.append(f"{make.__name__}/bad,O")
    (folder / "REFERENCE.csv").write_text("\n".join(rows) + "\n")
    return folder


def _process(folder: Path, out: Path):
    mapping = build_label_mapping(folder, folder.name)
    return process_records(folder, detect_format(folder), mapping.included, out, PreprocessConfig())


@pytest.mark.parametrize("make", list(WFDB_CASES), ids=lambda make: make.__name__)
def test_bad_wfdb_record_is_one_skipped_record_with_its_reason(tmp_path, make):
    folder = wfdb_folder(tmp_path / "data", [make])
    store, report = _process(folder, tmp_path / "out")
    assert report.processed == 1 and store.index["record_id"].tolist() == ["good"]
    assert [record_id for record_id, _ in report.failures] == [f"{make.__name__}/bad"]
    assert re.search(WFDB_CASES[make], report.failures[0][1]), report.failures[0][1]
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert failures["record_id"].tolist() == [f"{make.__name__}/bad"]
    assert np.isfinite(store.signals([0])).all()


@pytest.mark.parametrize("make", list(CINC2017_CASES), ids=lambda make: make.__name__)
def test_bad_mat_file_is_one_skipped_record_with_its_reason(tmp_path, make):
    folder = cinc2017_folder(tmp_path / "c17", [make])
    store, report = _process(folder, tmp_path / "out")
    expected_ok = ["A00001", f"{make.__name__}/bad"] if make is mat_duplicate_reference_row else ["A00001"]
    assert store.index["record_id"].tolist() == expected_ok
    assert [record_id for record_id, _ in report.failures] == [f"{make.__name__}/bad"]
    assert re.search(CINC2017_CASES[make], report.failures[0][1]), report.failures[0][1]
    assert pd.read_csv(tmp_path / "out" / "failures.csv")["reason"].tolist() == [report.failures[0][1]]


@pytest.mark.parametrize("value", [0.0, 1.5])
def test_all_zero_or_constant_lead_is_kept_marked_and_finite(tmp_path, value):
    signal = sine_leads(3, N, FS)
    signal[1] = value
    _record(tmp_path / "d", "flat", leads=("I", "II", "V1"), signal=signal)
    store, report = _process(tmp_path / "d", tmp_path / "out")
    assert report.processed == 1 and not report.failures
    assert store.index["flat_mask"].iloc[0] == "010000000000"
    tensor = store.signals([0])[0]
    assert np.isfinite(tensor).all() and not tensor[1].any() and tensor[0].std() > 0.5


def test_header_without_rate_uses_dataset_yaml(tmp_path):
    folder = tmp_path / "d"
    sampling_rate_absent(folder)
    (folder / "dataset.yaml").write_text("sampling_rate: 500\n")
    store, report = _process(folder, tmp_path / "out")
    assert report.processed == 1 and store.index["original_fs"].tolist() == [500.0]


def test_csv_without_required_columns_stops_the_partition_naming_them(tmp_path):
    folder = wfdb_folder(tmp_path / "data" / "holter", [])
    override = folder / "unified_label_mapping.csv"
    override.write_text("record,label\ngood,AF\n")
    with pytest.raises(LabelMappingError, match="missing required column.s. dataset, record_id, mapped_label"):
        build_label_mapping(folder, "holter", [override])


def _materialize(data_dir: Path, artifacts: Path, partition: str) -> dg.ExecuteInProcessResult:
    resources = {"paths": EcgPathsResource(data_dir=str(data_dir), artifacts_dir=str(artifacts))}
    return materialize_partition([label_mapping, processed_records], partition_key=partition, resources=resources)


# Generated real-format datasets in folders carrying the demo's names: a folder under data_dir wins over the demo.
WFDB_PARTITION, CINC2017_PARTITION = "demo_cinc2021", "demo_cinc2017"


def test_every_bad_input_reaches_failures_csv_and_asset_metadata(tmp_path):
    data = tmp_path / "data"
    wfdb_folder(data / WFDB_PARTITION, WFDB_CASES)
    cinc2017_folder(data / CINC2017_PARTITION, CINC2017_CASES)
    for partition, cases in ((WFDB_PARTITION, WFDB_CASES), (CINC2017_PARTITION, CINC2017_CASES)):
        result = _materialize(data, tmp_path / "artifacts", partition)
        metadata = result.asset_materializations_for_node("processed_records")[0].metadata
        assert metadata["failed"].value == len(cases)
        failures = pd.read_csv(tmp_path / "artifacts" / partition / "processed" / "failures.csv")
        reasons = dict(zip(failures["record_id"], failures["reason"]))
        for make, pattern in cases.items():
            reason = reasons[f"{make.__name__}/bad"]
            assert re.search(pattern, reason), (make.__name__, reason)
            assert reason.replace("|", "\\|") in metadata["failure_reasons"].value


def test_rerun_after_fixing_a_file_picks_it_up(tmp_path):
    data = tmp_path / "data"
    folder = wfdb_folder(data / WFDB_PARTITION, [truncated_dat])
    first = _materialize(data, tmp_path / "artifacts", WFDB_PARTITION)
    assert first.asset_materializations_for_node("processed_records")[0].metadata["failed"].value == 1
    _record(folder / "truncated_dat", "bad")  # the user replaces the broken file
    second = _materialize(data, tmp_path / "artifacts", WFDB_PARTITION)
    metadata = second.asset_materializations_for_node("processed_records")[0].metadata
    assert metadata["processed"].value == 2 and metadata["failed"].value == 0
    failures = pd.read_csv(tmp_path / "artifacts" / WFDB_PARTITION / "processed" / "failures.csv")
    assert failures.empty


def test_label_csv_without_required_columns_fails_the_label_mapping_asset(tmp_path):
    data = tmp_path / "data"
    folder = wfdb_folder(data / WFDB_PARTITION, [])
    (folder / "unified_label_mapping.csv").write_text("id,label\ngood,AF\n")
    with pytest.raises(Exception, match="missing required column.s. dataset, record_id, mapped_label"):
        _materialize(data, tmp_path / "artifacts", WFDB_PARTITION)


# Peak RSS growth of each read, measured in a fresh interpreter: the peak (VmHWM) is reset right
# before each read through /proc/self/clear_refs, so earlier allocations cannot hide a later one.
_MEASURE = """
import json, sys
from pathlib import Path
from ecg_assets.core.datasets import detect_format
from ecg_assets.core.records import RecordEntry

def status_kib(key):
    return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1])

growth = {}
for folder, source, window in json.loads(sys.argv[1]):
    folder = Path(folder)
    dataset_format = detect_format(folder)
    dataset_format.read(folder, RecordEntry("warm-up", source), 10.0)  # lazy imports and caches
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = status_kib("VmRSS")
    recording = dataset_format.read(folder, RecordEntry("measured", source), window)
    growth[f"{source} window={window}"] = (status_kib("VmHWM") - before) / 1024
    del recording
print(json.dumps(growth))
"""
HOURS = 4
BOUND_MIB = 32


def _write_long_wfdb(folder: Path) -> None:
    """4 hours of 2-lead 500 Hz format-16 data (29 MB), written an hour at a time, with correct checksums."""
    folder.mkdir(parents=True)
    second = (np.sin(2 * np.pi * np.arange(500) / 500) * 400).astype(np.int16)
    hour = np.stack([np.tile(second, 3600), np.tile(second[::-1], 3600)], axis=1)
    with (folder / "long.dat").open("wb") as handle:
        for _ in range(HOURS):
            handle.write(hour.tobytes())
    checksums = (hour.astype(np.int64).sum(axis=0) * HOURS) % 65536
    n = HOURS * 3600 * 500
    signal_lines = [f"long.dat 16 200 16 0 {hour[0, i]} {checksums[i]} 0 {name}" for i, name in enumerate(["I", "II"])]
    (folder / "long.hea").write_text("\n".join([f"long 2 500 {n}", *signal_lines]) + "\n")
    (folder / "long-no-len.hea").write_text("\n".join(["long-no-len 2 500", *signal_lines]) + "\n")


def _write_long_mat4(folder: Path) -> None:
    """24 hours of single-lead 300 Hz CinC 2017 data as MAT v4 (52 MB), written an hour at a time."""
    folder.mkdir(parents=True)
    hour = np.tile((np.sin(2 * np.pi * np.arange(300) / 300) * 400).astype(np.int16), 3600)
    with (folder / "A00001.mat").open("wb") as handle:
        handle.write(np.array([30, 1, 24 * hour.size, 0, 4], "<i4").tobytes() + b"val\0")
        for _ in range(24):
            handle.write(hour.tobytes())
    (folder / "REFERENCE.csv").write_text("A00001,N\n")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS reset needs Linux /proc")
def test_hours_long_recordings_are_read_in_bounded_memory(tmp_path):
    import json
    import subprocess
    import sys

    _write_long_wfdb(tmp_path / "wfdb")
    _write_long_mat4(tmp_path / "c17")
    reads = [
        [str(tmp_path / "wfdb"), "long.hea", 10.0],
        [str(tmp_path / "wfdb"), "long-no-len.hea", 10.0],  # length inferred from the file size, not read
        [str(tmp_path / "c17"), "A00001.mat", 10.0],
        [str(tmp_path / "wfdb"), "long.hea", None],  # control: the whole record, to show the bound bites
    ]
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(reads)], capture_output=True, text=True, check=True
    )
    growth = json.loads(result.stdout)
    print("peak RSS growth per read (MiB):", growth)
    bounded = {key: value for key, value in growth.items() if "window=None" not in key}
    assert all(value < BOUND_MIB for value in bounded.values()), growth
    assert growth["long.hea window=None"] > 4 * BOUND_MIB, growth
