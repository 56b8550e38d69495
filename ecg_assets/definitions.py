"""The single Dagster `Definitions` of the ecg_assets code location."""

import dagster as dg

from ecg_assets.assets import ecg_assets
from ecg_assets.automation import ecg_schedules, ecg_sensors
from ecg_assets.checks import ecg_checks
from ecg_assets.jobs import ecg_jobs, ecg_pipeline_job, retrain_job
from ecg_assets.resources import EcgPathsResource, TorchDeviceResource
from ecg_assets.settings import Settings

__all__ = ["defs", "ecg_pipeline_job", "retrain_job"]

defs = dg.Definitions(
    assets=ecg_assets,
    asset_checks=ecg_checks,
    jobs=ecg_jobs,
    schedules=ecg_schedules,
    sensors=ecg_sensors,
    resources={
        "paths": EcgPathsResource.from_settings(Settings.from_env()),
        "gpu": TorchDeviceResource(device="auto"),
    },
)
