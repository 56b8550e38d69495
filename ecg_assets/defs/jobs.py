"""The jobs users launch (from the UI's Launchpad, the CLI, the schedule and the sensor).

Both select assets, so each run also executes the asset checks of the assets it selects.
"""

import dagster as dg

from ecg_assets.defs.assets import ecg_assets, test_metrics, trained_model
from ecg_assets.defs.pooled import pooled_assets

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

# Unpartitioned: one run over every dataset, after the partitions' own chains (a partitioned job cannot hold it).
pooled_and_matrix_job = dg.define_asset_job(
    name="pooled_and_matrix",
    selection=dg.AssetSelection.assets(*pooled_assets),
    description="Train the pooled model on every dataset with materialized splits, then score every model on "
    "every dataset's test split (the generalisation matrix), with their checks.",
)

ecg_jobs = [ecg_pipeline_job, retrain_job, pooled_and_matrix_job]
