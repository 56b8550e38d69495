"""Load a trained checkpoint (one model or a cross-validated ensemble) and score store records with it.

Every consumer of a `best.pth` goes through here: `test_metrics`, `predict`, the generalisation
matrix and the ensemble's out-of-fold scores. An ensemble checkpoint holds several members; it
loads as one module that averages their class probabilities, so callers never tell the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from ecg_assets.core.checkpoints import CheckpointError, load_checkpoint
from ecg_assets.core.labels import LABELS
from ecg_assets.core.model import build_model
from ecg_assets.core.preprocessing import RecordProcessingConfig
from ecg_assets.core.store import RecordStore
from ecg_assets.core.training import (
    DeviceSettings,
    TrainingConfig,
    inference_batches,
    masked_logits,
    predict_probabilities,
    stored_training_config,
)

REQUIRED_KEYS = ("model_config", "training_config", "preprocess", "classes", "class_mask")
# Probabilities are averaged, then handed on as their logarithm: softmax(log p) == p.
_SMALLEST_PROBABILITY = 1e-12


class MemberAverage(nn.Module):
    """Several trained models as one: the mean of their class probabilities, as log-probabilities.

    Each member's logits are masked to the classes it was trained on before the softmax, so a
    member that never saw a class gives it no probability.
    """

    def __init__(self, members: Sequence[nn.Module], class_masks: Sequence[torch.Tensor]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("class_masks", torch.stack([mask.bool() for mask in class_masks]))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack(
            [
                torch.softmax(masked_logits(member(*inputs).float(), mask), dim=1)
                for member, mask in zip(self.members, self.class_masks)
            ]
        ).mean(dim=0)
        return torch.log(probabilities.clamp_min(_SMALLEST_PROBABILITY))


@dataclass
class ScoringModel:
    """A checkpoint ready to score: the model (or ensemble), its classes and the settings it was trained with."""

    model: nn.Module
    class_mask: torch.Tensor
    preprocess: RecordProcessingConfig
    training: TrainingConfig
    members: int
    payload: dict  # the checkpoint's other entries (epoch, history, cross-validation, ...)

    @property
    def class_names(self) -> list[str]:
        return [label for label, present in zip(LABELS, self.class_mask.tolist()) if present]

    @property
    def trained_classes(self) -> list[int]:
        return np.flatnonzero(self.class_mask.cpu().numpy()).tolist()


def _member_model(state: dict, model_config: dict, device: torch.device) -> nn.Module:
    model = build_model(model_config).to(device)
    model.load_state_dict(state)
    return model


def load_scoring_model(
    path: Path, device: torch.device | str = "cpu", expected_sha256: str | None = None
) -> ScoringModel:
    """Load `path` (`weights_only`, optionally SHA-256-verified) as a `ScoringModel`.

    Raises `CheckpointError` with the reason for a file this code cannot use.
    """
    device = torch.device(device)
    checkpoint = load_checkpoint(path, map_location=device, expected_sha256=expected_sha256)
    members = checkpoint.get("members")
    required = REQUIRED_KEYS + (() if members else ("model_state",))
    missing = [key for key in required if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: not a model checkpoint of this pipeline")
    if list(checkpoint["classes"]) != list(LABELS):
        raise CheckpointError(f"{path} predicts classes {checkpoint['classes']}, this code knows {list(LABELS)}")
    try:
        preprocess = RecordProcessingConfig.model_validate(checkpoint["preprocess"] or {})
        training = stored_training_config(checkpoint["training_config"])
        if members:
            model: nn.Module = MemberAverage(
                [_member_model(member["model_state"], member["model_config"], device) for member in members],
                [torch.as_tensor(member["class_mask"], device=device) for member in members],
            )
        else:
            model = _member_model(checkpoint["model_state"], checkpoint["model_config"], device)
    except (ValidationError, RuntimeError, TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path} does not match this code's model or settings: {error}") from error
    model.eval()
    payload = {key: value for key, value in checkpoint.items() if key not in ("model_state", "members")}
    return ScoringModel(
        model=model,
        class_mask=torch.as_tensor(checkpoint["class_mask"], device=device).bool(),
        preprocess=preprocess,
        training=training,
        members=len(members) if members else 1,
        payload=payload,
    )


def score_positions(
    scoring: ScoringModel,
    store: RecordStore,
    positions: Sequence[int],
    settings: DeviceSettings,
    batch_size: int = 64,
    labels: np.ndarray | None = None,
    leads: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Class probabilities `[len(positions), len(LABELS)]` of store records, their labels and the mean
    cross-entropy, with the multi-window inference the model was trained for.

    `labels` defaults to the store's `label_index` column (absent in stores of unlabelled records: zeros).
    `leads` (indices into `LEAD_ORDER`) scores as if only those leads had been recorded (the others zeroed).
    """
    if labels is None:
        labels = (
            store.index["label_index"].to_numpy(dtype=np.int64)
            if "label_index" in store.index and len(store)
            else np.zeros(len(store), dtype=np.int64)
        )
    batches = inference_batches(store, positions, labels, batch_size, scoring.training, leads=leads)
    return predict_probabilities(scoring.model, batches, settings, scoring.class_mask)
