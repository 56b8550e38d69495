"""ecg_assets: ECG recordings from several public databases as one Dagster asset pipeline.

- `ecg_assets.core`: the pure core (reading, signal processing, labels, store, splits, model,
  training, evaluation); it never imports Dagster.
- `ecg_assets.defs`: the thin Dagster layer (partitions, resources, assets, checks, jobs,
  automation), assembled into one `Definitions` by `ecg_assets.definitions`.
- `ecg_assets.cli`: the command-line entry points.
"""

__version__ = "0.1.0"
