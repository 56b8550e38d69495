"""The real `dagster asset materialize` CLI in a subprocess, with a temporary DAGSTER_HOME."""

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from .conftest import PROJECT_ROOT

DAGSTER = str(Path(sys.executable).with_name("dagster"))
FAST_RUN_CONFIG = {"ops": {"trained_model": {"config": {"epochs": 1, "batch_size": 16, "base_channels": 8}}}}


def _run(args, env, timeout=600):
    result = subprocess.run(args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _env(tmp_path, **extra):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("ECG_DATA_DIR", "ECG_ARTIFACTS_DIR", "DAGSTER_HOME")}
    return {**env, "DAGSTER_HOME": str(home), "ECG_ARTIFACTS_DIR": str(tmp_path / "artifacts"), **extra}


@pytest.mark.slow
def test_cli_materializes_a_demo_partition_into_a_persistent_instance(tmp_path):
    env = _env(tmp_path)
    command = [DAGSTER, "asset", "materialize", "--select", "*test_metrics", "--partition", "demo_cinc2017"]
    _run([*command, "-m", "ecg_assets.definitions", "--config-json", json.dumps(FAST_RUN_CONFIG)], env)

    assert (tmp_path / "artifacts" / "demo_cinc2017" / "test_metrics.json").is_file()
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for name in ("label_mapping", "processed_records", "splits", "trained_model", "test_metrics"):
            event = instance.get_latest_materialization_event(dg.AssetKey(name))
            assert event is not None, name
            assert event.dagster_event.partition == "demo_cinc2017"


@pytest.mark.slow
@pytest.mark.shared_data
def test_cli_maps_and_processes_real_cinc2017_like_its_reference(tmp_path, shared_data):
    env = _env(tmp_path, ECG_DATA_DIR=str(shared_data))
    command = [
        DAGSTER,
        "asset",
        "materialize",
        "--select",
        "label_mapping,processed_records",
        "--partition",
        "cinc2017",
    ]
    _run([*command, "-m", "ecg_assets.definitions"], env)

    with (shared_data / "cinc2017" / "REFERENCE-v3.csv").open() as handle:
        reference = {row[0].split("/")[-1]: row[1] for row in csv.reader(handle)}
    table = pd.read_csv(tmp_path / "artifacts" / "cinc2017" / "label_mapping.csv", dtype=str, keep_default_na=False)
    assert len(table) == len(reference) == 3000
    assert dict(zip(table["record_id"], table["native_labels"])) == reference
    expected = Counter({"N": "NORM", "A": "AF", "O": "OTHER"}.get(code, "") for code in reference.values())
    assert Counter(table["mapped_label"]) == expected

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        metadata = instance.get_latest_materialization_event(
            dg.AssetKey("processed_records")
        ).asset_materialization.metadata
    assert metadata["discovered"].value == sum(label != "" for label in expected.elements())
    assert metadata["processed"].value == metadata["discovered"].value and metadata["failed"].value == 0
