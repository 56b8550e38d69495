"""Asset checks: registration, each failure mode on broken artifacts, and blocking inside a real run."""

import json
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ecg_assets.core.artifacts import PartitionArtifacts
from ecg_assets.core.atomic_io import atomic_write_json, read_json
from ecg_assets.core.store import RecordStore
from ecg_assets.definitions import defs
from ecg_assets.defs import checks
from ecg_assets.defs.assets import ecg_assets
from ecg_assets.defs.resources import EcgPathsResource

from .conftest import cpu_resources, materialize_partition, tiny_training

TINY_TRAINING = tiny_training()
SMOKE = {"processed_records": {"config": {"smoke_test": True}}}
BLOCKING = {
    "processed_records:processed_records_are_finite",
    "processed_records:processed_labels_match_label_mapping",
    "splits:splits_are_usable",
    "splits:splits_are_disjoint",
}
WARNING_ONLY = {"processed_records:failed_record_share_is_low", "test_metrics:macro_f1_beats_majority_baseline"}


def _run(tmp_path, partition, run_config, instance=None):
    return materialize_partition(
        [*ecg_assets, *checks.ecg_checks],
        partition_key=partition,
        resources=cpu_resources(tmp_path),
        run_config={"ops": run_config},
        instance=instance,
        raise_on_error=False,
    )


def _evaluations(result):
    return {
        evaluation.asset_check_key.to_user_string(): evaluation for evaluation in result.get_asset_check_evaluations()
    }


def test_six_checks_are_registered_with_the_intended_blocking_flags():
    specs = {spec.key.to_user_string(): spec for check in checks.ecg_checks for spec in check.check_specs}
    assert set(specs) == BLOCKING | WARNING_ONLY
    assert {key for key, spec in specs.items() if spec.blocking} == BLOCKING
    assert all(spec.partitions_def is not None for spec in specs.values())
    check_keys = {key.to_user_string() for key in defs.resolve_asset_graph().asset_check_keys}
    across_datasets = {  # the unpartitioned assets' checks (defs/pooled.py)
        "pooled_model:pooled_training_has_no_test_twins",
        "generalisation_matrix:matrix_diagonal_matches_test_metrics",
    }
    assert check_keys == set(specs) | across_datasets


@pytest.mark.slow
def test_a_failing_blocking_check_stops_training_in_the_same_run(tmp_path):
    splits_without_validation = {"config": {"train_fraction": 0.9, "val_fraction": 0.0, "test_fraction": 0.1}}
    result = _run(
        tmp_path,
        "demo_cinc2017",
        {
            **SMOKE,
            "processed_records_checks": {"config": {"max_failed_share": 0.0}},
            "splits": splits_without_validation,
            "trained_model": {"config": TINY_TRAINING},
        },
    )
    assert not result.success
    evaluation = _evaluations(result)["splits:splits_are_usable"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["empty_splits"].value == "val"
    materialized = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
    assert materialized == {"label_mapping", "processed_records", "splits"}
    started = {event.step_key for event in result.all_events if event.event_type_value == "STEP_START"}
    assert "trained_model" not in started and "test_metrics" not in started
    assert not (tmp_path / "demo_cinc2017" / "models").exists()
    # the other blocking checks ran and passed, including the smoke-test aware label comparison
    others = {
        key: ev.passed for key, ev in _evaluations(result).items() if key in BLOCKING - {"splits:splits_are_usable"}
    }
    assert len(others) == 3 and all(others.values()), others
    assert _evaluations(result)["processed_records:failed_record_share_is_low"].metadata["max_failed_share"].value == 0


@pytest.fixture(scope="module")
def smoke_artifacts(tmp_path_factory):
    """label_mapping, processed_records and splits of the demo_cinc2017 smoke test (10 records), once."""
    root = tmp_path_factory.mktemp("check_artifacts")
    result = materialize_partition(
        ecg_assets[:3],
        partition_key="demo_cinc2017",
        resources={"paths": EcgPathsResource(artifacts_dir=str(root))},
        run_config={"ops": SMOKE},
    )
    assert result.success
    return root


@pytest.fixture
def artifacts(smoke_artifacts, tmp_path):
    """A private copy of the smoke artifacts, free to break."""
    shutil.copytree(smoke_artifacts / "demo_cinc2017", tmp_path / "demo_cinc2017")
    return PartitionArtifacts(tmp_path, "demo_cinc2017")


def test_intact_artifacts_pass_every_blocking_check(artifacts):
    assert checks.finite_signals_result(artifacts).passed
    assert checks.labels_match_result(artifacts, smoke_test=True).passed
    assert checks.split_disjointness_result(artifacts).passed
    usable = checks.split_usability_result(artifacts)
    assert usable.metadata["empty_splits"].value == "none"  # at most a WARN flag, never blocking here


def test_nan_in_a_processed_record_fails(artifacts):
    store = RecordStore(artifacts.processed)
    shard = np.load(artifacts.processed / store.manifest["shards"][0]["file"], mmap_mode="r+")
    shard[4, 2, 100] = np.nan
    shard.flush()
    del shard
    result = checks.finite_signals_result(artifacts)
    assert not result.passed and result.metadata["non_finite_records"].value == 1
    assert result.metadata["examples"].value == store.index["record_id"].iloc[4]


def test_label_drift_and_dropped_records_fail_the_label_comparison(artifacts):
    table = pd.read_csv(artifacts.label_mapping, dtype=str, keep_default_na=False)
    first = table.index[table["mapped_label"] != ""][0]
    record_id = table.loc[first, "record_id"]
    table.loc[first, "mapped_label"] = "MI" if table.loc[first, "mapped_label"] != "MI" else "AF"
    table.to_csv(artifacts.label_mapping, index=False)
    drifted = checks.labels_match_result(artifacts, smoke_test=True)
    assert not drifted.passed and drifted.metadata["relabelled"].value == record_id
    # outside a smoke test, the 10 processed records do not account for the whole mapping
    assert "neither_processed_nor_failed" in checks.labels_match_result(artifacts, smoke_test=False).metadata
    assert not checks.labels_match_result(artifacts, smoke_test=False).passed


def test_records_or_patients_in_two_splits_fail(artifacts):
    payload = read_json(artifacts.splits)
    payload["val"].append(payload["train"][0])
    atomic_write_json(artifacts.splits, payload)
    result = checks.split_disjointness_result(artifacts)
    assert not result.passed and result.metadata["records_in_several_splits"].value == 1


def test_one_patient_in_train_and_test_fails(artifacts):
    payload = read_json(artifacts.splits)
    store = RecordStore(artifacts.processed)
    index_file = artifacts.processed / store.manifest["index_file"]
    index = pd.read_csv(index_file, dtype=str, keep_default_na=False)
    index.loc[[payload["train"][0], payload["test"][0]], "patient_id"] = "patient-7"
    index.to_csv(index_file, index=False)
    result = checks.split_disjointness_result(artifacts)
    assert not result.passed
    assert result.metadata["patients_in_several_splits"].value == 1
    assert result.metadata["patient_examples"].value == "patient-7 in test+train"


def test_an_empty_split_is_an_error_and_a_class_missing_from_validation_a_warning(artifacts):
    payload = read_json(artifacts.splits)
    labels = RecordStore(artifacts.processed).index["label"]
    payload["train"] += payload["val"]
    payload["val"] = []
    atomic_write_json(artifacts.splits, payload)
    empty = checks.split_usability_result(artifacts)
    assert not empty.passed and empty.severity == dg.AssetCheckSeverity.ERROR
    assert empty.metadata["empty_splits"].value == "val"

    kept = payload["train"].pop()
    payload["val"] = [kept]
    atomic_write_json(artifacts.splits, payload)
    flagged = checks.split_usability_result(artifacts)
    missing = set(labels.iloc[payload["train"]]) - {labels.iloc[kept]}
    assert missing
    assert not flagged.passed and flagged.severity == dg.AssetCheckSeverity.WARN
    assert set(flagged.metadata["train_classes_missing_from_val"].value.split(", ")) == missing


def test_failed_share_above_threshold_is_a_warning(artifacts):
    failures = artifacts.processed / "failures.csv"
    pd.DataFrame({"record_id": ["x1", "x2"], "reason": ["corrupt", "corrupt"]}).to_csv(failures, index=False)
    assert checks.failed_share_result(artifacts, max_failed_share=0.5).passed
    result = checks.failed_share_result(artifacts, max_failed_share=0.1)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["failed_share"].value == pytest.approx(2 / 12, abs=1e-4)


@pytest.mark.parametrize(("macro_f1", "passed"), [(0.61, True), (0.3, False), (0.3333, False)])
def test_majority_baseline_check(tmp_path, macro_f1, passed):
    artifacts = PartitionArtifacts(tmp_path, "demo")
    artifacts.root.mkdir()
    artifacts.test_metrics.write_text(json.dumps({"macro_f1": macro_f1, "majority_class_macro_f1": 0.3333}))
    result = checks.majority_baseline_result(artifacts)
    assert result.passed is passed and result.severity == dg.AssetCheckSeverity.WARN


def test_each_checks_op_opens_the_store_once_and_splits_declares_the_label_mapping(tmp_path, monkeypatch):
    opened = []

    class CountingStore(RecordStore):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(checks, "RecordStore", CountingStore)
    result = materialize_partition(
        [*ecg_assets[:3], checks.processed_records_checks, checks.splits_checks],
        partition_key="demo_cinc2017",
        resources={"paths": EcgPathsResource(artifacts_dir=str(tmp_path))},
        run_config={"ops": SMOKE},
    )
    assert result.success and len(result.get_asset_check_evaluations()) == 5
    assert len(opened) == 2  # one per checks op, not one per check

    parents = defs.resolve_asset_graph().get(dg.AssetKey("splits")).parent_keys
    assert dg.AssetKey("label_mapping") in parents  # splits reads label_mapping.csv
