"""Instance profiles: team (a real PostgreSQL started here) and cluster (validated without a cluster)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config
from dagster._core.storage.config import pg_config
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.workspace.autodiscovery import loadable_targets_from_loaded_module
from dagster._core.workspace.config_schema import ensure_workspace_config
from dagster._serdes.config_class import class_from_code_pointer
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job, get_user_defined_k8s_config
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from ecg_assets import k8s_definitions
from ecg_assets.definitions import defs as local_defs
from ecg_assets.defs.assets import ecg_assets, trained_model

from .conftest import PROJECT_ROOT
from .postgres_server import find_server_binaries, temporary_postgres

PROFILES = PROJECT_ROOT / "deploy" / "profiles"
LOCAL_PROFILE = PROJECT_ROOT / "dagster.yaml"
# Sections a deployment profile sets for itself; every other section of the local profile must be copied verbatim.
DEPLOYMENT_SECTIONS = {"storage", "run_launcher", "run_coordinator", "run_queue", "run_monitoring", "compute_logs"}
DAGSTER = str(Path(sys.executable).with_name("dagster"))
CLUSTER_ENV = {
    "DAGSTER_PG_HOST": "ecg-assets-postgresql",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "set-from-a-secret",
    "ECG_ASSETS_IMAGE": "registry.example/ecg-assets:1",
}
GPU = "nvidia.com/gpu"


def _profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "dagster.yaml").read_text())


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of our own for this module; skipped (failed under CI) without the binaries."""
    binaries = find_server_binaries()
    if binaries is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message} (CI must run the PostgreSQL profile test; .ci/run installs it)")
        pytest.skip(message)
    with temporary_postgres(binaries) as server:
        yield server


@pytest.mark.parametrize("name", ["team", "cluster"])
def test_profile_is_a_valid_instance_config_with_no_secret_in_it(name):
    config, custom_instance_class = dagster_instance_config(str(PROFILES / name))
    assert custom_instance_class is None
    credentials = config["storage"]["postgres"]["postgres_db"]
    assert set(credentials) >= {"hostname", "port", "db_name", "username", "password"}
    for field in ("hostname", "port", "db_name", "username", "password"):
        assert set(credentials[field]) == {"env"}, f"{name}: {field} must come from an environment variable"


@pytest.mark.parametrize("name", ["team", "cluster"])
def test_profile_keeps_every_local_setting_it_does_not_deploy_differently(name):
    local, profile = yaml.safe_load(LOCAL_PROFILE.read_text()), _profile(name)
    for section in set(local) - DEPLOYMENT_SECTIONS:
        assert profile.get(section) == local[section], (
            f"deploy/profiles/{name}/dagster.yaml: section {section!r} differs from the local dagster.yaml; copy it"
        )


def test_cluster_profile_shares_the_team_storage():
    assert _profile("cluster")["storage"] == _profile("team")["storage"]


def test_team_profile_keeps_runs_and_materializations_in_postgres(postgres, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROFILES / "team" / "dagster.yaml").read_text())
    pg_env = {  # what the team profile reads through `env:`
        "DAGSTER_PG_HOST": postgres.host,
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_DB": postgres.create_database("dagster_team"),
        "DAGSTER_PG_USERNAME": postgres.username,
        "DAGSTER_PG_PASSWORD": postgres.password,
    }
    env = {k: v for k, v in os.environ.items() if k not in ("ECG_DATA_DIR", "ECG_ARTIFACTS_DIR")}
    env.update(pg_env, DAGSTER_HOME=str(home), ECG_ARTIFACTS_DIR=str(tmp_path / "artifacts"))
    smoke_test = {"ops": {"processed_records": {"config": {"smoke_test": True}}}}
    command = [DAGSTER, "asset", "materialize", "--select", "label_mapping,processed_records"]
    command += ["--partition", "demo_cinc2017", "-m", "ecg_assets.definitions", "--config-json", json.dumps(smoke_test)]
    result = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert postgres.password not in result.stdout + result.stderr

    for key, value in pg_env.items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        for name in ("label_mapping", "processed_records"):
            event = instance.get_latest_materialization_event(dg.AssetKey(name))
            assert event is not None and event.run_id == run.run_id, name
            assert event.dagster_event.partition == "demo_cinc2017"
        processed = instance.get_latest_materialization_event(dg.AssetKey("processed_records"))
        assert processed.asset_materialization.metadata["processed"].value == 10
    assert not list(home.rglob("*.db")), "the team profile must not fall back to SQLite"

    connection = postgres.connect(pg_env["DAGSTER_PG_DB"])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
            )
            stored = sorted(cursor.fetchall())
            cursor.execute("SELECT run_id, status FROM runs")
            runs = cursor.fetchall()
    finally:
        connection.close()
    assert stored == [('["label_mapping"]', "demo_cinc2017"), ('["processed_records"]', "demo_cinc2017")]
    assert runs == [(run.run_id, "SUCCESS")]


def test_training_op_tags_are_a_k8s_config_asking_for_one_gpu():
    container = get_user_defined_k8s_config(trained_model.op.tags).container_config
    assert container["resources"]["limits"][GPU] == "1" and container["resources"]["requests"][GPU] == "1"
    for asset in ecg_assets:
        if asset is not trained_model:
            assert GPU not in json.dumps(get_user_defined_k8s_config(asset.op.tags).to_dict()), asset.key


def test_cluster_code_location_is_the_local_one_with_steps_as_kubernetes_jobs():
    (target,) = loadable_targets_from_loaded_module(k8s_definitions)  # how `-m ecg_assets.k8s_definitions` loads
    cluster_defs = target.target_definition
    assert set(cluster_defs.resolve_all_asset_keys()) == set(local_defs.resolve_all_asset_keys())
    job = cluster_defs.resolve_job_def("ecg_pipeline")
    assert job.executor_def is k8s_job_executor
    dg.validate_run_config(job, {"execution": {"config": {"job_namespace": "ecg-assets", "max_concurrent": 2}}})
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(job, {"execution": {"config": {"no_such_option": 1}}})


def test_cluster_workspace_loads_the_code_server_over_loopback():
    path = PROFILES / "cluster" / "workspace.yaml"
    workspace = ensure_workspace_config(yaml.safe_load(path.read_text()), str(path))
    (location,) = workspace["load_from"]
    assert location["grpc_server"]["host"] == "127.0.0.1"


def _cluster_run_launcher(monkeypatch, tmp_path) -> K8sRunLauncher:
    """The profile's run launcher, built as the instance would, but from a kubeconfig that points nowhere."""
    for key, value in CLUSTER_ENV.items():
        monkeypatch.setenv(key, value)
    profile = _profile("cluster")
    assert process_config(resolve_to_config_type(pg_config()), profile["storage"]["postgres"]).success
    launcher = profile["run_launcher"]
    assert class_from_code_pointer(launcher["module"], launcher["class"]) is K8sRunLauncher
    result = process_config(resolve_to_config_type(K8sRunLauncher.config_type()), launcher["config"])
    assert result.success, result.errors
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    offline = {**result.value, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    return K8sRunLauncher.from_config_value(None, offline)


def test_cluster_profile_turns_the_training_step_into_a_gpu_pod(monkeypatch, tmp_path):
    launcher = _cluster_run_launcher(monkeypatch, tmp_path)
    # What k8s_job_executor does for one step: the launcher's container context plus the op's tags.
    run = DagsterRun(job_name="ecg_pipeline", run_id="0" * 32)
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False).merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(trained_model.op.tags))
    )
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(None, launcher),
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-trained-model",
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
    )

    assert context.namespace == "ecg-assets"
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert container.image == CLUSTER_ENV["ECG_ASSETS_IMAGE"]
    assert container.resources.limits[GPU] == "1" and container.resources.requests[GPU] == "1"
    assert "/data" in {mount.mount_path for mount in container.volume_mounts}
    assert {volume.persistent_volume_claim.claim_name for volume in pod.volumes if volume.persistent_volume_claim} == {
        "ecg-assets-data"
    }
    assert "ecg-assets-env" in {source.config_map_ref.name for source in container.env_from if source.config_map_ref}
    (password,) = [variable for variable in container.env if variable.name == "DAGSTER_PG_PASSWORD"]
    assert password.value is None and password.value_from.secret_key_ref.name == "ecg-assets-postgresql"
    assert CLUSTER_ENV["DAGSTER_PG_PASSWORD"] not in json.dumps(job.to_dict(), default=str)
