"""Pure core of ecg_assets: reading, signal processing, labels, storage, splits, model,
training and evaluation. Nothing in this package imports dagster."""
