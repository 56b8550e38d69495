"""The jobs users launch (from the UI's Launchpad, the CLI, the schedule and the sensor).

Both select assets, so each run also executes the asset checks of the assets it selects.
"""

import dagster as dg

from ecg_assets.defs.assets import ecg_assets, test_metrics, trained_model

ecg_pipeline_job = dg.define_asset_job(
    name="ecg_pipeline",
    selection=dg.AssetSelection.assets(*ecg_assets),
    description="The whole chain for one dataset partition: label mapping to test metrics, with every check.",
)

retrain_job = dg.define_asset_job(
    name="retrain_and_evaluate",
    selection=dg.AssetSelection.assets(trained_model, test_metrics),
    description="Train again on the current processed records and splits (e.g. new hyper-parameters), "
    "then score the test split.",
)

ecg_jobs = [ecg_pipeline_job, retrain_job]
