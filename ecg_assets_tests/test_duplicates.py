"""Identical recordings across partitions: fingerprints, the pooled training plan and the leakage check."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from ecg_assets.core.datasets import detect_format
from ecg_assets.core.duplicates import DuplicatePair, DuplicateReport, RecordRef, find_duplicates, store_fingerprints
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.pooled import plan_pooling, refs_by_id, training_records_with_test_twins
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records
from ecg_assets.core.signal_fingerprint import signal_fingerprint
from ecg_assets.core.store import RecordStore

from .conftest import write_wfdb_record

ORIGINALS = 40


def process_folder(folder: Path, store_dir: Path) -> RecordStore:
    """`label_mapping` and `processed_records` of a dataset folder, in this process."""
    mapping = build_label_mapping(folder, folder.name)
    records = mapping.table[mapping.table["mapped_label"] != ""]
    store, _ = process_records(folder, detect_format(folder), records, store_dir, RecordProcessingConfig(), workers=1)
    return store


def repackage(source: Path, folder: Path, name: str, how: str) -> None:
    """Write demo record `source` again, the way another database would: another container and gain, or rate."""
    record = wfdb.rdrecord(str(source))
    signal, leads = record.p_signal.T, list(record.sig_name)
    if how == "format 212, gain 200":
        write_wfdb_record(folder, name, signal, 500, leads, fmt="212", comments=record.comments)
    elif how == "250 Hz":
        write_wfdb_record(folder, name, resample_poly(signal, 1, 2, axis=1), 250, leads, comments=record.comments)
    elif how == "lead I only":
        write_wfdb_record(folder, name, signal[:1], 500, ["I"], comments=record.comments)
    elif how == "scaled and offset":
        write_wfdb_record(folder, name, signal * 3.7 + 0.2, 500, leads, comments=record.comments)
    else:
        raise ValueError(how)


REPACKAGINGS = ("format 212, gain 200", "250 Hz", "lead I only", "scaled and offset")


@pytest.fixture(scope="module")
def twin_stores(demo_root, tmp_path_factory):
    """Dataset `a`: 40 demo CinC 2021 records as generated (MAT v4, gain 1000). Dataset `b`: four of them
    repackaged (`REPACKAGINGS`) plus two records of its own."""
    root = tmp_path_factory.mktemp("twins")
    source = demo_root / "demo_cinc2021"
    names = sorted(path.stem for path in source.glob("Q*.hea"))
    a, b = root / "a", root / "b"
    a.mkdir()
    for name in names[:ORIGINALS]:
        for suffix in (".hea", ".mat"):
            shutil.copy(source / f"{name}{suffix}", a / f"{name}{suffix}")
    for number, how in enumerate(REPACKAGINGS):
        repackage(source / names[number], b, f"B{number}", how)
    for name in names[ORIGINALS : ORIGINALS + 2]:
        for suffix in (".hea", ".mat"):
            shutil.copy(source / f"{name}{suffix}", b / f"{name}{suffix}")
    stores = {"a": process_folder(a, root / "a_store"), "b": process_folder(b, root / "b_store")}
    twins = {f"B{number}": names[number] for number in range(len(REPACKAGINGS))}
    return stores, twins


def _pairs(report: DuplicateReport) -> set[tuple[str, str]]:
    return {(pair.first.record_id, pair.second.record_id) for pair in report.pairs}


def test_repackaged_recordings_are_found_and_nothing_else(twin_stores):
    stores, twins = twin_stores
    assert all(len(store) for store in stores.values())
    report = find_duplicates(stores)
    assert _pairs(report) == {(original, copy) for copy, original in twins.items()}
    assert all(pair.across_datasets and pair.correlation >= 0.99 for pair in report.pairs)
    # the single-lead copy is compared on the one lead both hold; the others on all twelve
    leads = {pair.second.record_id: pair.leads for pair in report.pairs}
    assert leads == {"B0": 12, "B1": 12, "B2": 1, "B3": 12}
    assert report.candidates == len(twins)  # bucketing proposes no stranger for the signal check
    assert report.computed_fingerprints == 0  # fingerprints come from the index processed_records wrote


def test_stores_without_the_fingerprint_column_are_fingerprinted_from_their_signals(twin_stores):
    stores, _ = twin_stores
    store = stores["b"]
    from_index, computed = store_fingerprints(store)
    assert not computed
    store.index = store.index.drop(columns=["signal_fingerprint"])
    try:
        recomputed, computed = store_fingerprints(store)
    finally:
        store.index = RecordStore(store.directory).index
    assert computed and recomputed == from_index


def test_fingerprint_ignores_flat_leads_and_is_empty_without_a_signal():
    rows = np.zeros((2, 5000), dtype=np.float16)
    rows[1] = np.sin(np.arange(5000) / 30.0)
    lead_mask = np.zeros(12, dtype=bool)
    lead_mask[[0, 1]] = True
    flat = np.zeros(12, dtype=bool)
    flat[0] = True  # lead I flat: lead II is fingerprinted
    assert signal_fingerprint(rows, lead_mask, flat).startswith("1:")
    flat[1] = True
    assert signal_fingerprint(rows, lead_mask, flat) == ""


def _report(*pairs: tuple[RecordRef, RecordRef]) -> DuplicateReport:
    return DuplicateReport([DuplicatePair(a, b, 1.0, 12) for a, b in pairs], 0, len(pairs), 0, 0.0)


def test_plan_excludes_twins_of_test_records_and_keeps_other_duplicates_once(twin_stores):
    stores, _ = twin_stores
    ids = {name: store.index["record_id"].tolist() for name, store in stores.items()}
    ref = {(name, position): RecordRef(name, position, ids[name][position]) for name in ids for position in range(6)}
    splits = {
        "a": {"train": [1, 2, 3, 4, 5], "val": [], "test": [0]},
        "b": {"train": [0, 1, 3], "val": [2, 4, 5], "test": []},
    }
    report = _report(
        (ref["a", 0], ref["b", 0]),  # a's test record is b's training record: b's copy must go
        (ref["a", 1], ref["b", 1]),  # both train: kept once, in the first dataset
        (ref["a", 2], ref["b", 2]),  # train and val: the validation copy goes
        (ref["b", 3], ref["b", 4]),  # within b, train and val: the validation copy goes
    )
    plan = plan_pooling(stores, splits, report, ["b", "a"])
    assert plan.splits["b"]["train"] == [1, 3] and plan.splits["b"]["val"] == [5]
    assert plan.splits["a"]["train"] == [2, 3, 4, 5]  # a's copy of the train/train twin leaves: b comes first
    assert plan.splits["a"]["test"] == [0] and plan.splits["b"]["test"] == []  # test splits never change
    reasons = dict(zip(plan.excluded["record_id"], plan.excluded["reason"]))
    assert "in the test split of a" in reasons[ids["b"][0]]
    assert set(reasons) == {ids["b"][0], ids["a"][1], ids["b"][2], ids["b"][4]}

    kept = refs_by_id(
        {name: {"train": [ids[name][p] for p in plan.splits[name]["train"]]} for name in ids}, stores, ["train"]
    )
    assert training_records_with_test_twins(kept, splits, report).empty
    leaked = training_records_with_test_twins(kept | {ref["b", 0]}, splits, report)
    assert leaked[["dataset", "record_id", "twin"]].values.tolist() == [["b", ids["b"][0], str(ref["a", 0])]]


def test_the_blocking_check_fails_when_a_pooled_training_record_has_a_test_twin(twin_stores, tmp_path):
    from ecg_assets.core.artifacts import PartitionArtifacts, PooledArtifacts
    from ecg_assets.core.atomic_io import atomic_write_json
    from ecg_assets.core.splits import SplitConfig, write_splits
    from ecg_assets.defs.pooled import leakage_check_result

    stores, twins = twin_stores
    root = tmp_path / "artifacts"
    ids = {}
    for name, store in stores.items():
        shutil.copytree(store.directory, root / name / "processed")
        ids[name] = store.index["record_id"].tolist()
    originals = [ids["a"].index(original) for original in twins.values()]
    splits = {
        "a": {"train": [p for p in range(len(ids["a"])) if p not in originals], "val": [], "test": originals},
        "b": {"train": list(range(len(ids["b"]))), "val": [], "test": []},
    }
    for name, split in splits.items():
        write_splits(PartitionArtifacts(root, name).splits, split, ids[name], SplitConfig())

    def check(b_training: list[str]):
        records = {"a": {"train": [ids["a"][p] for p in splits["a"]["train"]]}, "b": {"train": b_training}}
        atomic_write_json(PooledArtifacts(root).plan, {"records": records})
        return leakage_check_result(root, ["a", "b"])

    leaked = check(ids["b"])  # every copy of a test record trained the pooled model
    assert not leaked.passed and leaked.metadata["training_records_with_a_test_twin"].value == len(twins)
    assert all(copy in leaked.metadata["leaked"].value for copy in twins)
    clean = check([record for record in ids["b"] if record not in twins])
    assert clean.passed and clean.metadata["training_records_checked"].value == len(ids["a"]) + 2 - len(twins)
