"""What runs by itself: a weekly full refresh of every dataset, and a sensor on the dataset folders.

Both target the `ecg_pipeline` job (the whole chain with its checks) one partition per run, so
training steps queue in the `gpu` pool. Both start STOPPED: retraining every dataset costs
hours of compute on a CPU, so it is something a user switches on (UI or `dagster schedule start`).
"""

import json

import dagster as dg

from ecg_assets.core.fingerprint import folder_fingerprint
from ecg_assets.defs.jobs import ecg_pipeline_job
from ecg_assets.defs.partitions import dataset_partitions
from ecg_assets.defs.resources import EcgPathsResource

WEEKLY_CRON = "0 3 * * 0"  # Sundays 03:00 UTC
SENSOR_INTERVAL_SECONDS = 60


@dg.schedule(
    cron_schedule=WEEKLY_CRON,
    execution_timezone="UTC",
    job=ecg_pipeline_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly full refresh: one ecg_pipeline run per dataset partition (label mapping to test metrics).",
)
def weekly_full_refresh(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
    return [
        dg.RunRequest(run_key=f"{partition}@{tick}", partition_key=partition)
        for partition in dataset_partitions.get_partition_keys()
    ]


@dg.sensor(
    job=ecg_pipeline_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Re-runs a dataset's whole chain when a file in its folder (or the shared "
    "unified_label_mapping.csv) is added, removed or changed. Cursor: one fingerprint per dataset.",
)
def dataset_files_sensor(context: dg.SensorEvaluationContext, paths: EcgPathsResource) -> dg.SensorResult:
    """Compare each dataset folder's fingerprint (names, sizes, mtimes) with the cursor's.

    A dataset seen for the first time only records its fingerprint; a missing folder keeps its
    previous one, so nothing runs until a known dataset really changes.
    """
    settings = paths.settings()
    previous: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = dict(previous)
    changed = []
    for partition in dataset_partitions.get_partition_keys():
        folder = settings.dataset_dir(partition)
        if not folder.is_dir():
            continue
        current[partition] = folder_fingerprint([folder, *settings.label_override_files(partition)])
        if partition in previous and previous[partition] != current[partition]:
            changed.append(partition)
    new = sorted(set(current) - set(previous))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"{partition}:{current[partition]}", partition_key=partition) for partition in changed
        ],
        cursor=json.dumps(current, sort_keys=True),
        skip_reason=None
        if changed
        else f"no dataset changed ({len(current)} fingerprinted; new, recorded only: {', '.join(new) or 'none'})",
    )


ecg_schedules = [weekly_full_refresh]
ecg_sensors = [dataset_files_sensor]
