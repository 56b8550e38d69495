"""Fold ensembles: k networks, each trained on k-1 folds of train+val and validated on the remaining one.

`train_model` hands a config with `members > 1` to `train_ensemble`. The records of the train and
val splits are pooled and cut into `members` stratified folds; member `j` trains on every fold but
`j` (with seed `seed + j`) in `models_dir/member-j/`, with its own checkpoints, so an interrupted
ensemble resumes member by member. Each member's validation probabilities on its own fold are
out-of-fold predictions: together they score every pooled record once, an honest estimate of one
member's quality that costs no extra training. The members are then saved together as one
checkpoint (`best.pth`, an `EnsembleModel` whose output averages their probabilities), which
evaluation and prediction load like any other.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from ecg_assets.core.checkpoints import file_sha256, load_checkpoint, save_checkpoint
from ecg_assets.core.distributed import SINGLE_PROCESS, Ranks
from ecg_assets.core.labels import LABELS
from ecg_assets.core.metrics import macro_f1
from ecg_assets.core.model import build_model, count_parameters
from ecg_assets.core.storage import atomic_write_json
from ecg_assets.core.store import RecordStore
from ecg_assets.core.training import (
    BEST_CHECKPOINT,
    DeviceSettings,
    TrainingConfig,
    TrainingResult,
    train_model,
    training_fingerprint,
)

logger = logging.getLogger(__name__)

MEMBER_DIR = "member-{index}"


def member_folds(labels: np.ndarray, positions: np.ndarray, members: int, seed: int) -> list[np.ndarray]:
    """`positions` cut into `members` folds stratified by `labels[positions]` (sorted store positions each).

    A class with fewer records than folds cannot be stratified; such records are spread in turn.
    """
    positions = np.sort(np.asarray(positions, dtype=np.int64))
    if len(positions) < members:
        raise ValueError(f"{len(positions)} train+val records cannot make {members} ensemble folds")
    classes = labels[positions]
    counts = np.bincount(classes, minlength=len(LABELS))
    strata = np.where(counts[classes] >= members, classes, -1)  # rare classes share one stratum
    if np.count_nonzero(strata == -1) and np.count_nonzero(strata == -1) < members:
        strata = np.where(strata == -1, np.bincount(classes).argmax(), strata)
    splitter = StratifiedKFold(members, shuffle=True, random_state=seed)
    return [np.sort(positions[held_out]) for _, held_out in splitter.split(positions, strata)]


def train_ensemble(
    store: RecordStore,
    splits: dict[str, list[int]],
    config: TrainingConfig,
    settings: DeviceSettings,
    models_dir: Path,
    log_file: Path,
    ranks: Ranks = SINGLE_PROCESS,
) -> TrainingResult:
    """Train `config.members` fold members on train+val and save them as one ensemble checkpoint."""
    started = time.perf_counter()
    labels = store.index["label_index"].to_numpy(dtype=np.int64)
    pool = np.union1d(np.asarray(splits["train"], np.int64), np.asarray(splits["val"], np.int64))
    folds = member_folds(labels, pool, config.members, config.seed)
    results: list[TrainingResult] = []
    for index, fold in enumerate(folds):
        member_dir = models_dir / MEMBER_DIR.format(index=index)
        member_config = config.model_copy(update={"members": 1, "seed": config.seed + index})
        member_splits = {"train": np.setdiff1d(pool, fold).tolist(), "val": fold.tolist(), "test": []}
        logger.info(
            "ensemble member %d/%d: %d train / %d held-out records",
            index + 1,
            len(folds),
            len(member_splits["train"]),
            len(fold),
        )
        results.append(
            train_model(
                store, member_splits, member_config, settings, member_dir, member_dir / "training_log.json", ranks
            )
        )
    best_path = models_dir / BEST_CHECKPOINT
    summary: dict = {}
    if ranks.is_main:
        summary = _save_ensemble(store, splits, config, folds, results, labels, best_path)
        atomic_write_json(log_file, summary)
    summary = ranks.broadcast(summary)
    ranks.barrier()
    return TrainingResult(
        history=summary["history"],
        best_epoch=summary["best_epoch"],
        best_val_macro_f1=summary["out_of_fold_macro_f1"],
        epochs_run=max(result.epochs_run for result in results),
        parameters=sum(result.parameters for result in results),
        resumed_from_epoch=results[0].resumed_from_epoch,
        already_complete=all(result.already_complete for result in results),
        stopped_early=any(result.stopped_early for result in results),
        wall_seconds=time.perf_counter() - started,
        best_checkpoint=best_path,
        latest_checkpoint=results[-1].latest_checkpoint,
        best_checkpoint_sha256=file_sha256(best_path),
        notes=[f"member {index}: {note}" for index, result in enumerate(results) for note in result.notes]
        + [f"{len(results)} fold members; out-of-fold macro F1 {summary['out_of_fold_macro_f1']:.4f}"],
        processes=ranks.world_size,
    )


def _save_ensemble(
    store: RecordStore,
    splits: dict[str, list[int]],
    config: TrainingConfig,
    folds: list[np.ndarray],
    results: list[TrainingResult],
    labels: np.ndarray,
    best_path: Path,
) -> dict:
    """Write the members as one checkpoint; returns the ensemble's log (out-of-fold scores, members)."""
    checkpoints = [load_checkpoint(result.best_checkpoint) for result in results]
    n_classes = len(LABELS)
    out_of_fold = np.full((len(labels), n_classes), np.nan)
    for fold, checkpoint in zip(folds, checkpoints):
        if "val_probabilities" in checkpoint and len(checkpoint["val_probabilities"]) == len(fold):
            out_of_fold[fold] = checkpoint["val_probabilities"].numpy()
    scored = np.concatenate(folds)
    scored = scored[~np.isnan(out_of_fold[scored]).any(axis=1)]
    class_mask = np.any([checkpoint["class_mask"] for checkpoint in checkpoints], axis=0)
    trained = np.flatnonzero(class_mask)
    oof_f1 = macro_f1(labels[scored], out_of_fold[scored].argmax(axis=1), trained) if len(scored) else 0.0
    oof_loss = float(-np.log(np.clip(out_of_fold[scored, labels[scored]], 1e-12, None)).mean()) if len(scored) else 0.0
    architecture = config.architecture().model_copy(update={"members": len(results)})
    model = build_model(architecture)
    model.load_state_dict(
        {
            f"members.{index}.{name}": value
            for index, checkpoint in enumerate(checkpoints)
            for name, value in checkpoint["model_state"].items()
        }
    )
    history = _mean_history([checkpoint["history"] for checkpoint in checkpoints], oof_loss, oof_f1)
    payload = {
        "epoch": len(history),
        "fingerprint": training_fingerprint(config, store, splits),
        "model_state": model.state_dict(),
        "model_config": architecture.model_dump(),
        "training_config": config.model_dump(),
        "preprocess": checkpoints[0]["preprocess"],
        "classes": list(LABELS),
        "class_mask": class_mask.tolist(),
        "best_val_macro_f1": oof_f1,
        "best_epoch": len(history),
        "history": history,
        "finished": True,
        "stopped_early": False,
        "members": [
            {"best_epoch": int(checkpoint["best_epoch"]), "val_macro_f1": float(checkpoint["best_val_macro_f1"])}
            for checkpoint in checkpoints
        ],
    }
    save_checkpoint(best_path, payload)
    logger.info(
        "ensemble of %d members (%d parameters) saved to %s; out-of-fold macro F1 %.4f on %d records",
        len(results),
        count_parameters(model),
        best_path,
        oof_f1,
        len(scored),
    )
    return {
        "config": config.model_dump(),
        "members": payload["members"],
        "folds": [fold.tolist() for fold in folds],
        "out_of_fold_records": int(len(scored)),
        "out_of_fold_macro_f1": oof_f1,
        "out_of_fold_loss": oof_loss,
        "out_of_fold_probabilities": {int(p): out_of_fold[p].round(5).tolist() for p in scored},
        "history": history,
        "best_epoch": len(history),
    }


def _mean_history(histories: list[list[dict]], oof_loss: float, oof_f1: float) -> list[dict]:
    """Per epoch: the members' mean training loss and learning rate; validation: the out-of-fold scores
    after the last epoch (members select their own epochs, so earlier rows carry none)."""
    epochs = min(len(history) for history in histories)
    rows = []
    for epoch in range(epochs):
        records = [history[epoch] for history in histories]
        rows.append(
            {
                "epoch": epoch + 1,
                "train_loss": float(np.mean([record["train_loss"] for record in records])),
                "val_loss": None,
                "val_macro_f1": None,
                "learning_rate": float(np.mean([record["learning_rate"] for record in records])),
                "seconds": float(np.sum([record["seconds"] for record in records])),
            }
        )
    if rows:
        rows[-1].update(val_loss=oof_loss, val_macro_f1=oof_f1)
    return rows
