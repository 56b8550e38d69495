"""ecg_assets: ECG recordings from several public databases as one Dagster asset pipeline.

`ecg_assets.core` is the pure core (no Dagster); the modules beside it are the thin
Dagster layer (partitions, resources, assets, definitions).
"""

__version__ = "0.1.0"
