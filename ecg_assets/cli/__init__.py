"""Command-line entry points: `ecg-assets`, `python -m ecg_assets.predict`, recovery and the torchrun worker."""
