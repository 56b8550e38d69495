import numpy as np
import pandas as pd
import pytest

from ecg_assets.core.quality import (
    compare_label_distribution,
    failed_share,
    non_finite_records,
    split_coverage,
    split_overlaps,
)
from ecg_assets.core.store import RecordStoreWriter


def _store(folder, signals, labels=None):
    with RecordStoreWriter(folder, signals.shape[1:], shard_size=3) as writer:
        for position, signal in enumerate(signals):
            label = labels[position] if labels else "NORM"
            writer.append(signal, {"record_id": f"r{position}", "label": label, "label_index": 0})
        return writer.commit()


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_records_are_found_across_shards_and_chunks(tmp_path, bad_value):
    signals = np.zeros((8, 12, 40), np.float32)
    signals[1, 3, 7] = bad_value
    signals[6, 11, 39] = bad_value
    store = _store(tmp_path, signals)
    assert non_finite_records(store, chunk_size=3) == [1, 6]


def test_float16_overflow_counts_as_non_finite(tmp_path):
    signals = np.zeros((2, 12, 40), np.float32)
    signals[0, 0, 0] = 1e6  # beyond float16's range: stored as inf
    with np.errstate(over="ignore"):
        store = _store(tmp_path, signals)
    assert non_finite_records(store) == [0]


def test_finite_store_and_empty_store_pass(tmp_path):
    assert non_finite_records(_store(tmp_path / "a", np.ones((4, 12, 40), np.float32))) == []
    with RecordStoreWriter(tmp_path / "b", (12, 40)) as writer:
        assert non_finite_records(writer.commit()) == []


def test_split_coverage_reports_empty_splits_and_classes_missing_from_validation():
    labels = ["AF", "AF", "NORM", "NORM", "MI", "OTHER"]
    coverage = split_coverage(labels, {"train": [0, 2, 4, 5], "val": [1, 3], "test": []})
    assert coverage.sizes == {"train": 4, "val": 2, "test": 0}
    assert coverage.empty_splits == ["test"]
    assert coverage.train_classes_missing_from_val == ["MI", "OTHER"]  # vocabulary order
    good = split_coverage(labels, {"train": [0, 2], "val": [1, 3], "test": [4]})
    assert good.empty_splits == [] and good.train_classes_missing_from_val == []


def test_split_overlaps_find_shared_records_and_patients_but_not_unknown_patients():
    index = pd.DataFrame(
        {
            "record_id": ["a", "b", "c", "d", "a"],
            "patient_id": ["p1", "p1", "", "", "p9"],
        }
    )
    leaking = split_overlaps(index, {"train": [0, 2], "val": [1, 3], "test": [4]})
    assert leaking.records == {"a": ["test", "train"]}
    assert leaking.patients == {"p1": ["train", "val"]}
    assert leaking.patients_known == 2 and not leaking.disjoint
    clean = split_overlaps(index, {"train": [0, 1], "val": [2, 3], "test": []})
    assert clean.disjoint and clean.records == {} and clean.patients == {}


def test_split_overlaps_without_patient_column():
    index = pd.DataFrame({"record_id": ["a", "b"]})
    assert split_overlaps(index, {"train": [0], "val": [1], "test": []}).disjoint


def test_label_distribution_matches_when_every_labelled_record_is_processed_or_failed():
    expected = pd.DataFrame({"record_id": ["a", "b", "c", "d"], "mapped_label": ["AF", "AF", "NORM", "MI"]})
    processed = pd.DataFrame({"record_id": ["a", "c", "d"], "label": ["AF", "NORM", "MI"]})
    comparison = compare_label_distribution(expected, processed, failed_ids=["b", "not-a-labelled-record"])
    assert comparison.matches
    table = comparison.table.set_index("label")
    assert table.loc["AF"].tolist() == [2, 1, 1, 0]
    assert table["difference"].eq(0).all()


def test_label_distribution_names_each_kind_of_mismatch():
    expected = pd.DataFrame({"record_id": ["a", "b", "c", "d"], "mapped_label": ["AF", "AF", "NORM", "MI"]})
    processed = pd.DataFrame({"record_id": ["a", "a", "c", "x"], "label": ["AF", "AF", "OTHER", "MI"]})
    comparison = compare_label_distribution(expected, processed, failed_ids=[])
    assert not comparison.matches
    assert comparison.relabelled == ["c"]
    assert comparison.unexpected == ["x"]
    assert comparison.duplicated == ["a"]
    assert comparison.unaccounted == ["b", "d"]
    table = comparison.table.set_index("label")
    assert table.loc["OTHER", "processed"] == 1 and table.loc["NORM", "difference"] == 1


def test_failed_share():
    assert failed_share(processed=199, failed=1) == pytest.approx(0.005)
    assert failed_share(processed=0, failed=0) == 0.0
    assert failed_share(processed=0, failed=3) == 1.0


def test_a_record_id_on_several_mapping_rows_is_expected_once_with_its_first_label():
    expected = pd.DataFrame({"record_id": ["A1", "A2", "A1"], "mapped_label": ["NORM", "AF", "OTHER"]})
    processed = pd.DataFrame({"record_id": ["A1", "A2"], "label": ["NORM", "AF"]})
    comparison = compare_label_distribution(expected, processed, failed_ids=["A1"])  # the later row, skipped
    assert comparison.matches and comparison.repeated_rows == ["A1"]
    assert comparison.table.set_index("label")["difference"].tolist() == [0, 0]
