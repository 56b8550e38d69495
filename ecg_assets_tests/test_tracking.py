"""Experiment tracking: off, nothing imports mlflow; on, a real MLflow tracking server receives each training run
(config params, per-epoch metrics, checkpoint, figures, tags) and the test metrics of its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from ecg_assets.core.atomic_io import read_json
from ecg_assets.core.checkpoints import file_sha256
from ecg_assets.core.training import TrainingConfig
from ecg_assets.defs import assets as asset_defs
from ecg_assets.defs.assets import ecg_assets, label_mapping, processed_records, splits, trained_model
from ecg_assets.defs.tracking import ExperimentTrackingResource

from .conftest import PROJECT_ROOT, cpu_resources, materialize_partition, register_partitions, tiny_run_config

PARTITION = "demo_cinc2021"
TINY_TRAINING = tiny_run_config(epochs=2)  # two epochs: a metric history, not a single point
SERVER_START_LIMIT_S = 600  # a bound for a wedged server, not a performance expectation


def test_tracking_is_off_unless_asked_for_and_reads_its_uri_from_the_environment(tmp_path):
    assert not ExperimentTrackingResource.from_env({}).enabled
    assert not ExperimentTrackingResource.from_env({"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}).enabled
    on = ExperimentTrackingResource.from_env({"ECG_TRACKING": "mlflow", "MLFLOW_TRACKING_URI": "http://127.0.0.1:1"})
    assert on.enabled and on.resolved_uri(tmp_path) == "http://127.0.0.1:1"
    ours = {"ECG_TRACKING": "MLflow", "ECG_MLFLOW_TRACKING_URI": "http://a:1", "MLFLOW_TRACKING_URI": "http://b:2"}
    assert ExperimentTrackingResource.from_env(ours).tracking_uri == "http://a:1"
    local = ExperimentTrackingResource(enabled=True).resolved_uri(tmp_path)
    assert local == f"sqlite:///{(tmp_path / 'mlruns' / 'mlflow.db').resolve()}"


@pytest.mark.slow
def test_with_tracking_off_the_pipeline_never_imports_mlflow(tmp_path):
    script = textwrap.dedent(
        f"""
        import json, sys
        import ecg_assets.definitions as definitions
        from ecg_assets.defs.assets import ecg_assets
        from ecg_assets_tests.conftest import cpu_resources, materialize_partition

        tracking = definitions.defs.resources["tracking"]  # what the code location uses: from the environment
        resources = {{**cpu_resources({str(tmp_path / "artifacts")!r}), "tracking": tracking}}
        config = {tiny_run_config()!r}
        result = materialize_partition(ecg_assets, partition_key={PARTITION!r}, resources=resources, run_config=config)
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "mlflow")
        print(json.dumps({{"success": result.success, "mlflow_modules": loaded}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ECG_TRACKING", "ECG_MLFLOW_TRACKING_URI")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"success": True, "mlflow_modules": []}
    assert (tmp_path / "artifacts" / PARTITION / "test_metrics.json").is_file()  # the whole chain ran
    assert not (tmp_path / "artifacts" / "mlruns").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1: SQLite backend, proxied artifact store in a temporary folder.
    One per module: each test logs to an experiment of its own."""
    tmp_path = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    log = (tmp_path / "mlflow_server.log").open("w")
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--artifacts-destination",
        str(tmp_path / "mlflow_artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_LIMIT_S
        while not _healthy(url):
            assert server.poll() is None, (tmp_path / "mlflow_server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the MLflow server never became healthy"
            time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.mark.slow
def test_a_tracked_run_on_a_real_mlflow_server_holds_params_epochs_test_metrics_artifacts_and_tags(
    tmp_path, mlflow_server
):
    from mlflow.tracking import MlflowClient

    artifacts = tmp_path / "artifacts"
    tracking = ExperimentTrackingResource(enabled=True, tracking_uri=mlflow_server, experiment_name="ecg_test")
    resources = {**cpu_resources(artifacts), "tracking": tracking}
    result = materialize_partition(ecg_assets, partition_key=PARTITION, resources=resources, run_config=TINY_TRAINING)
    assert result.success

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("ecg_test")
    (run,) = client.search_runs([experiment.experiment_id])
    run_id = run.info.run_id
    root = artifacts / PARTITION
    log, metrics = read_json(root / "training_log.json"), read_json(root / "test_metrics.json")
    checkpoint = root / "models" / "best.pth"

    assert run.info.run_name == f"trained_model/{PARTITION}" and run.info.status == "FINISHED"
    params = run.data.params
    assert set(TrainingConfig.model_fields) <= set(params)  # the full training config
    assert (params["epochs"], params["base_channels"], params["batch_size"], params["device"]) == (
        "2",
        "8",
        "16",
        "cpu",
    )

    for name in ("train_loss", "val_loss", "val_macro_f1", "learning_rate"):
        history = sorted(client.get_metric_history(run_id, name), key=lambda metric: metric.step)
        assert [(metric.step, metric.value) for metric in history] == [
            (epoch["epoch"], pytest.approx(epoch[name])) for epoch in log["epochs"]
        ], name
    assert run.data.metrics["best_val_macro_f1"] == pytest.approx(log["best_val_macro_f1"])
    for name in ("macro_f1", "micro_f1", "weighted_f1", "accuracy"):
        assert run.data.metrics[f"test_{name}"] == pytest.approx(metrics[name]), name
    assert run.data.metrics["test_records"] == metrics["n_samples"]

    tags = run.data.tags
    materialization = result.asset_materializations_for_node("trained_model")[0]
    assert tags["dagster_run_id"] == result.run_id and tags["dagster_evaluation_run_id"] == result.run_id
    assert tags["dagster_partition"] == PARTITION and tags["dagster_asset"] == "trained_model"
    assert tags["dagster_code_version"] == trained_model.code_versions_by_key[trained_model.key]
    assert tags["checkpoint_sha256"] == file_sha256(checkpoint) == metrics["checkpoint_sha256"]
    assert materialization.metadata["mlflow_run_id"].value == run_id

    downloaded = Path(tempfile.mkdtemp(dir=tmp_path))
    stored = Path(client.download_artifacts(run_id, "checkpoint/best.pth", str(downloaded)))
    assert file_sha256(stored) == file_sha256(checkpoint)
    listed = {item.path for folder in ("training", "evaluation") for item in client.list_artifacts(run_id, folder)}
    assert listed == {
        "training/training_log.json",
        "training/training_history.png",
        "evaluation/test_metrics.json",
        "evaluation/test_f1_scores.png",
        "evaluation/test_confusion_matrix.png",
    }

    # Again, without retraining: the checkpoint's run is reused (not logged twice) and gets the new evaluation.
    again = materialize_partition(
        [trained_model, asset_defs.test_metrics], partition_key=PARTITION, resources=resources, run_config=TINY_TRAINING
    )
    assert again.success
    (rerun,) = client.search_runs([experiment.experiment_id])
    assert rerun.info.run_id == run_id and rerun.data.tags["dagster_evaluation_run_id"] == again.run_id
    assert again.asset_materializations_for_node("trained_model")[0].metadata["mlflow_run_id"].value == run_id

    # Without a URI: a local SQLite store and its artifacts under <artifacts>/mlruns/, none in the working folder.
    local = ExperimentTrackingResource(enabled=True)
    resources = {**cpu_resources(artifacts), "tracking": local}
    assert materialize_partition(
        [trained_model, asset_defs.test_metrics], partition_key=PARTITION, resources=resources, run_config=TINY_TRAINING
    ).success
    store = MlflowClient(tracking_uri=local.resolved_uri(artifacts))
    (local_run,) = store.search_runs([store.get_experiment_by_name("ecg_assets").experiment_id])
    assert local_run.data.metrics["test_macro_f1"] == pytest.approx(metrics["macro_f1"])
    stored = local_run.info.artifact_uri.removeprefix("file://")
    assert Path(stored).is_relative_to((artifacts / "mlruns" / "artifacts").resolve())
    assert file_sha256(Path(stored) / "checkpoint" / "best.pth") == file_sha256(checkpoint)
    assert not (PROJECT_ROOT / "mlruns").exists() and not (PROJECT_ROOT / "mlflow.db").exists()


@pytest.mark.slow
def test_the_pooled_model_is_tracked_like_trained_model_with_its_datasets_and_test_scores(tmp_path, mlflow_server):
    """One dataset's splits, then pooled_model on it: the run holds the training config and the pooling
    settings, every epoch, the test macro F1 per dataset and lead set, the checkpoint, the plan and tags."""
    import dagster as dg
    from mlflow.tracking import MlflowClient

    from ecg_assets.defs.pooled import pooled_model

    artifacts = tmp_path / "artifacts"
    tracking = ExperimentTrackingResource(enabled=True, tracking_uri=mlflow_server, experiment_name="ecg_pooled")
    resources = {**cpu_resources(artifacts), "tracking": tracking}
    instance = register_partitions(dg.DagsterInstance.ephemeral(), PARTITION)
    chain = [label_mapping, processed_records, splits]
    assert dg.materialize(chain, partition_key=PARTITION, resources=resources, instance=instance).success
    config = {"ops": {"pooled_model": TINY_TRAINING["ops"]["trained_model"]}}
    result = dg.materialize(
        [pooled_model, *chain], selection=[pooled_model.key], resources=resources, instance=instance, run_config=config
    )
    assert result.success

    client = MlflowClient(tracking_uri=mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("ecg_pooled").experiment_id])
    run_id, root = run.info.run_id, artifacts / "pooled"
    log, lead_sets = read_json(root / "training_log.json"), read_json(root / "lead_set_metrics.json")
    assert run.info.run_name == "pooled_model" and run.info.status == "FINISHED"

    params = run.data.params
    assert set(TrainingConfig.model_fields) <= set(params)
    assert (params["epochs"], params["base_channels"], params["device"]) == ("2", "8", "cpu")
    assert (params["pooled.datasets"], params["pooled.mixing"], params["pooled.class_masking"]) == (
        PARTITION,
        "proportional",
        "True",
    )
    history = sorted(client.get_metric_history(run_id, "val_macro_f1"), key=lambda metric: metric.step)
    assert [(metric.step, metric.value) for metric in history] == [
        (epoch["epoch"], pytest.approx(epoch["val_macro_f1"])) for epoch in log["epochs"]
    ]
    assert run.data.metrics["best_val_macro_f1"] == pytest.approx(log["best_val_macro_f1"])
    (as_recorded,) = [row for row in lead_sets if row["dataset"] == PARTITION and row["lead_set"] == "as recorded"]
    assert run.data.metrics[f"test_macro_f1.{PARTITION}.as_recorded"] == pytest.approx(as_recorded["macro_f1"])
    assert run.data.metrics[f"test_records.{PARTITION}.as_recorded"] == as_recorded["records"]
    assert len([key for key in run.data.metrics if key.startswith("test_macro_f1.")]) == len(lead_sets)

    tags, checkpoint = run.data.tags, root / "models" / "best.pth"
    metadata = result.asset_materializations_for_node("pooled_model")[0].metadata
    assert tags["dagster_run_id"] == result.run_id and tags["dagster_asset"] == "pooled_model"
    assert tags["dagster_partition"] == ""
    assert tags["dagster_code_version"] == pooled_model.code_versions_by_key[pooled_model.key]
    assert tags["checkpoint_sha256"] == file_sha256(checkpoint) == metadata["checkpoint_sha256"].value
    assert metadata["mlflow_run_id"].value == run_id
    assert metadata["data"].value.startswith("SYNTHETIC demo data")  # the pooled partition is the demo

    downloaded = Path(tempfile.mkdtemp(dir=tmp_path))
    assert file_sha256(Path(client.download_artifacts(run_id, "checkpoint/best.pth", str(downloaded)))) == (
        file_sha256(checkpoint)
    )
    assert {item.path for item in client.list_artifacts(run_id, "training")} == {
        "training/training_log.json",
        "training/training_history.png",
        "training/plan.json",
        "training/lead_set_metrics.json",
        "training/excluded_records.csv",
    }
