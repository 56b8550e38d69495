"""The single Dagster `Definitions` of the ecg_assets code location."""

import dagster as dg

from ecg_assets.core.settings import Settings
from ecg_assets.defs.assets import ecg_assets
from ecg_assets.defs.automation import ecg_schedules, ecg_sensors
from ecg_assets.defs.checks import ecg_checks
from ecg_assets.defs.jobs import ecg_jobs, ecg_pipeline_job, retrain_job
from ecg_assets.defs.partitions import register_present_datasets
from ecg_assets.defs.pooled import pooled_assets, pooled_checks, pooled_jobs
from ecg_assets.defs.resources import EcgPathsResource, TorchDeviceResource
from ecg_assets.defs.tracking import ExperimentTrackingResource

__all__ = ["build_definitions", "defs", "ecg_pipeline_job", "retrain_job", "step_executor"]

# Every step still runs in its own process, but forked from a server that has already imported this
# code location (dagster, torch, pandas, ...), instead of a fresh interpreter importing it all again:
# see benchmarks/bench_step_start.py. Runs launched from the CLI, the UI, the schedule and the sensor
# use it; `dg.materialize` and `execute_in_process` (the tests) run in process as before.
step_executor = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": [__name__]}}}, name="forkserver_multiprocess"
)


def build_definitions(executor: dg.ExecutorDefinition) -> dg.Definitions:
    """Every asset, check, job, schedule, sensor and resource, run by `executor`."""
    return dg.Definitions(
        assets=[*ecg_assets, *pooled_assets],
        asset_checks=[*ecg_checks, *pooled_checks],
        jobs=[*ecg_jobs, *pooled_jobs],
        schedules=ecg_schedules,
        sensors=ecg_sensors,
        executor=executor,
        resources={
            "paths": EcgPathsResource.from_settings(Settings.from_env()),
            "gpu": TorchDeviceResource(device="auto"),
            # Launches torchrun for trained_model when `gpu.processes_per_node` asks for several processes.
            "pipes_subprocess_client": dg.PipesSubprocessClient(),
            # MLflow tracking of training and evaluation: off unless ECG_TRACKING=mlflow (defs/tracking.py).
            "tracking": ExperimentTrackingResource.from_env(),
        },
    )


defs = build_definitions(step_executor)
# With an instance at hand (DAGSTER_HOME), the datasets present now are partitions before anything
# validates a partition key, e.g. `dagster asset materialize --partition NEW` from a fresh shell.
register_present_datasets(Settings.from_env())
