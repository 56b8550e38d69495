"""Weight averaging for training: an exponential moving average (EMA) of a model's weights.

Averaging the weights over the last steps of training gives a model as good as the best epoch
without choosing that epoch on a small validation split (which overfits it).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ExponentialMovingAverage:
    """A copy of `model` whose floating-point state (weights and BatchNorm statistics) follows it as
    `average <- d * average + (1 - d) * current` after every optimizer step, with
    `d = min(decay, (1 + n) / (10 + n))` at update `n` (short memory at the start)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s current state."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for name, average in self.model.state_dict().items():
            value = current[name].detach()
            if average.dtype.is_floating_point:
                average.lerp_(value.to(average.dtype), 1.0 - decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict:
        return {"model_state": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model_state"])
        self.updates = int(state["updates"])
