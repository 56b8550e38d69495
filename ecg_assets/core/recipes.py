"""Named training recipes: `TrainingConfig` values measured together (see benchmarks/cinc2017_quality.py).

`GENERALISE` is the recipe of issue 11 ("generalise to recordings the model has never seen"):
five fold members of a 1.6M-parameter ResNet whose stride-8 stem halves the sequence length
(twice the samples per CPU-second of the stride-4 default), each fusing the record-level rhythm
features of `core.rhythm` (radial encoding, an auxiliary head on the feature branch), trained for
a fixed 12 epochs and kept as the exponential moving average of its weights after the last one
(no epoch chosen on a small validation split). The members are shipped as one checkpoint whose
probabilities are averaged. Measured numbers: benchmarks/results/cv_final_nested.json.
"""

from __future__ import annotations

from typing import Any

from ecg_assets.core.training import TrainingConfig

GENERALISE: dict[str, Any] = {
    # architecture: ~1.61M parameters per member
    "base_channels": 32,
    "kernel_size": 5,
    "stem_stride": 8,
    "stem_kernel_size": 31,
    "rhythm_features": True,
    "rhythm_hidden": 64,
    "rhythm_rbf": 8,
    # optimisation
    "epochs": 12,
    "batch_size": 32,
    "learning_rate": 2e-3,
    "weight_decay": 1e-2,
    "warmup_epochs": 1.0,
    "rhythm_aux_weight": 0.5,
    "ema_decay": 0.99,
    "selection": "last",
    # ensemble: one member per fold of train+val
    "members": 5,
}


def generalise_config(**overrides: Any) -> TrainingConfig:
    """The issue-11 recipe as a `TrainingConfig` (other fields at their defaults), with `overrides`."""
    return TrainingConfig(**{**GENERALISE, **overrides})
