"""Incremental `processed_records`: a stored record is reused only when nothing it comes from changed."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.io

from ecg_assets.core import reuse
from ecg_assets.core.datasets import detect_format
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records
from ecg_assets.core.reuse import FILES_CHANGED, ROW_CHANGED
from ecg_assets.core.versioning import PROCESSING_CODE, module_closure

from .conftest import sine_leads, write_wfdb_record


def _process(folder, out, overrides=()):
    mapping = build_label_mapping(folder, folder.name, overrides)
    return process_records(folder, detect_format(folder), mapping.included, out, RecordProcessingConfig(), workers=1)


def _mat_folder(folder, sampling_rate: int):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(3):
        value = (sine_leads(1, 3000, 300.0, seed=index) * 1000).astype(np.int16)
        scipy.io.savemat(folder / f"r{index}.mat", {"val": value}, format="4")
    (folder / "dataset.yaml").write_text(f"sampling_rate: {sampling_rate}\nlead_names: [II]\ngain: 1000\n")
    return folder


def test_a_changed_dataset_yaml_reprocesses_every_record_at_the_new_rate(tmp_path):
    folder = _mat_folder(tmp_path / "mats", 300)
    first, _ = _process(folder, tmp_path / "out")
    assert set(first.index["original_fs"]) == {300.0}
    (folder / "dataset.yaml").write_text("sampling_rate: 150\nlead_names: [II]\ngain: 1000\n")
    store, report = _process(folder, tmp_path / "out")
    assert report.reused == 0 and report.reprocessed == 3
    reason = "dataset layout or dataset.yaml settings changed (sampling_rate: 300.0 -> 150.0)"
    assert report.full_reprocess_reason == reason
    assert set(store.index["original_fs"]) == {150.0}
    assert not np.array_equal(store.signals([0]), first.signals([0]))


def test_a_signal_file_named_by_a_header_of_another_stem_is_part_of_the_reuse_key(tmp_path):
    folder = tmp_path / "wfdb"
    write_wfdb_record(folder, "shared", sine_leads(2, 4000, 500.0), 500.0, ["I", "II"])
    header = folder / "rec_a.hea"
    header.write_text((folder / "shared.hea").read_text().replace("shared ", "rec_a ", 1))
    (folder / "shared.hea").unlink()  # only rec_a.hea reads shared.dat
    first, _ = _process(folder, tmp_path / "out")
    signal = folder / "shared.dat"
    signal.write_bytes(signal.read_bytes()[:1000])  # truncated: the header's samples no longer fit
    store, report = _process(folder, tmp_path / "out")
    assert report.reused == 0 and len(store) == 0
    reason = "signal file shared.dat is truncated: 1000 bytes, the header's 4000 samples need 16000"
    assert report.failures == [("rec_a", reason)]
    assert first.index["input_files"].tolist() == ["rec_a.hea\nshared.dat"]


def test_a_touched_file_with_the_same_content_is_reused_and_a_changed_one_is_not(tmp_path):
    folder = tmp_path / "wfdb"
    for name, seed in (("r1", 1), ("r2", 2)):
        write_wfdb_record(folder, name, sine_leads(2, 4000, 500.0, seed=seed), 500.0, ["I", "II"])
    _process(folder, tmp_path / "out")
    (folder / "r1.dat").write_bytes((folder / "r1.dat").read_bytes())  # new mtime, same bytes
    data = bytearray((folder / "r2.dat").read_bytes())
    data[-2:] = data[-4:-2]  # the last sample changes (the checksum no longer matches: the record fails)
    (folder / "r2.dat").write_bytes(bytes(data))
    store, report = _process(folder, tmp_path / "out")
    assert report.reused == 1 and store.index["record_id"].tolist() == ["r1"]
    assert [record_id for record_id, _ in report.failures] == ["r2"]


def test_a_header_added_beside_a_mat_file_reprocesses_that_record(tmp_path, demo_root):
    folder = tmp_path / "c17"
    folder.mkdir()
    for name in ("A00001", "A00002"):
        shutil.copy2(demo_root / "demo_cinc2017" / f"{name}.mat", folder / f"{name}.mat")
    (folder / "REFERENCE.csv").write_text("A00001,N\nA00002,A\n")
    first, _ = _process(folder, tmp_path / "out")
    assert first.index["input_files"][0] == "A00001.hea\nA00001.mat"  # the header was looked for: absent
    samples = scipy.io.loadmat(folder / "A00001.mat")["val"][0].astype(np.int64)
    header = f"A00001.mat 16+24 1000/mV 16 0 {samples[0]} {samples.sum() % 65536} 0 I"
    (folder / "A00001.hea").write_text(f"A00001 1 150 {len(samples)}\n{header}\n")  # it says 150 Hz
    store, report = _process(folder, tmp_path / "out")
    assert report.reused == 1 and report.reprocess_reasons == {FILES_CHANGED: 1} and not report.failures
    assert store.index["original_fs"].tolist() == [150.0, 300.0]


def test_a_changed_override_row_reprocesses_its_record_only_and_relabels_it(tmp_path):
    folder = tmp_path / "data" / "holter"
    for name in ("r1", "r2", "r3"):
        write_wfdb_record(folder, name, sine_leads(1, 2000, 250.0), 250.0, ["II"])
    overrides = folder.parent / "unified_label_mapping.csv"
    overrides.write_text("dataset,record_id,mapped_label\nholter,r1,AF\n")
    _process(folder, tmp_path / "out", [overrides])
    overrides.write_text("dataset,record_id,mapped_label\nholter,r1,MI\n")
    store, report = _process(folder, tmp_path / "out", [overrides])
    assert report.reused == 2 and report.reprocess_reasons == {ROW_CHANGED: 1}
    assert dict(zip(store.index["record_id"], store.index["label"])) == {"r1": "MI", "r2": "OTHER", "r3": "OTHER"}


def test_a_code_change_reprocesses_everything_and_says_so(tmp_path, monkeypatch):
    folder = _mat_folder(tmp_path / "mats", 300)
    _process(folder, tmp_path / "out")
    monkeypatch.setattr(reuse, "code_version", lambda *modules: "a-reader-fix")
    _, report = _process(folder, tmp_path / "out")
    assert report.reused == 0 and report.full_reprocess_reason.startswith("processing code changed (")


def test_the_processing_code_version_covers_every_module_a_record_passes_through():
    closure = set(module_closure(PROCESSING_CODE))
    needed = {
        "readers",
        "matfiles",
        "paths",
        "records",
        "signal",
        "reuse",
        "textfiles",
        "datasets.base",
        "datasets.config",
        "datasets.inventory",
        "datasets.cinc2017",
        "datasets.cpsc2018",
        "datasets.mat",
    }
    assert {f"ecg_assets.core.{name}" for name in needed} <= closure


@pytest.mark.parametrize("changed", ["preprocess", "dataset", "libraries"])
def test_every_part_of_the_generation_key_is_named_when_it_changes(changed):
    key = reuse.generation_key({"target_fs": 500.0}, "mat", {"sampling_rate": 300.0})
    other = {**key, changed: {**key[changed], "x": 1}}
    assert reuse.key_changes(key, key) is None
    assert reuse.key_changes(key, other) == f"{reuse.COMPONENT_NAMES[changed]} changed (x: None -> 1)"
