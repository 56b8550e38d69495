"""Feeding the store to PyTorch: whole batches gathered from the memory map, plus augmentation.

Training batches take a random crop of each record's longer window when the store kept one
(the record is longer than the canonical 10 s), and a random time shift of the canonical
tensor otherwise. Inference batches cut every long record into overlapping windows whose
predictions are averaged per record (multi-window inference); other records are scored on
their canonical tensor.

Given `features` (float32 `[len(store), n]`, one record-level vector per store position, see
`core.rhythm`), every batch also carries the vectors of its records, as its last element.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, Sequence, TypeVar

import numpy as np
import torch

from ecg_assets.core.store import RecordStore

T = TypeVar("T")


def _randint(low: int, high: np.ndarray | int, size: int, generator: torch.Generator | None) -> np.ndarray:
    """Uniform integers in `[low, high]` (inclusive, `high` per item), from a torch generator."""
    span = np.asarray(high, dtype=np.int64) - low + 1
    draws = torch.rand(size, generator=generator, dtype=torch.float64).numpy()
    return low + np.minimum((draws * span).astype(np.int64), span - 1)


def shift_in_time(signals: np.ndarray, shifts: np.ndarray) -> None:
    """Shift each record in place by `shifts[i]` samples (positive: later), filling with zeros."""
    length = signals.shape[-1]
    for row, shift in enumerate(shifts):
        shift = int(shift)
        if shift > 0:
            signals[row, :, shift:] = signals[row, :, : length - shift].copy()
            signals[row, :, :shift] = 0.0
        elif shift < 0:
            signals[row, :, : length + shift] = signals[row, :, -shift:].copy()
            signals[row, :, length + shift :] = 0.0


class _Batches:
    """Batches over the records `indices` of a store, `length` samples per row."""

    def __init__(
        self, store: RecordStore, indices: Sequence[int], labels: np.ndarray, batch_size: int, length: int | None
    ):
        self.store, self.labels, self.batch_size = store, labels, batch_size
        self.indices = np.asarray(indices, dtype=np.int64)
        self.length = length or store.row_shape[-1]
        self.features: np.ndarray | None = None

    def _with_features(self, batch: tuple, positions: np.ndarray) -> tuple:
        """`batch`, plus the record-level features of `positions` when there are any."""
        if self.features is None:
            return batch
        return (*batch, torch.from_numpy(np.ascontiguousarray(self.features[positions], dtype=np.float32)))

    def _batch_count(self, rows: int) -> int:
        return (rows + self.batch_size - 1) // self.batch_size


class StoreBatches(_Batches):
    """Iterate `(signals, labels)` batches over a subset of a `RecordStore`.

    Each batch is one vectorised gather from the memory-mapped shards (no per-item file
    opens, no decompression). With `weights`, indices are drawn with replacement in
    proportion to them (class-balanced sampling); otherwise they are shuffled when
    `shuffle` is set. With `random_crops`, records that have a longer window are cropped at a
    random start, and the others shifted by up to `max_shift` samples. `length` (default: the
    canonical length) is the number of samples per row; a canonical tensor shorter than that is
    zero-padded. A seeded `generator` makes order and crops reproducible; crops and shifts draw
    from `augment_generator` when given.

    Sharded across `world_size` processes, `batch_size` is the global batch: every rank draws the
    same order (from identically seeded `generator`s, which must draw nothing else) and takes the
    records `rank, rank + world_size, ...` of each global batch, so the shards are disjoint and
    together are exactly the single-process batch. A last global batch too small to give every
    rank 2 records (BatchNorm's minimum) is left out, so that all ranks take the same steps.
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
        random_crops: bool = False,
        max_shift: int = 0,
        length: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        augment_generator: torch.Generator | None = None,
        features: np.ndarray | None = None,
    ):
        super().__init__(store, indices, labels, batch_size, length)
        self.features = features
        self.shuffle = shuffle
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.generator = generator
        self.augment_generator = augment_generator or generator
        self.random_crops = random_crops
        self.max_shift = max_shift
        self.rank, self.world_size = rank, world_size

    def _batch_starts(self) -> range:
        """Where each global batch starts in the epoch's order."""
        rows = len(self.indices)
        last = rows % self.batch_size
        if self.world_size > 1 and 0 < last < 2 * self.world_size:
            rows -= last
        return range(0, rows, self.batch_size)

    def __len__(self) -> int:
        return len(self._batch_starts())

    def _order(self) -> np.ndarray:
        n = len(self.indices)
        if self.weights is not None:
            return torch.multinomial(self.weights, n, replacement=True, generator=self.generator).numpy()
        if self.shuffle:
            return torch.randperm(n, generator=self.generator).numpy()
        return np.arange(n)

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """float32 `[len(positions), 12, length]`: canonical tensors, or random crops/shifts when training."""
        if not self.random_crops:
            return canonical_rows(self.store, positions, self.length)
        samples = self.store.window_samples[positions]
        windowed = samples > 0
        out = np.empty((len(positions), self.store.row_shape[0], self.length), dtype=np.float32)
        if (~windowed).any():
            plain = canonical_rows(self.store, positions[~windowed], self.length)
            if self.max_shift:
                shifts = _randint(-self.max_shift, self.max_shift, len(plain), self.augment_generator)
                shift_in_time(plain, shifts)
            out[~windowed] = plain
        if windowed.any():
            latest = np.maximum(samples[windowed] - self.length, 0)
            starts = _randint(0, latest, int(windowed.sum()), self.augment_generator)
            out[windowed] = self.store.window_crops(positions[windowed], starts, self.length)
        return out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self._order()
        for start in self._batch_starts():
            positions = self.indices[order[start : start + self.batch_size][self.rank :: self.world_size]]
            batch = (torch.from_numpy(self.gather(positions)), torch.from_numpy(self.labels[positions]))
            yield self._with_features(batch, positions)


def canonical_rows(store: RecordStore, positions: np.ndarray, length: int) -> np.ndarray:
    """The canonical tensors of `positions`, cut or zero-padded to `length` samples."""
    signals = store.signals(positions)
    if length == signals.shape[-1]:
        return signals
    out = np.zeros((*signals.shape[:2], length), dtype=np.float32)
    keep = min(length, signals.shape[-1])
    out[..., :keep] = signals[..., :keep]
    return out


def window_starts(samples: int, length: int, stride: int) -> list[int]:
    """Starts of `length`-sample windows every `stride` samples, the last one ending at `samples`."""
    if samples <= length or stride <= 0:
        return [0]
    starts = list(range(0, samples - length + 1, stride))
    if starts[-1] != samples - length:
        starts.append(samples - length)
    return starts


class WindowBatches(_Batches):
    """Iterate `(signals, labels, groups)` for inference: `groups[i]` is the ordinal (in `indices`)
    of the record a row belongs to, so predictions can be averaged per record.

    Records with a longer window contribute one row per `length`-sample window (`stride` samples
    apart, the last one flush with the end); with `stride=0`, or without a window, a record is
    its canonical tensor (zero-padded to `length`). With `leads`, every other lead is zeroed (scored
    as if only those leads had been recorded).
    """

    def __init__(
        self,
        store: RecordStore,
        indices: Sequence[int],
        labels: np.ndarray,
        batch_size: int,
        stride: int,
        length: int | None = None,
        leads: Sequence[int] | None = None,
        features: np.ndarray | None = None,
    ):
        super().__init__(store, indices, labels, batch_size, length)
        self.features = features
        # Score on these leads only (the others zeroed, as if absent): None keeps every lead.
        self.dropped_leads = None if leads is None else np.setdiff1d(np.arange(store.row_shape[0]), leads)
        items = []  # (ordinal, position, start or -1 for the canonical tensor)
        for ordinal, position in enumerate(self.indices):
            samples = int(store.window_samples[position]) if stride > 0 else 0
            if samples > 0:
                items += [(ordinal, position, start) for start in window_starts(samples, self.length, stride)]
            else:
                items.append((ordinal, position, -1))
        self.items = np.asarray(items, dtype=np.int64).reshape(-1, 3)

    def __len__(self) -> int:
        return self._batch_count(len(self.items))

    def __iter__(self) -> Iterator[tuple]:
        for begin in range(0, len(self.items), self.batch_size):
            ordinals, positions, starts = self.items[begin : begin + self.batch_size].T
            out = np.empty((len(positions), self.store.row_shape[0], self.length), dtype=np.float32)
            canonical = starts < 0
            if canonical.any():
                out[canonical] = canonical_rows(self.store, positions[canonical], self.length)
            if (~canonical).any():
                out[~canonical] = self.store.window_crops(positions[~canonical], starts[~canonical], self.length)
            if self.dropped_leads is not None:
                out[:, self.dropped_leads] = 0.0
            yield self._with_features(
                (torch.from_numpy(out), torch.from_numpy(self.labels[positions]), ordinals), positions
            )


def augment(signals: torch.Tensor, noise_std: float, scale_range: float, generator: torch.Generator) -> torch.Tensor:
    """Light augmentation of a CPU batch, in place: per-record amplitude scaling and Gaussian noise.

    Noise is drawn for present leads only, so absent (all-zero) leads stay zero and the lead
    layout the model sees is unchanged (and a single-lead batch costs one lead of noise).
    """
    if scale_range > 0:
        signals.mul_(1.0 + (torch.rand(signals.shape[0], 1, 1, generator=generator) * 2 - 1) * scale_range)
    if noise_std > 0:
        records, leads = signals.ne(0).any(dim=-1).nonzero(as_tuple=True)
        noise = torch.randn((len(records), signals.shape[-1]), generator=generator).mul_(noise_std)
        signals[records, leads] += noise
    return signals


def drop_leads(signals: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Lead dropout, in place: with `probability`, a record keeps only a random subset of its present leads.

    Present leads are the non-zero rows: the store writes absent leads as zeros (its lead mask),
    and a flat lead is zeros too. A record with n > 1 present leads keeps k of them, k drawn from
    1..n-1 with probability proportional to 1/k (a third of dropped 12-lead records keep a single
    lead: the hardest case gets the most practice), the leads uniformly; at least one always stays.
    """
    if probability <= 0:
        return signals
    present = signals.ne(0).any(dim=-1)
    chosen = torch.rand(signals.shape[0], generator=generator) < probability
    for record in (chosen & (present.sum(dim=1) > 1)).nonzero().flatten().tolist():
        leads = present[record].nonzero().flatten()
        sizes = torch.arange(1, len(leads), dtype=torch.float64)
        keep = int(torch.multinomial(1.0 / sizes, 1, generator=generator)) + 1
        dropped = leads[torch.randperm(len(leads), generator=generator)[keep:]]
        signals[record, dropped] = 0.0
    return signals


def flip_polarity(signals: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Invert every lead of each record with `probability`, in place (single-lead devices such as
    AliveCor's record either polarity depending on how they are held)."""
    if probability > 0:
        flips = torch.rand(signals.shape[0], generator=generator) < probability
        signals[flips] = -signals[flips]
    return signals


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Run `items` in a background thread, at most `depth` ahead (`depth=0`: no thread at all).

    Exceptions are re-raised in the consumer; abandoning the iteration stops the producer.
    """
    if depth <= 0:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((done, None))
        except BaseException as error:  # handed to the consumer
            buffer.put((done, error))

    thread = threading.Thread(target=produce, name="ecg-batch-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()
