import json

import numpy as np
import pandas as pd
import pytest

from ecg_assets.core.datasets import detect_layout
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.preprocessing import process_records
from ecg_assets.core.signal import PreprocessConfig

from .conftest import sine_leads, write_wfdb_record


@pytest.fixture(scope="module")
def processed_demo(demo_root, tmp_path_factory):
    folder = demo_root / "demo_cinc2021"
    mapping = build_label_mapping(folder, "demo_cinc2021")
    out = tmp_path_factory.mktemp("processed")
    store, report = process_records(folder, detect_layout(folder), mapping.included, out, PreprocessConfig())
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
        folder, detect_layout(folder), mapping.included, tmp_path / "out", PreprocessConfig()
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
        folder, detect_layout(folder), mapping.included, tmp_path / "out", PreprocessConfig()
    )
    assert report.processed == 1 and store.index["record_id"].tolist() == ["ok"]
    assert report.failures == [("bp", "no standard ECG lead among channels ABP, RESP")]
