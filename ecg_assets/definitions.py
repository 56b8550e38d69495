"""The single Dagster `Definitions` of the ecg_assets code location."""

from __future__ import annotations

import dagster as dg

from ecg_assets.assets import ecg_assets
from ecg_assets.resources import EcgPathsResource, TorchDeviceResource
from ecg_assets.settings import Settings

ecg_pipeline_job = dg.define_asset_job(
    name="ecg_pipeline",
    selection=dg.AssetSelection.assets(*ecg_assets),
    description="The whole chain for one dataset partition: label mapping to test metrics.",
)

defs = dg.Definitions(
    assets=ecg_assets,
    jobs=[ecg_pipeline_job],
    resources={
        "paths": EcgPathsResource.from_settings(Settings.from_env()),
        "gpu": TorchDeviceResource(device="auto"),
    },
)
