"""The weekly schedule and the dataset-folder sensor, up to a sensor-requested re-materialization."""

import datetime
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ecg_assets.core.demo import ensure_demo_dataset
from ecg_assets.definitions import defs
from ecg_assets.defs import automation
from ecg_assets.defs.assets import ecg_assets
from ecg_assets.defs.checks import ecg_checks
from ecg_assets.defs.jobs import ecg_jobs
from ecg_assets.defs.partitions import registered_datasets
from ecg_assets.defs.resources import EcgPathsResource

from .conftest import cpu_resources, register_partitions, tiny_training

DEMO = ["demo_cinc2017", "demo_cinc2021"]

TICK = datetime.datetime(2026, 11, 29, 3, 0, tzinfo=datetime.timezone.utc)
SMOKE_RUN = {
    "ops": {
        "processed_records": {"config": {"smoke_test": True}},
        "trained_model": {"config": tiny_training()},
    }
}


def test_schedule_and_sensor_start_stopped_and_target_the_whole_chain():
    assert automation.weekly_full_refresh.default_status == dg.DefaultScheduleStatus.STOPPED
    assert automation.dataset_files_sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert automation.weekly_full_refresh.job_name == "ecg_pipeline"
    assert automation.dataset_files_sensor.job_name == "ecg_pipeline"
    assert defs.resolve_schedule_def("weekly_full_refresh").cron_schedule == automation.WEEKLY_CRON


def test_the_registration_sensor_runs_by_default_and_launches_nothing():
    sensor = defs.resolve_sensor_def("dataset_registration_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert not sensor.targets  # it can only add partitions, never request a run


def test_a_schedule_tick_requests_one_run_per_registered_partition_with_a_folder(tmp_path):
    with dg.instance_for_test() as instance:
        register_partitions(instance, "demo_cinc2021", "gone", "demo_cinc2017")  # "gone": no folder here
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=TICK,
            repository_def=defs.get_repository_def(),
            resources={"paths": EcgPathsResource(artifacts_dir=str(tmp_path))},
        )
        requests = automation.weekly_full_refresh.evaluate_tick(context).run_requests
    assert [request.partition_key for request in requests] == ["demo_cinc2021", "demo_cinc2017"]
    assert len({request.run_key for request in requests}) == len(requests)
    assert all(TICK.isoformat() in request.run_key for request in requests)
    assert all(request.tags["dagster/schedule_name"] == "weekly_full_refresh" for request in requests)


class SensorHarness:
    """Evaluates a sensor tick after tick, carrying the cursor and applying partition requests like the daemon does."""

    def __init__(self, artifacts: Path, instance: dg.DagsterInstance, data_dir: Path | None = None, definition=None):
        paths = EcgPathsResource(data_dir=str(data_dir) if data_dir else None, artifacts_dir=str(artifacts))
        self.resources = {"paths": paths}
        self.instance = instance
        self.definition = definition or automation.dataset_files_sensor
        self.cursor: str | None = None

    def tick(self):
        context = dg.build_sensor_context(
            instance=self.instance,
            instance_ref=self.instance.get_ref(),  # as the daemon gives it: run requests resolve dynamic partitions
            cursor=self.cursor,
            resources=self.resources,
            repository_def=defs.get_repository_def(),
        )
        data = self.definition.evaluate_tick(context)
        for request in data.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursor = data.cursor
        return data


@pytest.fixture
def sensor(tmp_path):
    with dg.instance_for_test() as instance:
        register_partitions(instance, *DEMO)
        yield SensorHarness(tmp_path, instance)


def _partitions(data) -> list[str]:
    return [request.partition_key for request in data.run_requests]


def test_sensor_requests_only_the_changed_partition_once(tmp_path, sensor):
    for name in DEMO:
        ensure_demo_dataset(tmp_path / "demo_data", name)
    first = sensor.tick()
    assert _partitions(first) == [] and "recorded only: demo_cinc2017, demo_cinc2021" in first.skip_message
    assert sensor.tick().run_requests == []

    new_file = tmp_path / "demo_data" / "demo_cinc2021" / "extra" / "note.txt"
    new_file.parent.mkdir()
    new_file.write_text("a new file in a sub-folder")
    changed = sensor.tick()
    assert _partitions(changed) == ["demo_cinc2021"]
    assert changed.run_requests[0].tags["dagster/sensor_name"] == "dataset_files_sensor"
    assert sensor.tick().run_requests == []  # the cursor moved on: one request per change


def test_sensor_waits_for_a_dataset_folder_to_exist_before_watching_it(tmp_path, sensor):
    assert _partitions(sensor.tick()) == [] and json.loads(sensor.cursor) == {}
    # the demo folder appears when its first run generates it: that run exists, so none is requested
    sensor.instance.add_run(dg.DagsterRun(job_name="ecg_pipeline", tags={"dagster/partition": "demo_cinc2017"}))
    ensure_demo_dataset(tmp_path / "demo_data", "demo_cinc2017")
    assert _partitions(sensor.tick()) == []  # first sight: recorded, not run
    assert list(json.loads(sensor.cursor)) == ["demo_cinc2017"]


def test_a_new_dataset_folder_becomes_a_partition_and_the_file_sensor_runs_it_once(tmp_path):
    data = tmp_path / "data"
    ensure_demo_dataset(data, "demo_cinc2017").rename(data / "ward_a")
    with dg.instance_for_test() as instance:
        registration = SensorHarness(tmp_path, instance, data, automation.dataset_registration_sensor)
        files = SensorHarness(tmp_path, instance, data)
        assert registration.tick().dynamic_partitions_requests[0].partition_keys == ["ward_a"]
        assert _partitions(files.tick()) == []  # the sensor's first evaluation records what exists

        ensure_demo_dataset(data, "demo_cinc2021").rename(data / "ward_b")  # a folder appears later
        (data / "not a valid name").mkdir()  # never a partition key
        (data / ".hidden").mkdir()
        assert registration.tick().dynamic_partitions_requests[0].partition_keys == ["ward_b"]
        assert registered_datasets(instance) == ["ward_a", "ward_b"]
        assert "no new dataset folder" in registration.tick().skip_message  # registered once

        requested = files.tick()
        assert _partitions(requested) == ["ward_b"]  # a new dataset that never ran
        assert requested.run_requests[0].tags["dagster/sensor_name"] == "dataset_files_sensor"
        assert _partitions(files.tick()) == []  # once


def test_a_shared_label_override_change_requests_every_watched_partition(tmp_path, sensor):
    for name in DEMO:
        ensure_demo_dataset(tmp_path / "demo_data", name)
    sensor.tick()
    (tmp_path / "demo_data" / "unified_label_mapping.csv").write_text("dataset,record_id,mapped_label\n")
    assert _partitions(sensor.tick()) == DEMO


@pytest.mark.slow
def test_changing_a_label_file_rematerializes_that_partition(tmp_path, sensor):
    resources = cpu_resources(tmp_path)
    test_defs = dg.Definitions(assets=ecg_assets, asset_checks=ecg_checks, jobs=ecg_jobs, resources=resources)
    pipeline = test_defs.resolve_job_def("ecg_pipeline")
    assert pipeline.execute_in_process(
        partition_key="demo_cinc2017", run_config=SMOKE_RUN, instance=sensor.instance
    ).success
    assert sensor.tick().run_requests == []  # baseline

    reference = tmp_path / "demo_data" / "demo_cinc2017" / "REFERENCE.csv"
    rows = pd.read_csv(reference, header=None, names=["record_id", "label"], dtype=str)
    relabelled = rows.loc[0, "record_id"]
    rows.loc[0, "label"] = "A" if rows.loc[0, "label"] != "A" else "N"
    rows.to_csv(reference, header=False, index=False)

    (request,) = sensor.tick().run_requests
    assert request.partition_key == "demo_cinc2017"
    run = pipeline.execute_in_process(
        partition_key=request.partition_key, run_config=SMOKE_RUN, tags=request.tags, instance=sensor.instance
    )
    assert run.success
    assert run.dagster_run.tags["dagster/sensor_name"] == "dataset_files_sensor"
    materialized = {event.asset_key.to_user_string() for event in run.get_asset_materialization_events()}
    assert materialized == {"label_mapping", "processed_records", "splits", "trained_model", "test_metrics"}
    mapping = pd.read_csv(tmp_path / "demo_cinc2017" / "label_mapping.csv", dtype=str, keep_default_na=False)
    expected = "AF" if rows.loc[0, "label"] == "A" else "NORM"
    assert mapping.set_index("record_id").loc[relabelled, "mapped_label"] == expected
    history = sensor.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("test_metrics"), asset_partitions=["demo_cinc2017"]), limit=10
    )
    assert len(history.records) == 2
