"""Training loop for ECGResNet1D on a record store: AMP, accumulation, cosine LR, checkpoints, resume."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator
from torch import nn

from ecg_assets.core.atomic_io import atomic_write_json, read_json
from ecg_assets.core.averaging import ExponentialMovingAverage
from ecg_assets.core.checkpoints import file_sha256, load_checkpoint, save_checkpoint
from ecg_assets.core.data import StoreBatches, WindowBatches, augment, drop_leads, flip_polarity, prefetch
from ecg_assets.core.ddp import SINGLE_PROCESS, Ranks
from ecg_assets.core.labels import LABELS
from ecg_assets.core.metrics import macro_f1
from ecg_assets.core.model import ECGResNet1D, ModelConfig, count_parameters
from ecg_assets.core.record_features import store_rhythm_features
from ecg_assets.core.rhythm import N_RHYTHM_FEATURES
from ecg_assets.core.store import RecordStore

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pth"
LATEST_CHECKPOINT = "latest.pth"
# A logit this low removes a class the training split never contained (safe in fp16).
ABSENT_CLASS_LOGIT = -1e4
# Settings that change how a run is reported, not what it learns: excluded from the fingerprint.
_NON_SEMANTIC_FIELDS = {"log_every_batches", "resume"}
# Options added after checkpoints were first written, with the value that reproduces the older
# behaviour: left out of the fingerprint while they hold it, so a run started by older code still
# resumes (whatever these options' defaults become).
_LEGACY_VALUES: dict[str, Any] = {
    "lead_dropout": 0.0,
    "stem_kernel_size": 15,
    "stage_channels": None,
    "stem_channels": None,
    "rhythm_features": False,
    "rhythm_hidden": 32,
    "rhythm_aux_weight": 0.0,
    "rhythm_rbf": 0,
    "ema_decay": 0.0,
    "selection": "best_val",
    "flip_probability": 0.0,
}
DEFAULT_FS = 500.0


class TrainingConfig(BaseModel):
    """Everything that decides what the model learns (and a few reporting knobs)."""

    epochs: int = Field(12, ge=1)
    batch_size: int = Field(32, ge=2)
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up before the cosine decay.")
    grad_accumulation_steps: int = Field(1, ge=1)
    seed: int = 42
    base_channels: int = Field(
        32, ge=4, description="Width of the first ResNet stage (32: 1.58M parameters; 16 with kernel 7: 0.55M)."
    )
    balance: Literal["loss_weights", "sampler", "none"] = "loss_weights"
    noise_std: float = Field(0.05, ge=0, description="Gaussian noise added to training batches (z-score units).")
    scale_range: float = Field(0.1, ge=0, lt=1, description="Random amplitude scaling in [1-r, 1+r].")
    random_crops: bool = Field(
        True, description="Train on random 10-s crops of the longer windows the store kept for long records."
    )
    crop_s: float = Field(
        0.0,
        ge=0,
        description="Seconds per training/inference window (0: the store's canonical length, 10 s). Longer "
        "windows see more beats at a proportional cost; shorter records are zero-padded.",
    )
    max_shift_s: float = Field(
        0.5, ge=0, description="Random time shift (zero-filled) of records without a longer window, seconds."
    )
    inference_stride_s: float = Field(
        5.0,
        ge=0,
        description="Validation/test/prediction: score long records on windows this many seconds apart and "
        "average the probabilities (0: the canonical first 10 s only).",
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    kernel_size: int = Field(5, ge=3, description="Odd kernel size of the residual convolutions.")
    stem_stride: int = Field(
        8, ge=1, description="Stride of the stem convolution (8: every stage sees a quarter of the samples of 2)."
    )
    early_stopping_patience: int = Field(
        0,
        ge=0,
        description="Stop after this many epochs without a better val macro F1 (0: off; needs selection best_val).",
    )
    ensemble_members: int = Field(
        1,
        ge=1,
        le=20,
        description="1: one model trained on the train split, selected on validation. k >= 2: a cross-validated "
        "ensemble: train+val pooled and cut into k folds, member i trains on the others and selects on fold i; "
        "out-of-fold scores give a cross-validated estimate; best.pth holds every member (core/ensemble.py).",
    )
    lead_dropout: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Probability that a training record keeps only a random subset of its present leads (at "
        "least one; subset size k with probability proportional to 1/k), so one network scores any lead subset.",
    )
    stem_kernel_size: int = Field(31, ge=1, description="Kernel of the stem convolution (62 ms at 500 Hz).")
    stage_channels: list[int] | None = Field(
        None, description="Width of each of the four stages (None: base_channels doubling)."
    )
    stem_channels: int | None = Field(None, ge=4, description="Width of the stem (None: the first stage's).")
    rhythm_features: bool = Field(
        True, description="Fuse the record-level rhythm features (core.rhythm) with the pooled embedding."
    )
    rhythm_hidden: int = Field(64, ge=1, description="Width of the rhythm-feature MLP.")
    rhythm_rbf: int = Field(
        8, ge=0, description="Gaussian bumps per rhythm feature before its MLP (0: the raw standardised features)."
    )
    rhythm_aux_weight: float = Field(
        0.5,
        ge=0,
        description="Weight of an auxiliary loss on a head that sees the rhythm features alone (0: no such "
        "head), so that the feature branch learns to classify by itself and is not drowned by the network.",
    )
    ema_decay: float = Field(
        0.99,
        ge=0,
        lt=1,
        description="Exponential moving average of the weights (per optimizer step) that is validated and "
        "saved (0: off).",
    )
    selection: Literal["best_val", "last"] = Field(
        "last",
        description="best_val: keep the epoch with the best validation macro F1; last: keep the last epoch, "
        "which a small validation split cannot overfit (every epoch is still validated and logged).",
    )
    flip_probability: float = Field(
        0.0, ge=0, le=1, description="Probability of inverting a training record (every lead's polarity)."
    )
    log_every_batches: int = Field(50, ge=1)
    resume: bool = Field(True, description="Continue from latest.pth when config and data are unchanged.")

    @model_validator(mode="after")
    def _stopping_needs_a_selected_epoch(self) -> "TrainingConfig":
        if self.early_stopping_patience and self.selection != "best_val":
            raise ValueError(
                "early_stopping_patience needs selection 'best_val' (with 'last', every epoch runs and the last "
                "is kept): set selection: best_val, or early_stopping_patience: 0"
            )
        return self

    def architecture(self) -> ModelConfig:
        return ModelConfig(
            num_classes=len(LABELS),
            base_channels=self.base_channels,
            dropout=self.dropout,
            kernel_size=self.kernel_size,
            stem_stride=self.stem_stride,
            stem_kernel_size=self.stem_kernel_size,
            stage_channels=tuple(self.stage_channels) if self.stage_channels else None,
            stem_channels=self.stem_channels,
            rhythm_features=N_RHYTHM_FEATURES if self.rhythm_features else 0,
            rhythm_hidden=self.rhythm_hidden,
            rhythm_head=bool(self.rhythm_features and self.rhythm_aux_weight > 0),
            rhythm_rbf=self.rhythm_rbf if self.rhythm_features else 0,
        )


@dataclass
class DeviceSettings:
    """Where and how to run: the device, its AMP dtype (None: full precision), copy and loader flags.

    `pin_memory` + `non_blocking` make host-to-GPU copies asynchronous; `prefetch_batches` > 0
    assembles batches in a background thread while the device computes (useful on a GPU; on a
    CPU the cores are better left to the model); `compile` wraps the model in `torch.compile`.
    """

    device: torch.device
    amp_dtype: torch.dtype | None = None
    non_blocking: bool = False
    pin_memory: bool = False
    prefetch_batches: int = 0
    compile: bool = False

    def on_rank(self, ranks: Ranks) -> DeviceSettings:
        """The same settings on this rank's own GPU (`cuda:LOCAL_RANK`); unchanged on the CPU."""
        if self.device.type != "cuda" or not ranks.distributed:
            return self
        return dataclasses.replace(self, device=torch.device("cuda", ranks.local_rank))

    def to_json(self) -> dict:
        """Plain values (to hand to another process), read back by `from_json`."""
        values = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        values["device"] = str(self.device)
        values["amp_dtype"] = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else None
        return values

    @classmethod
    def from_json(cls, values: dict) -> DeviceSettings:
        amp_dtype = values["amp_dtype"]
        return cls(
            **{
                **values,
                "device": torch.device(values["device"]),
                "amp_dtype": getattr(torch, amp_dtype) if amp_dtype else None,
            }
        )


@dataclass
class TrainingResult:
    history: list[dict]
    best_epoch: int
    best_val_macro_f1: float
    epochs_run: int
    parameters: int
    resumed_from_epoch: int | None
    already_complete: bool
    stopped_early: bool
    wall_seconds: float
    best_checkpoint: Path
    latest_checkpoint: Path
    best_checkpoint_sha256: str
    notes: list[str] = field(default_factory=list)
    processes: int = 1

    def summary(self, settings: DeviceSettings) -> dict[str, Any]:
        """The run in plain values: the `trained_model` materialization metadata, figures aside."""
        return {
            "parameters": self.parameters,
            "device": str(settings.device),
            "mixed_precision": str(settings.amp_dtype) if settings.amp_dtype else "off",
            "processes": self.processes,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "best_epoch": self.best_epoch,
            "best_val_macro_f1": self.best_val_macro_f1,
            "resumed_from_epoch": self.resumed_from_epoch if self.resumed_from_epoch is not None else "no",
            "notes": "\n".join(self.notes) or "none",
            "wall_seconds": round(self.wall_seconds, 1),
            "checkpoint": str(self.best_checkpoint),
            "checkpoint_sha256": self.best_checkpoint_sha256,
        }


def stored_training_config(stored: dict[str, Any]) -> TrainingConfig:
    """The training config a checkpoint stored; options it predates take the value that reproduces what
    the older code did (not today's defaults)."""
    return TrainingConfig.model_validate({**_LEGACY_VALUES, **stored})


def training_fingerprint(config: TrainingConfig, store: RecordStore, splits: dict[str, list[int]]) -> str:
    """Hash of what determines the result: semantic config, the store's content and the split.

    The store's content fingerprint (or, for stores without one, its generation) stays the same
    when `processed_records` is re-materialized without changes, so resuming still works.
    """
    semantic = config.model_dump(exclude=_NON_SEMANTIC_FIELDS)
    for name, legacy in _LEGACY_VALUES.items():
        if semantic[name] == legacy:
            del semantic[name]
    content = store.metadata.get("content_fingerprint") or store.generation
    payload = json.dumps({"config": semantic, "store": content, "splits": splits}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def class_weights(labels: np.ndarray, n_classes: int, sample_weights: np.ndarray | None = None) -> np.ndarray:
    """Inverse-frequency weights (mean 1 over present classes); absent classes get 0.

    With `sample_weights` (how often the sampler draws each record), frequencies are those of the draws.
    """
    counts = np.bincount(labels, weights=sample_weights, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return weights


def cosine_with_warmup(total_steps: int, warmup_steps: int):
    """LR multiplier: linear warm-up to 1, then cosine decay to 0 at `total_steps`."""

    def multiplier(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return multiplier


def record_class_targets(store: RecordStore, labels: np.ndarray) -> tuple[torch.Tensor | None, np.ndarray]:
    """Training targets that carry each record's class vocabulary, when the store has per-record
    vocabularies (`record_class_masks` of a pooled store, `[n, classes]`).

    Returns the distinct vocabularies (bool `[v, classes]`, None without per-record vocabularies) and
    the targets `label + classes * vocabulary` (plain `labels` without), so batches need no extra
    element: `train_step` splits them again and masks the logits of the classes a record's dataset
    never labels, which then count neither for nor against it.
    """
    masks = getattr(store, "record_class_masks", None)
    if masks is None:
        return None, labels
    vocabularies, vocabulary = np.unique(np.asarray(masks, dtype=bool), axis=0, return_inverse=True)
    return torch.as_tensor(vocabularies), labels + len(LABELS) * vocabulary.reshape(-1).astype(np.int64)


def masked_logits(logits: torch.Tensor, class_mask: torch.Tensor) -> torch.Tensor:
    """Suppress classes absent from the training split."""
    return logits.masked_fill(~class_mask, ABSENT_CLASS_LOGIT)


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, batches: StoreBatches | WindowBatches, settings: DeviceSettings, class_mask: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, float]:
    """Class probabilities, true labels and mean cross-entropy per record of `batches` (in order).

    With `WindowBatches`, the probabilities of a record's windows are averaged. Batches that carry
    record-level features (their last element, see `core.data`) hand them to the model.
    """
    model.eval()
    n_records = len(batches.indices)
    probabilities = np.zeros((n_records, len(class_mask)), dtype=np.float64)
    windows = np.zeros(n_records, dtype=np.int64)
    labels = np.zeros(n_records, dtype=np.int64)
    start = 0
    for batch in batches:
        signals, targets = batch[0], batch[1]
        groups = batch[2] if isinstance(batches, WindowBatches) else np.arange(start, start + len(targets))
        start += len(targets)
        signals = signals.to(settings.device, non_blocking=settings.non_blocking)
        inputs = (signals,) if batches.features is None else (signals, batch[-1].to(settings.device))
        with _autocast(settings):
            logits = masked_logits(model(*inputs).float(), class_mask)
        np.add.at(probabilities, groups, torch.softmax(logits, dim=1).cpu().numpy())
        np.add.at(windows, groups, 1)
        labels[groups] = targets.numpy()
    if not n_records:
        return np.zeros((0, len(class_mask))), np.zeros(0, np.int64), 0.0
    probabilities /= np.maximum(windows, 1)[:, None]
    loss = -np.log(np.clip(probabilities[np.arange(n_records), labels], 1e-12, None)).mean()
    return probabilities, labels, float(loss)


def inference_batches(
    store: RecordStore,
    indices: Sequence[int],
    labels: np.ndarray,
    batch_size: int,
    config: dict | TrainingConfig,
    leads: Sequence[int] | None = None,
) -> WindowBatches:
    """Batches for validation, testing and prediction, as the checkpoint's training config says
    (`leads`: score on those leads only)."""
    config = config if isinstance(config, TrainingConfig) else stored_training_config(config)
    fs = store_rate(store)
    stride = round(config.inference_stride_s * fs)
    features = store_rhythm_features(store, leads, indices) if config.rhythm_features else None
    return WindowBatches(
        store, indices, labels, batch_size, stride, window_length(config, store), leads=leads, features=features
    )


def store_rate(store: RecordStore) -> float:
    """The sampling rate of a store's tensors (from its preprocessing settings)."""
    return float(store.metadata.get("preprocess", {}).get("target_fs", DEFAULT_FS))


def window_length(config: TrainingConfig, store: RecordStore) -> int:
    """Samples per training/inference row: `crop_s` at the store's rate, or its canonical length."""
    fs = store_rate(store)
    return round(config.crop_s * fs) if config.crop_s else store.row_shape[-1]


def _autocast(settings: DeviceSettings):
    enabled = settings.amp_dtype is not None
    return torch.autocast(device_type=settings.device.type, dtype=settings.amp_dtype, enabled=enabled)


class _Trainer:
    """The objects one training run needs, and the steps of the loop (see `train_model`).

    Across several ranks, the model is in DistributedDataParallel and each rank trains on its
    shard of every batch; `self.generator` (the epoch order) is seeded alike on every rank and
    draws nothing else, `self.rank_generator` (crops, shifts, noise) is each rank's own. With one
    process they are the same generator, so one process gives exactly the in-process run.
    """

    def __init__(
        self,
        store: RecordStore,
        splits: dict[str, list[int]],
        config: TrainingConfig,
        settings: DeviceSettings,
        ranks: Ranks = SINGLE_PROCESS,
    ):
        self.config, self.settings, self.ranks = config, settings, ranks
        ranks.per_rank_batch(config.batch_size)
        self.labels = store.index["label_index"].to_numpy(dtype=np.int64)
        train_idx, val_idx = np.asarray(splits["train"]), np.asarray(splits["val"])
        if len(train_idx) < 2:
            raise ValueError(f"training split has {len(train_idx)} record(s); need at least 2")
        self.train_counts = np.bincount(self.labels[train_idx], minlength=len(LABELS))
        self.class_mask = torch.as_tensor(self.train_counts > 0, device=settings.device)
        self.fingerprint = training_fingerprint(config, store, splits)
        self.preprocess = store.metadata.get("preprocess", {})

        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model = ranks.sync_batch_norm(ECGResNet1D(config.architecture()).to(settings.device))
        if ranks.world_size > 1:  # the same initial weights everywhere, then each rank its own dropout
            torch.manual_seed(ranks.own_seed(config.seed))
        self.rank_generator = (
            self.generator if ranks.world_size == 1 else torch.Generator().manual_seed(ranks.own_seed(config.seed))
        )
        # Rank 0 validates alone: through the bare (compiled) model, DDP's forward would wait for the others.
        self.inference_model = torch.compile(self.model) if settings.compile else self.model
        self.forward = ranks.data_parallel(self.inference_model)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        # A pooled store (`core.pooled`) may weight its datasets' draws and restrict each record's classes.
        mixing = store.mixing_weights(train_idx) if hasattr(store, "mixing_weights") else None
        weights = class_weights(self.labels[train_idx], len(LABELS), mixing)
        sample_weights = weights[self.labels[train_idx]] if config.balance == "sampler" else None
        if mixing is not None:
            sample_weights = mixing if sample_weights is None else sample_weights * mixing
        record_classes, train_targets = record_class_targets(store, self.labels)
        self.record_classes = None if record_classes is None else record_classes.to(settings.device)
        # Weights averaged over the steps (validated and saved instead of the raw weights), when configured.
        self.ema = ExponentialMovingAverage(self.model, config.ema_decay) if config.ema_decay else None
        fs = store_rate(store)
        self.train_batches = StoreBatches(
            store,
            train_idx,
            train_targets,
            config.batch_size,
            shuffle=True,
            weights=sample_weights,
            generator=self.generator,
            random_crops=config.random_crops,
            max_shift=round(config.max_shift_s * fs),
            length=window_length(config, store),
            rank=ranks.rank,
            world_size=ranks.world_size,
            augment_generator=self.rank_generator,
            features=store_rhythm_features(store) if config.rhythm_features else None,
        )
        self.val_batches = inference_batches(store, val_idx, self.labels, config.batch_size, config)
        masks = getattr(store, "record_class_masks", None)
        self.val_classes = None if masks is None else masks[val_idx]
        loss_weights = torch.as_tensor(weights, dtype=torch.float32) if config.balance == "loss_weights" else None
        self.criterion = nn.CrossEntropyLoss(
            weight=None if loss_weights is None else loss_weights.to(settings.device),
            label_smoothing=config.label_smoothing,
        )
        steps_per_epoch = math.ceil(len(self.train_batches) / config.grad_accumulation_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            cosine_with_warmup(config.epochs * steps_per_epoch, round(config.warmup_epochs * steps_per_epoch)),
        )
        self.scaler = torch.amp.GradScaler(settings.device.type, enabled=settings.amp_dtype == torch.float16)
        self.history: list[dict] = []
        self.best_f1, self.best_epoch = -1.0, 0
        self.finished = self.stopped_early = False

    @property
    def epoch(self) -> int:
        return len(self.history)

    @property
    def evaluated_model(self) -> nn.Module:
        """The weights that are validated and saved: the moving average when there is one."""
        return self.ema.model if self.ema is not None else self.inference_model

    def restore(self, latest: dict) -> str | None:
        """Continue exactly where `latest` stopped: weights, optimizer, schedule, scaler and RNGs.

        Several ranks restore their own random streams when `latest` was written by as many ranks;
        otherwise those streams restart (returned as a note): the run continues, not bit for bit.
        """
        self.model.load_state_dict(latest.get("training_model_state", latest["model_state"]))
        if self.ema is not None:
            self.ema.load_state_dict({"model_state": latest["model_state"], "updates": latest["ema_updates"]})
        self.optimizer.load_state_dict(latest["optimizer_state"])
        self.scheduler.load_state_dict(latest["scheduler_state"])
        self.scaler.load_state_dict(latest["scaler_state"])
        self._set_random_state(latest)
        self.generator.set_state(latest["generator_state"])
        self.history = list(latest["history"])
        self.best_f1, self.best_epoch = float(latest["best_val_macro_f1"]), int(latest["best_epoch"])
        self.finished, self.stopped_early = bool(latest["finished"]), bool(latest["stopped_early"])
        rank_states = latest.get("rank_states") or []  # written by runs of more than one rank
        writers = max(len(rank_states), 1)
        if writers != self.ranks.world_size:
            self._reseed_rank_streams()
            return (
                f"latest.pth was written by {writers} process(es), this run has {self.ranks.world_size}: "
                "augmentation and dropout random streams restart"
            )
        if rank_states:
            self._set_random_state(rank_states[self.ranks.rank])
            self.rank_generator.set_state(rank_states[self.ranks.rank]["generator_state"])
        return None

    def _set_random_state(self, state: dict) -> None:
        torch.set_rng_state(state["rng_state"])
        if self.settings.device.type == "cuda" and state.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(state["cuda_rng_state"], self.settings.device)

    def _random_state(self, generator: torch.Generator) -> dict:
        return {
            "rng_state": torch.get_rng_state(),
            "generator_state": generator.get_state(),
            "cuda_rng_state": (
                torch.cuda.get_rng_state(self.settings.device) if self.settings.device.type == "cuda" else None
            ),
        }

    def _reseed_rank_streams(self) -> None:
        if self.ranks.world_size > 1:
            torch.manual_seed(self.ranks.own_seed(self.config.seed))
            self.rank_generator.manual_seed(self.ranks.own_seed(self.config.seed))

    def _augmented_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches, augmented (and pinned for an asynchronous GPU copy when configured).

        Every random draw (order, crops, shifts, noise) comes from `self.generator`, in one thread,
        so a run is reproducible and resumable even when batches are prefetched.
        """
        for batch in self.train_batches:
            signals, targets = batch[0], batch[1]
            signals = augment(signals, self.config.noise_std, self.config.scale_range, self.rank_generator)
            signals = drop_leads(signals, self.config.lead_dropout, self.rank_generator)
            signals = flip_polarity(signals, self.config.flip_probability, self.rank_generator)
            if self.settings.pin_memory:
                signals, targets = signals.pin_memory(), targets.pin_memory()
            yield (signals, targets, *batch[2:])

    def train_step(
        self, signals: torch.Tensor, targets: torch.Tensor, step: int, last: bool, rhythm: torch.Tensor | None = None
    ) -> float:
        """Forward and backward on one batch; steps the optimizer every `grad_accumulation_steps`."""
        settings = self.settings
        signals = signals.to(settings.device, non_blocking=settings.non_blocking)
        targets = targets.to(settings.device, non_blocking=settings.non_blocking)
        inputs = (signals,) if rhythm is None else (signals, rhythm.to(settings.device))
        optimizer_step = step % self.config.grad_accumulation_steps == 0 or last
        # Across ranks, gradients are averaged once per optimizer step, not after every accumulated batch.
        accumulate = self.forward.no_sync() if self.ranks.distributed and not optimizer_step else nullcontext()
        with accumulate:
            with _autocast(settings):
                class_mask = self.class_mask
                if self.record_classes is not None:  # targets carry the record's class vocabulary
                    class_mask = class_mask & self.record_classes[targets // len(LABELS)]
                    targets = targets % len(LABELS)
                if self.config.rhythm_features and self.config.rhythm_aux_weight > 0:
                    logits, auxiliary = self.forward(*inputs, auxiliary=True)
                    loss = self.criterion(masked_logits(logits.float(), class_mask), targets)
                    auxiliary = masked_logits(auxiliary.float(), class_mask)
                    loss = loss + self.config.rhythm_aux_weight * self.criterion(auxiliary, targets)
                else:
                    loss = self.criterion(masked_logits(self.forward(*inputs).float(), class_mask), targets)
            self.scaler.scale(loss / self.config.grad_accumulation_steps).backward()
        if optimizer_step:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
        return loss.item()

    def train_one_epoch(self, max_batches: int | None = None) -> float:
        """One pass over the training batches (or the first `max_batches`); returns the mean training loss."""
        config = self.config
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        running_loss, seen, started = 0.0, 0, time.perf_counter()
        batches = prefetch(self._augmented_batches(), self.settings.prefetch_batches)
        for step, (signals, targets, *rhythm) in enumerate(batches, start=1):
            if max_batches is not None and step > max_batches:
                break
            if len(targets) < 2:  # BatchNorm needs more than one sample
                continue
            last = step == len(self.train_batches)
            loss = self.train_step(signals, targets, step, last, rhythm[0] if rhythm else None)
            running_loss += loss * len(targets)
            seen += len(targets)
            if step % config.log_every_batches == 0:
                logger.info(
                    "epoch %d batch %d/%d loss %.4f (%.1f samples/s)",
                    self.epoch + 1,
                    step,
                    len(self.train_batches),
                    running_loss / seen,
                    seen / (time.perf_counter() - started),
                )
        running_loss, seen = self.ranks.sum([running_loss, seen])
        return running_loss / max(seen, 1)

    def validate(self) -> tuple[float, float]:
        """Validation loss and macro F1 over the classes present in training."""
        probabilities, y_val, val_loss = predict_probabilities(
            self.evaluated_model, self.val_batches, self.settings, self.class_mask
        )
        if self.record_classes is not None:  # a record is predicted among the classes its dataset labels
            probabilities = probabilities * self.val_classes
        return val_loss, macro_f1(y_val, probabilities.argmax(axis=1), np.flatnonzero(self.train_counts))

    def end_epoch(self, record: dict) -> bool:
        """Record an epoch; returns True when it is the best so far.

        With `selection="last"`, or without a validation split (its metrics are None), the last epoch is kept.
        """
        self.history.append(record)
        keep_last = self.config.selection == "last" or record["val_macro_f1"] is None
        if keep_last:
            improved = self.epoch == self.config.epochs
        else:
            improved = record["val_macro_f1"] > self.best_f1
        if improved:
            self.best_f1, self.best_epoch = record["val_macro_f1"] or 0.0, self.epoch
        patience = 0 if keep_last else self.config.early_stopping_patience
        self.stopped_early = bool(patience and self.epoch - self.best_epoch >= patience)
        self.finished = self.stopped_early or self.epoch == self.config.epochs
        return improved

    def checkpoint(self, full: bool) -> dict:
        """Checkpoint payload; `full` adds what resuming needs (optimizer, schedule, scaler, RNGs).

        On several ranks, `full` gathers every rank's own random state: all ranks must call it.
        """
        payload = {
            "epoch": self.epoch,
            "fingerprint": self.fingerprint,
            "model_state": (self.ema.model if self.ema is not None else self.model).state_dict(),
            "model_config": self.config.architecture().model_dump(),
            "training_config": self.config.model_dump(),
            "preprocess": self.preprocess,
            "classes": list(LABELS),
            "class_mask": self.class_mask.cpu().tolist(),
            "best_val_macro_f1": self.best_f1,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "finished": self.finished,
            "stopped_early": self.stopped_early,
        }
        if full:
            payload.update(
                optimizer_state=self.optimizer.state_dict(),
                scheduler_state=self.scheduler.state_dict(),
                scaler_state=self.scaler.state_dict(),
                **self._random_state(self.generator),
            )
            if self.ema is not None:  # the raw weights go on training; model_state is their average
                payload.update(training_model_state=self.model.state_dict(), ema_updates=self.ema.updates)
            if self.ranks.world_size > 1:
                payload["rank_states"] = self.ranks.all_gather(self._random_state(self.rank_generator))
        return payload


def _resume_notes(trainer: _Trainer, latest_path: Path, config: TrainingConfig) -> list[str]:
    """Restore `trainer` from `latest.pth` when it matches; returns what happened, for the log."""
    if not config.resume or not latest_path.is_file():
        return []
    latest = load_checkpoint(latest_path)
    if latest.get("fingerprint") != trainer.fingerprint:
        return ["latest.pth was trained with another config or data; starting fresh"]
    caveat = trainer.restore(latest)
    if trainer.finished:
        note = (
            f"latest.pth already holds a finished run (epoch {trainer.epoch}) with this config and data; not retraining"
        )
    else:
        note = f"resuming from latest.pth after epoch {trainer.epoch}"
    return [note, caveat] if caveat else [note]


def train_model(
    store: RecordStore,
    splits: dict[str, list[int]],
    config: TrainingConfig,
    settings: DeviceSettings,
    models_dir: Path,
    log_file: Path,
    ranks: Ranks = SINGLE_PROCESS,
) -> TrainingResult:
    """Train on `splits["train"]`, select on `splits["val"]` macro F1, keep best and latest checkpoints.

    Resumes from `latest.pth` when its fingerprint (config, data, split) matches; a finished
    matching run is reported without retraining; any change starts fresh and says so.

    Under torchrun, every rank calls this with its `ranks` (see `torchrun_process_group`) and the
    same arguments: each trains on its shard of every batch (`batch_size` stays the global batch),
    rank 0 alone validates and writes checkpoints and the log, the others wait for its verdict.
    """
    started = time.perf_counter()
    models_dir.mkdir(parents=True, exist_ok=True)
    best_path, latest_path = models_dir / BEST_CHECKPOINT, models_dir / LATEST_CHECKPOINT
    trainer = _Trainer(store, splits, config, settings, ranks)
    notes = _resume_notes(trainer, latest_path, config)
    resumed_from = trainer.epoch if trainer.history else None
    already_complete = trainer.finished
    for message in notes:
        logger.info(message)
    parameters = count_parameters(trainer.model)
    logger.info(
        "training ECGResNet1D (%d parameters) on %s%s%s: %d train / %d val records, %d epochs",
        parameters,
        settings.device,
        f" with {settings.amp_dtype} autocast" if settings.amp_dtype else "",
        f", {ranks.world_size} processes of {ranks.per_rank_batch(config.batch_size)} records per batch"
        if ranks.distributed
        else "",
        len(splits["train"]),
        len(splits["val"]),
        config.epochs,
    )
    while not trainer.finished:
        epoch_started = time.perf_counter()
        train_loss = trainer.train_one_epoch()
        record = None
        if ranks.is_main:
            val_loss, val_f1 = trainer.validate() if len(splits["val"]) else (None, None)
            record = {
                "epoch": trainer.epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_macro_f1": val_f1,
                "learning_rate": trainer.optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - epoch_started,
            }
        record = ranks.broadcast(record)
        improved = trainer.end_epoch(record)
        latest = trainer.checkpoint(full=True)
        if not ranks.is_main:
            continue
        if improved:
            save_checkpoint(best_path, trainer.checkpoint(full=False))
        save_checkpoint(latest_path, latest)
        logger.info(
            "epoch %d/%d train_loss %.4f val_loss %s val_macro_f1 %s lr %.2e (%.1f s)%s",
            trainer.epoch,
            config.epochs,
            train_loss,
            _optional(record["val_loss"]),
            _optional(record["val_macro_f1"]),
            record["learning_rate"],
            record["seconds"],
            " *best*" if improved else "",
        )
        _write_training_log(
            log_file, config, settings, trainer.history, trainer.best_epoch, trainer.best_f1, resumed_from, notes
        )
        if trainer.stopped_early:
            logger.info("early stopping: no better val macro F1 for %d epochs", config.early_stopping_patience)
    if already_complete and ranks.is_main:
        _write_training_log(
            log_file, config, settings, trainer.history, trainer.best_epoch, trainer.best_f1, resumed_from, notes
        )
    ranks.barrier()  # rank 0's last checkpoint is on disk
    return TrainingResult(
        history=trainer.history,
        best_epoch=trainer.best_epoch,
        best_val_macro_f1=trainer.best_f1,
        epochs_run=trainer.epoch,
        parameters=parameters,
        resumed_from_epoch=resumed_from,
        already_complete=already_complete,
        stopped_early=trainer.stopped_early,
        wall_seconds=time.perf_counter() - started,
        best_checkpoint=best_path,
        latest_checkpoint=latest_path,
        best_checkpoint_sha256=file_sha256(best_path),
        notes=notes,
        processes=ranks.world_size,
    )


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def read_training_log(path: Path) -> dict[str, Any]:
    """A `training_log.json` as `_write_training_log` wrote it: config, device, notes and every epoch (`epochs`)."""
    return read_json(path)


def _write_training_log(
    path: Path,
    config: TrainingConfig,
    settings: DeviceSettings,
    history: list[dict],
    best_epoch: int,
    best_f1: float,
    resumed_from: int | None,
    notes: list[str],
) -> None:
    atomic_write_json(
        path,
        {
            "config": config.model_dump(),
            "device": str(settings.device),
            "amp_dtype": str(settings.amp_dtype) if settings.amp_dtype else None,
            "best_epoch": best_epoch,
            "best_val_macro_f1": best_f1,
            "resumed_from_epoch": resumed_from,
            "notes": notes,
            "epochs": history,
        },
    )
