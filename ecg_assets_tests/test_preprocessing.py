import json
import os
import shutil
import time
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy.signal import resample_poly

from ecg_assets.core import preprocessing as preprocessing_module
from ecg_assets.core import store as store_module
from ecg_assets.core.datasets import detect_format
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records
from ecg_assets.core.record_features import compute_rhythm_features, store_rhythm_features
from ecg_assets.core.rhythm import N_RHYTHM_FEATURES, RHYTHM_COLUMNS
from ecg_assets.core.signal import PreprocessConfig, resample
from ecg_assets.core.store import RecordStore

from .conftest import sine_leads, write_wfdb_record


@pytest.fixture(scope="module")
def processed_demo(demo_root, tmp_path_factory):
    folder = demo_root / "demo_cinc2021"
    mapping = build_label_mapping(folder, "demo_cinc2021")
    out = tmp_path_factory.mktemp("processed")
    store, report = process_records(folder, detect_format(folder), mapping.included, out, PreprocessConfig(), workers=2)
    return mapping, store, report, out


def test_every_labelled_record_is_processed_or_failed_with_reason(processed_demo):
    mapping, store, report, _ = processed_demo
    assert report.discovered == len(mapping.included) == 200
    assert report.processed + report.failed == report.discovered
    assert report.failed == 1  # the demo's deliberately truncated file
    record_id, reason = report.failures[0]
    assert record_id == "Q0200" and "truncated" in reason
    assert len(store) == report.processed


def test_store_holds_canonical_finite_tensors(processed_demo):
    _, store, _, _ = processed_demo
    batch = store.signals(np.arange(len(store)))
    assert batch.shape == (len(store), 12, 5000)
    assert np.isfinite(batch).all()
    assert np.allclose(batch.std(axis=2), 1.0, atol=0.02)
    assert (store.index["lead_mask"] == "1" * 12).all()


def test_rhythm_features_are_stored_in_the_index_as_recomputing_them_gives(processed_demo):
    _, store, _, _ = processed_demo
    stored = store_rhythm_features(store)
    assert stored.shape == (len(store), N_RHYTHM_FEATURES) and np.isfinite(stored).all()
    assert set(RHYTHM_COLUMNS) <= set(store.index.columns)
    recomputed = compute_rhythm_features(store)  # what a store without the columns gets
    np.testing.assert_array_equal(stored, recomputed)
    assert stored[:, RHYTHM_COLUMNS.index("rhythm_log_heart_rate")].std() > 0  # not a constant column


def test_notebook_exports(processed_demo):
    _, store, _, out = processed_demo
    label_map = json.loads((out / "label_map.json").read_text())
    assert label_map == {"MI": 0, "AF": 1, "BBB": 2, "NORM": 3, "OTHER": 4}
    labels = np.load(out / "labels.npy")
    assert labels.tolist() == [label_map[label] for label in store.index["label"]]
    failures = pd.read_csv(out / "failures.csv")
    assert failures["record_id"].tolist() == ["Q0200"]


def test_flat_lead_is_kept_marked_and_finite(tmp_path):
    signal = sine_leads(3, 5000, 500.0)
    signal[2] = 0.0
    write_wfdb_record(tmp_path / "d", "flat", signal, 500.0, ["I", "II", "V1"])
    folder = tmp_path / "d"
    mapping = build_label_mapping(folder, "d")
    store, report = process_records(
        folder, detect_format(folder), mapping.included, tmp_path / "out", PreprocessConfig()
    )
    assert report.processed == 1
    assert store.index["flat_mask"].iloc[0] == "000000100000"
    assert np.isfinite(store.signals([0])).all()


def test_record_without_ecg_leads_fails_with_reason(tmp_path):
    write_wfdb_record(tmp_path / "d", "bp", sine_leads(2, 1000, 125.0), 125.0, ["ABP", "RESP"])
    write_wfdb_record(tmp_path / "d", "ok", sine_leads(1, 1000, 125.0), 125.0, ["MLII"])
    folder = tmp_path / "d"
    mapping = build_label_mapping(folder, "d")
    store, report = process_records(
        folder, detect_format(folder), mapping.included, tmp_path / "out", PreprocessConfig()
    )
    assert report.processed == 1 and store.index["record_id"].tolist() == ["ok"]
    assert report.failures == [("bp", "no standard ECG lead among channels ABP, RESP")]


def _small_cinc2017(demo_root, folder, n=12):
    """The first `n` records of the synthetic CinC 2017 demo (9-30 s each) in their own folder."""
    source = demo_root / "demo_cinc2017"
    rows = (source / "REFERENCE.csv").read_text().splitlines()[:n]
    folder.mkdir()
    for row in rows:
        name = row.split(",")[0]
        shutil.copy2(source / f"{name}.mat", folder / f"{name}.mat")
    (folder / "REFERENCE.csv").write_text("\n".join(rows) + "\n")
    return folder


def _process(folder, out, **kwargs):
    mapping = build_label_mapping(folder, folder.name)
    config = kwargs.pop("config", RecordProcessingConfig())
    return process_records(folder, detect_format(folder), mapping.included, out, config, **kwargs)


def test_rhythm_features_can_be_left_to_training_with_the_same_values(demo_root, tmp_path):
    folder = _small_cinc2017(demo_root, tmp_path / "d")
    with_features, _ = _process(folder, tmp_path / "with")
    without, _ = _process(folder, tmp_path / "without", config=RecordProcessingConfig(rhythm_features=False))
    assert not set(RHYTHM_COLUMNS) & set(without.index.columns)
    np.testing.assert_array_equal(store_rhythm_features(without), store_rhythm_features(with_features))
    assert with_features.generation != without.generation  # a setting of the store: changing it reprocesses


def test_index_carries_provenance_and_long_records_keep_a_window(demo_root, tmp_path):
    folder = _small_cinc2017(demo_root, tmp_path / "d")
    store, report = _process(folder, tmp_path / "out")
    index = store.index
    expected = {"record_id", "label", "native_labels", "original_fs", "original_samples", "lead_mask", "patient_id"}
    assert expected | {"source_file", "content_hash", "file_signature"} <= set(index.columns)
    assert (index["lead_mask"] == "100000000000").all() and (index["original_fs"] == 300.0).all()
    seconds = index["original_samples"] / 300.0
    assert ((store.window_samples > 0) == (seconds > 10.0)).all()  # only records longer than 10 s
    long = int(np.argmax(seconds.to_numpy()))
    assert store.window_samples[long] == round(min(seconds[long], 60.0) * 500)
    window = store.window(long)
    assert np.isfinite(window).all() and not window[1:].any()
    assert report.reprocessed == report.processed == len(index) and report.reused == 0


def test_rerun_reprocesses_only_added_or_changed_files(demo_root, tmp_path):
    folder = _small_cinc2017(demo_root, tmp_path / "d", n=12)
    first, _ = _process(folder, tmp_path / "out")
    again, report = _process(folder, tmp_path / "out")
    assert report.reused == 12 and report.reprocessed == 0 and report.full_reprocess_reason is None
    np.testing.assert_array_equal(again.signals(np.arange(12)), first.signals(np.arange(12)))

    ids = first.index["record_id"].tolist()
    changed, touched = folder / f"{ids[3]}.mat", folder / f"{ids[5]}.mat"
    shutil.copy2(folder / f"{ids[0]}.mat", changed)  # new content
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))  # same content, new mtime
    source = demo_root / "demo_cinc2017"
    extra = (source / "REFERENCE.csv").read_text().splitlines()[12]
    shutil.copy2(source / f"{extra.split(',')[0]}.mat", folder)
    with (folder / "REFERENCE.csv").open("a") as handle:
        handle.write(extra + "\n")
    store, report = _process(folder, tmp_path / "out")
    assert report.reprocessed == 2 and report.reused == 11  # the changed and the new record
    assert store.index["record_id"].tolist() == ids + [extra.split(",")[0]]  # label mapping order kept
    np.testing.assert_array_equal(store.signal(3), store.signal(0))
    assert store.index["content_hash"][3] != first.index["content_hash"][3]
    assert store.index["content_hash"][5] == first.index["content_hash"][5]  # touched only: hash says unchanged


def test_changed_settings_reprocess_everything(demo_root, tmp_path):
    folder = _small_cinc2017(demo_root, tmp_path / "d", n=4)
    _process(folder, tmp_path / "out")
    store, report = _process(folder, tmp_path / "out", config=RecordProcessingConfig(training_window_s=0))
    assert report.reused == 0
    assert report.full_reprocess_reason == "preprocessing settings changed (training_window_s: 60.0 -> 0.0)"
    assert store.manifest["windows_file"] is None and not store.window_samples.any()


def test_interrupted_rerun_keeps_the_previous_generation(demo_root, tmp_path, monkeypatch):
    folder = _small_cinc2017(demo_root, tmp_path / "d", n=6)
    first, _ = _process(folder, tmp_path / "out")
    real_append = store_module.RecordStoreWriter.append

    def crash_on_fourth(self, *args, **kwargs):
        if len(self.rows) == 3:
            raise KeyboardInterrupt("killed mid-run")
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(store_module.RecordStoreWriter, "append", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        _process(folder, tmp_path / "out", config=RecordProcessingConfig(training_window_s=20))
    reopened = RecordStore(tmp_path / "out")
    assert reopened.generation == first.generation
    assert {path.name for path in (tmp_path / "out").iterdir()} == {path.name for path in first.files()} | {
        "failures.csv",
        "labels.npy",
        "label_map.json",
    }


def test_worker_pool_gives_the_same_store_as_one_process(processed_demo, demo_root, tmp_path):
    mapping, store, report, _ = processed_demo
    assert report.workers == 2  # 200 records: the pool was used
    folder = demo_root / "demo_cinc2021"
    inline, inline_report = process_records(
        folder, detect_format(folder), mapping.included, tmp_path / "inline", PreprocessConfig(), workers=1
    )
    assert inline_report.workers == 1 and inline_report.failures == report.failures
    pd.testing.assert_frame_equal(inline.index, store.index)
    np.testing.assert_array_equal(inline.signals(np.arange(len(inline))), store.signals(np.arange(len(store))))


@pytest.mark.parametrize("fs", [300.0, 250.0, 360.0, 1000.0, 257.0])
def test_cached_anti_alias_filter_resamples_exactly_like_scipy(fs):
    signal = np.random.default_rng(0).normal(size=(2, 3000)).astype(np.float32)
    ratio = Fraction(500.0 / fs).limit_denominator(1000)
    expected = resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)
    np.testing.assert_array_equal(resample(signal, fs, 500.0), expected)
    np.testing.assert_array_equal(resample(signal, fs, 500.0), expected)  # the cached taps are not modified


def test_a_multithreaded_caller_gets_a_forkserver_pool(processed_demo, demo_root, tmp_path, monkeypatch):
    """Dagster runs steps in threaded processes, where forking is unsafe: the pool uses a fork server."""
    mapping, store, _, _ = processed_demo
    monkeypatch.setattr(preprocessing_module.threading, "active_count", lambda: 2)
    assert preprocessing_module._pool_context().get_start_method() == "forkserver"
    folder = demo_root / "demo_cinc2021"
    served, report = process_records(
        folder, detect_format(folder), mapping.included.head(70), tmp_path / "served", PreprocessConfig(), workers=2
    )
    assert report.workers == 2 and len(served) == 70
    np.testing.assert_array_equal(served.signals(np.arange(70)), store.signals(np.arange(70)))


def test_content_fingerprint_survives_an_unchanged_rerun_only(demo_root, tmp_path):
    folder = _small_cinc2017(demo_root, tmp_path / "d", n=4)
    first, _ = _process(folder, tmp_path / "out")
    again, _ = _process(folder, tmp_path / "out")
    assert again.generation != first.generation
    assert again.metadata["content_fingerprint"] == first.metadata["content_fingerprint"]
    source = first.index["source_file"][0]
    (folder / source).write_bytes((folder / first.index["source_file"][1]).read_bytes())
    changed, _ = _process(folder, tmp_path / "out")
    assert changed.metadata["content_fingerprint"] != first.metadata["content_fingerprint"]
