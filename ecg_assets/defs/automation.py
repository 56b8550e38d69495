"""What runs by itself: registering new dataset folders, a weekly full refresh, and a sensor on the dataset files.

`dataset_registration_sensor` starts RUNNING: it only adds partitions (one directory listing
per tick, a write only when a folder appeared) and never launches a run. The weekly schedule
and the file sensor target the `ecg_pipeline` job (the whole chain with its checks) one
partition per run, so training steps queue in the `gpu` pool; both start STOPPED, because
retraining every dataset costs hours of compute on a CPU: a user switches them on (UI, or
`dagster schedule/sensor start -w workspace.yaml`).
"""

import json

import dagster as dg

from ecg_assets.core.artifacts import is_valid_dataset_name
from ecg_assets.core.fingerprint import folder_fingerprint
from ecg_assets.defs.jobs import ecg_pipeline_job
from ecg_assets.defs.partitions import dataset_partitions, new_datasets, registered_datasets
from ecg_assets.defs.resources import EcgPathsResource

WEEKLY_CRON = "0 3 * * 0"  # Sundays 03:00 UTC
SENSOR_INTERVAL_SECONDS = 60
REGISTRATION_INTERVAL_SECONDS = 30


@dg.sensor(
    minimum_interval_seconds=REGISTRATION_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers every new dataset folder (under ECG_DATA_DIR, or the demo datasets) as a partition of "
    "the `datasets` set. Launches no runs.",
)
def dataset_registration_sensor(context: dg.SensorEvaluationContext, paths: EcgPathsResource) -> dg.SensorResult:
    """Add a partition for each valid dataset folder that is not registered yet; registered ones stay."""
    added = new_datasets(context.instance, paths.settings().dataset_names())
    return dg.SensorResult(
        dynamic_partitions_requests=[dataset_partitions.build_add_request(added)] if added else [],
        skip_reason=None if added else "no new dataset folder",
    )


def _datasets_with_folders(context, paths: EcgPathsResource) -> tuple[list[str], list[str]]:
    """Registered partitions whose folder exists now, and those without one (registered under another setting)."""
    settings = paths.settings()
    present, absent = [], []
    for partition in filter(is_valid_dataset_name, registered_datasets(context.instance)):
        has_folder = settings.is_demo_dataset(partition) or settings.dataset_dir(partition).is_dir()
        (present if has_folder else absent).append(partition)
    return present, absent


@dg.schedule(
    cron_schedule=WEEKLY_CRON,
    execution_timezone="UTC",
    job=ecg_pipeline_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly full refresh: one ecg_pipeline run per registered dataset partition whose folder exists.",
)
def weekly_full_refresh(
    context: dg.ScheduleEvaluationContext, paths: EcgPathsResource
) -> list[dg.RunRequest] | dg.SkipReason:
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
    present, absent = _datasets_with_folders(context, paths)
    if absent:
        context.log.info(f"skipping registered partition(s) without a folder: {', '.join(absent)}")
    if not present:
        return dg.SkipReason("no registered dataset partition has a folder")
    return [dg.RunRequest(run_key=f"{partition}@{tick}", partition_key=partition) for partition in present]


def _never_run(context: dg.SensorEvaluationContext, partition: str) -> bool:
    runs = context.instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": partition}), limit=1)
    return not runs


@dg.sensor(
    job=ecg_pipeline_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Re-runs a dataset's whole chain when a file in its folder (or the shared "
    "unified_label_mapping.csv) is added, removed or changed, and runs a new dataset that never ran. "
    "Cursor: one fingerprint per dataset.",
)
def dataset_files_sensor(context: dg.SensorEvaluationContext, paths: EcgPathsResource) -> dg.SensorResult:
    """Compare each registered dataset folder's fingerprint (names, sizes, mtimes) with the cursor's.

    On the sensor's first evaluation every dataset is only recorded. Later, a dataset that
    appears (a new folder, registered by `dataset_registration_sensor`) is run once if no run of
    its partition exists yet, and a known dataset whose fingerprint changed is run again. A
    missing folder keeps its previous fingerprint.
    """
    settings = paths.settings()
    first_evaluation = context.cursor is None
    previous: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = dict(previous)
    changed, appeared, recorded = [], [], []
    for partition in filter(is_valid_dataset_name, registered_datasets(context.instance)):
        folder = settings.dataset_dir(partition)
        if not folder.is_dir():
            continue
        current[partition] = folder_fingerprint([folder, *settings.label_override_files(partition)])
        if partition in previous:
            if previous[partition] != current[partition]:
                changed.append(partition)
        elif not first_evaluation and _never_run(context, partition):
            appeared.append(partition)
        else:
            recorded.append(partition)
    requested = changed + appeared
    if requested:
        context.log.info(
            f"changed: {', '.join(changed) or 'none'}; new datasets never run: {', '.join(appeared) or 'none'}"
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"{partition}:{current[partition]}", partition_key=partition)
            for partition in requested
        ],
        cursor=json.dumps(current, sort_keys=True),
        skip_reason=None
        if requested
        else f"no dataset changed ({len(current)} fingerprinted; new, recorded only: {', '.join(recorded) or 'none'})",
    )


ecg_schedules = [weekly_full_refresh]
ecg_sensors = [dataset_registration_sensor, dataset_files_sensor]
