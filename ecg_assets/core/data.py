"""Feeding the store to PyTorch: whole batches gathered from the memory map, plus augmentation."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from ecg_assets.core.store import RecordStore


class StoreBatches:
    """Iterate `(signals, labels)` batches over a subset of a `RecordStore`.

    Each batch is one vectorised gather from the memory-mapped shards (no per-item file
    opens, no decompression). With `weights`, indices are drawn with replacement in
    proportion to them (class-balanced sampling); otherwise they are shuffled when
    `shuffle` is set. A seeded `generator` makes the order reproducible.
    """

    def __init__(
        self,
        store: RecordStore,
        indices: Sequence[int],
        labels: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        weights: np.ndarray | None = None,
        generator: torch.Generator | None = None,
    ):
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.generator = generator

    def __len__(self) -> int:
        return (len(self.indices) + self.batch_size - 1) // self.batch_size

    def _order(self) -> np.ndarray:
        n = len(self.indices)
        if self.weights is not None:
            return torch.multinomial(self.weights, n, replacement=True, generator=self.generator).numpy()
        if self.shuffle:
            return torch.randperm(n, generator=self.generator).numpy()
        return np.arange(n)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        for start in range(0, len(order), self.batch_size):
            positions = self.indices[order[start : start + self.batch_size]]
            yield torch.from_numpy(self.store.signals(positions)), torch.from_numpy(self.labels[positions])


def augment(signals: torch.Tensor, noise_std: float, scale_range: float, generator: torch.Generator) -> torch.Tensor:
    """Light augmentation on a CPU batch: per-record amplitude scaling and Gaussian noise.

    Absent (all-zero) leads stay zero, so the lead layout the model sees is unchanged.
    """
    if scale_range > 0:
        signals = signals * (1.0 + (torch.rand(signals.shape[0], 1, 1, generator=generator) * 2 - 1) * scale_range)
    if noise_std > 0:
        present = signals.abs().amax(dim=-1, keepdim=True) > 0
        signals = signals + torch.randn(signals.shape, generator=generator) * noise_std * present
    return signals
