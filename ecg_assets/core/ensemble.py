"""`fit_model`: one model, or a cross-validated ensemble shipped as one checkpoint.

With `ensemble_members: k` (k >= 2), the train and validation splits are pooled and cut into k
folds (stratified by label, each patient in one fold). Member i trains on the other k-1 folds and
selects its epoch on fold i. Every pooled record is then scored by the one member that never
trained on it: these out-of-fold predictions give a cross-validated estimate over the whole pool
(about 9x more records than the validation split alone), with a bootstrap interval. The members'
best checkpoints are assembled into `best.pth`, which `core/scoring.py` loads as one model that
averages their probabilities; the test split is never touched here.

Each member keeps its own `member-i/best.pth`, `latest.pth` and `training_log.json`, so a killed
run resumes inside the member it was training, and finished members are not trained again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecg_assets.core.atomic_io import atomic_write_json
from ecg_assets.core.checkpoints import file_sha256, load_checkpoint, save_checkpoint
from ecg_assets.core.ddp import SINGLE_PROCESS, Ranks
from ecg_assets.core.labels import LABELS
from ecg_assets.core.metrics import bootstrap_intervals, classification_metrics
from ecg_assets.core.scoring import load_scoring_model, score_positions
from ecg_assets.core.splits import cross_validation_folds
from ecg_assets.core.store import RecordStore
from ecg_assets.core.training import BEST_CHECKPOINT, DeviceSettings, TrainingConfig, TrainingResult, train_model

logger = logging.getLogger(__name__)

MEMBER_DIR = "member-{number}"
# Seeds of the members: the configured seed, then one more per member (different initialisations).
ENSEMBLE_FORMAT = "ecg_assets.ensemble/1"


@dataclass
class MemberResult:
    """One trained member: its fold, how many records it trained and selected on, its training result."""

    number: int
    train_records: int
    val_records: int
    result: TrainingResult


@dataclass
class FitResult:
    """What `fit_model` produced: `members` has one entry for a single model."""

    members: list[MemberResult]
    best_checkpoint: Path
    best_checkpoint_sha256: str
    cross_validation: dict[str, Any] | None
    wall_seconds: float

    @property
    def is_ensemble(self) -> bool:
        return self.cross_validation is not None

    def summary(self, settings: DeviceSettings) -> dict[str, Any]:
        """The run in plain values: the `trained_model` materialization metadata, figures aside."""
        first = self.members[0].result
        summary = first.summary(settings)
        summary.update(
            members=len(self.members),
            wall_seconds=round(self.wall_seconds, 1),
            checkpoint=str(self.best_checkpoint),
            checkpoint_sha256=self.best_checkpoint_sha256,
        )
        if self.is_ensemble:
            assert self.cross_validation is not None
            summary.update(
                parameters=first.parameters,
                parameters_total=first.parameters * len(self.members),
                epochs_run=sum(member.result.epochs_run for member in self.members),
                best_epoch=", ".join(str(member.result.best_epoch) for member in self.members),
                best_val_macro_f1=round(float(np.mean([m.result.best_val_macro_f1 for m in self.members])), 4),
                cv_macro_f1=round(self.cross_validation["macro_f1"], 4),
                cv_macro_f1_95ci=self.cross_validation["intervals"]["macro_f1"],
                cv_records=self.cross_validation["n_samples"],
                resumed_from_epoch=", ".join(str(m.result.resumed_from_epoch or "no") for m in self.members),
                notes="\n".join(note for m in self.members for note in m.result.notes) or "none",
                stopped_early=any(member.result.stopped_early for member in self.members),
            )
        return summary

    def member_rows(self) -> list[dict[str, Any]]:
        """One row per member for a table: fold sizes, epochs, best epoch and validation F1, checkpoint."""
        return [
            {
                "member": member.number,
                "train_records": member.train_records,
                "val_records": member.val_records,
                "epochs_run": member.result.epochs_run,
                "best_epoch": member.result.best_epoch,
                "best_val_macro_f1": round(member.result.best_val_macro_f1, 4),
                "checkpoint_sha256": member.result.best_checkpoint_sha256[:12],
            }
            for member in self.members
        ]


def member_splits(
    store: RecordStore, splits: dict[str, list[int]], members: int, seed: int
) -> list[dict[str, list[int]]]:
    """The `{"train", "val"}` positions of each member: the pooled train+val split cut into `members` folds."""
    pool = np.asarray(sorted([*splits["train"], *splits["val"]]), dtype=np.int64)
    labels = store.index["label"].to_numpy()[pool].tolist()
    patients = store.index["patient_id"].to_numpy()[pool].tolist() if "patient_id" in store.index else None
    folds = cross_validation_folds(labels, patients, members, seed)
    result = []
    for fold in folds:
        held_out = set(fold)
        result.append(
            {
                "train": [int(pool[i]) for i in range(len(pool)) if i not in held_out],
                "val": [int(pool[i]) for i in fold],
            }
        )
    return result


def fit_model(
    store: RecordStore,
    splits: dict[str, list[int]],
    config: TrainingConfig,
    settings: DeviceSettings,
    models_dir: Path,
    log_file: Path,
    ranks: Ranks = SINGLE_PROCESS,
) -> FitResult:
    """Train one model (`config.ensemble_members` <= 1) or a cross-validated ensemble (see the module docstring).

    Under torchrun every rank calls this with the same arguments: each member is trained by all
    ranks together; rank 0 alone scores the folds and writes the assembled checkpoint and the log.
    """
    started = time.perf_counter()
    if config.ensemble_members <= 1:
        result = train_model(store, splits, config, settings, models_dir, log_file, ranks)
        member = MemberResult(1, len(splits["train"]), len(splits["val"]), result)
        return FitResult([member], result.best_checkpoint, result.best_checkpoint_sha256, None, result.wall_seconds)

    folds = member_splits(store, splits, config.ensemble_members, config.seed)
    members: list[MemberResult] = []
    for number, fold in enumerate(folds, start=1):
        member_dir = models_dir / MEMBER_DIR.format(number=number)
        logger.info(
            "ensemble member %d/%d: %d train / %d validation records (fold %d of the pooled train+val split)",
            number,
            len(folds),
            len(fold["train"]),
            len(fold["val"]),
            number,
        )
        member_config = config.model_copy(update={"seed": config.seed + number - 1})
        result = train_model(store, fold, member_config, settings, member_dir, member_dir / "training_log.json", ranks)
        members.append(MemberResult(number, len(fold["train"]), len(fold["val"]), result))

    best_path = models_dir / BEST_CHECKPOINT
    summary: dict[str, Any] | None = None
    if ranks.is_main:
        cross_validation = _out_of_fold_metrics(store, folds, members, settings)
        _assemble(best_path, config, members, cross_validation)
        _write_ensemble_log(log_file, config, settings, members, cross_validation)
        low, high = cross_validation["intervals"]["macro_f1"]
        logger.info(
            "ensemble of %d: cross-validated macro F1 %.4f (95%% CI %.4f-%.4f) over %d out-of-fold records",
            len(members),
            cross_validation["macro_f1"],
            low,
            high,
            cross_validation["n_samples"],
        )
        summary = cross_validation
    cross_validation = ranks.broadcast(summary)
    ranks.barrier()
    return FitResult(members, best_path, file_sha256(best_path), cross_validation, time.perf_counter() - started)


def _out_of_fold_metrics(
    store: RecordStore, folds: list[dict[str, list[int]]], members: list[MemberResult], settings: DeviceSettings
) -> dict[str, Any]:
    """Each pooled record scored by the member that did not train on it; metrics over all of them."""
    y_true, y_pred = [], []
    classes: set[int] = set()
    for fold, member in zip(folds, members):
        scoring = load_scoring_model(member.result.best_checkpoint, settings.device)
        probabilities, labels, _ = score_positions(scoring, store, fold["val"], settings)
        y_true.append(labels)
        y_pred.append(probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64))
        classes |= set(scoring.trained_classes)
    true, pred = np.concatenate(y_true), np.concatenate(y_pred)
    scored = sorted(classes & set(np.unique(true).tolist()))
    metrics = classification_metrics(true, pred, LABELS, scored)
    metrics["intervals"] = bootstrap_intervals(true, pred, LABELS, scored)
    metrics["method"] = f"out-of-fold predictions of {len(members)} members over the pooled train+val split"
    return metrics


def _assemble(
    path: Path, config: TrainingConfig, members: list[MemberResult], cross_validation: dict[str, Any]
) -> None:
    """Write the members' best checkpoints as one ensemble checkpoint (what `load_scoring_model` reads)."""
    payloads = [load_checkpoint(member.result.best_checkpoint) for member in members]
    class_mask = np.any([payload["class_mask"] for payload in payloads], axis=0).tolist()
    first = payloads[0]
    save_checkpoint(
        path,
        {
            "ensemble": ENSEMBLE_FORMAT,
            "members": [
                {
                    "number": member.number,
                    "model_state": payload["model_state"],
                    "model_config": payload["model_config"],
                    "class_mask": payload["class_mask"],
                    "epoch": payload["epoch"],
                    "best_val_macro_f1": payload["best_val_macro_f1"],
                    "train_records": member.train_records,
                    "val_records": member.val_records,
                    "fingerprint": payload["fingerprint"],
                }
                for member, payload in zip(members, payloads)
            ],
            "model_config": first["model_config"],
            "training_config": config.model_dump(),
            "preprocess": first["preprocess"],
            "classes": list(LABELS),
            "class_mask": class_mask,
            "epoch": max(int(payload["epoch"]) for payload in payloads),
            "history": first["history"],
            "cross_validation": {key: cross_validation[key] for key in ("macro_f1", "n_samples", "intervals")},
        },
    )


def _write_ensemble_log(
    path: Path,
    config: TrainingConfig,
    settings: DeviceSettings,
    members: list[MemberResult],
    cross_validation: dict[str, Any],
) -> None:
    atomic_write_json(
        path,
        {
            "config": config.model_dump(),
            "device": str(settings.device),
            "amp_dtype": str(settings.amp_dtype) if settings.amp_dtype else None,
            "members": [
                {
                    "member": member.number,
                    "train_records": member.train_records,
                    "val_records": member.val_records,
                    "best_epoch": member.result.best_epoch,
                    "best_val_macro_f1": member.result.best_val_macro_f1,
                    "resumed_from_epoch": member.result.resumed_from_epoch,
                    "notes": member.result.notes,
                    "epochs": member.result.history,
                }
                for member in members
            ],
            "cross_validation": {
                key: cross_validation[key]
                for key in ("macro_f1", "micro_f1", "weighted_f1", "accuracy", "n_samples", "per_class", "intervals")
            }
            | {"confusion_matrix": cross_validation["confusion_matrix"], "classes": cross_validation["classes"]},
            # The first member's epochs, for readers that expect one history (plots show every member).
            "epochs": members[0].result.history,
        },
    )


def training_histories(log: dict[str, Any]) -> dict[str, list[dict]]:
    """`{run name: epoch records}` of a `training_log.json`: one entry per ensemble member, or the single run."""
    if log.get("members"):
        return {f"member {member['member']}": member["epochs"] for member in log["members"]}
    return {"": log.get("epochs", [])}
