"""The real `dagster asset materialize` CLI in a subprocess, with a temporary DAGSTER_HOME."""

import csv
import json
import subprocess
from collections import Counter

import dagster as dg
import pandas as pd
import pytest

from .conftest import CLI_CHAIN_PARTITION, DAGSTER, ECG_ASSETS, PROJECT_ROOT, cli_env, run_cli

LOCATION = "ecg_assets"
_env, _run = cli_env, run_cli


@pytest.mark.slow
def test_cli_materializes_a_demo_partition_into_a_persistent_instance(cli_chain):
    """`dagster asset materialize --select '*test_metrics' --partition demo_cinc2017 -m ...` (the `cli_chain`
    fixture runs it in a fresh DAGSTER_HOME) persists every asset of the chain for that partition."""
    assert (cli_chain["root"] / "artifacts" / CLI_CHAIN_PARTITION / "test_metrics.json").is_file()
    with dg.DagsterInstance.from_config(cli_chain["env"]["DAGSTER_HOME"]) as instance:
        for name in ("label_mapping", "processed_records", "splits", "trained_model", "test_metrics"):
            event = instance.get_latest_materialization_event(dg.AssetKey(name))
            assert event is not None, name
            assert event.dagster_event.partition == CLI_CHAIN_PARTITION


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


def test_every_documented_way_of_running_names_the_code_location_alike():
    """workspace.yaml (dagster dev -w, sensor/schedule commands), pyproject (bare `dagster dev`), ecg-assets."""
    import tomllib

    from ecg_assets.cli import main, runs

    assert runs.location_name() == LOCATION
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["dagster"]["code_location_name"] == LOCATION
    launched = []

    def record(command, env):
        launched.append(command)
        return subprocess.CompletedProcess(command, 0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(main.subprocess, "run", record)
        patch.setenv("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home"))
        assert main.main(["ui", "--port", "3999"]) == 0
    (command,) = launched
    assert command[command.index("-w") + 1] == str(runs.WORKSPACE_FILE) and "-m" not in command


@pytest.mark.slow
def test_ecg_assets_materialize_runs_the_pipeline_job_under_the_ui_code_location(tmp_path):
    env = _env(tmp_path)
    smoke = {"ops": {"processed_records": {"config": {"smoke_test": True}}}}
    command = [ECG_ASSETS, "materialize", "-p", "demo_cinc2017", "--select", "label_mapping,processed_records"]
    _run([*command, "--config-json", json.dumps(smoke)], env)

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        # exactly the filter of the UI's Jobs -> ecg_pipeline -> Runs tab
        ui_filter = dg.RunsFilter(job_name="ecg_pipeline", tags={".dagster/repository": f"__repository__@{LOCATION}"})
        (run,) = instance.get_runs(ui_filter)
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == "demo_cinc2017"
        assert run.asset_selection == {dg.AssetKey("label_mapping"), dg.AssetKey("processed_records")}
        assert run.remote_job_origin.repository_origin.code_location_origin.location_name == LOCATION
        checks = {
            event.dagster_event.event_specific_data.asset_check_key.name
            for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        }
        assert "processed_records_are_finite" in checks  # the selected assets' checks ran in the same run
        assert instance.get_dynamic_partitions("datasets") == ["demo_cinc2017", "demo_cinc2021"]


@pytest.mark.slow
def test_a_dataset_folder_that_appeared_since_materializes_from_a_fresh_shell_with_the_readme_command(tmp_path):
    """`dagster asset materialize --partition NEW -m ...` validates the key against the instance: the code
    location registers the folders present when it loads, so no sensor or CLI step is needed first."""
    from ecg_assets.core.demo import ensure_demo_dataset

    data = tmp_path / "data"
    ensure_demo_dataset(data, "demo_cinc2017").rename(data / "ward_new")
    env = _env(tmp_path, ECG_DATA_DIR=str(data))
    command = [DAGSTER, "asset", "materialize", "--select", "label_mapping", "--partition", "ward_new"]
    _run([*command, "-m", "ecg_assets.definitions"], env)

    table = pd.read_csv(tmp_path / "artifacts" / "ward_new" / "label_mapping.csv", dtype=str, keep_default_na=False)
    assert len(table) > 0
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_dynamic_partitions("datasets") == ["ward_new"]
        event = instance.get_latest_materialization_event(dg.AssetKey("label_mapping"))
        assert event.dagster_event.partition == "ward_new"


def test_registration_at_load_never_breaks_code_loading(tmp_path, caplog, monkeypatch):
    from ecg_assets.core.settings import Settings
    from ecg_assets.defs.partitions import register_present_datasets

    settings = Settings(artifacts_dir=tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert register_present_datasets(settings) == []  # no instance: nothing to do
    not_a_home = tmp_path / "not_a_folder"
    not_a_home.write_text("")
    monkeypatch.setenv("DAGSTER_HOME", str(not_a_home))
    with caplog.at_level("WARNING"):
        assert register_present_datasets(settings) == []
    assert "could not register the dataset partitions at load" in caplog.text

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert register_present_datasets(settings) == ["demo_cinc2017", "demo_cinc2021"]
    assert register_present_datasets(settings) == []  # once
