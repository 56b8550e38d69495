"""Score recordings a model has never seen (the logic behind `python -m ecg_assets.predict`).

The input folder is read in any dataset format the pipeline supports, labelled or not (a folder of
new recordings has no REFERENCE: its records are scored all the same), and every record goes
through the exact preprocessing the model was trained with (the settings stored in the
checkpoint, the same `RecordPreparer` as `processed_records`, the same float16 storage and
the same multi-window inference). The CSV has one row per record: `record_id`,
`predicted_label`, one `p_<class>` column per class the model was trained on, and `error`
(empty when the record was scored; the reason otherwise).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError

from ecg_assets.core.atomic_io import atomic_write_text
from ecg_assets.core.checkpoints import CheckpointError, load_checkpoint
from ecg_assets.core.datasets import scan_dataset
from ecg_assets.core.labels import LABELS
from ecg_assets.core.model import build_model
from ecg_assets.core.preprocessing import RecordPreparer, RecordProcessingConfig, failure_reason, mask_string
from ecg_assets.core.signal import LEAD_ORDER
from ecg_assets.core.store import RecordStoreWriter
from ecg_assets.core.training import DeviceSettings, TrainingConfig, inference_batches, predict_probabilities

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("model_state", "model_config", "training_config", "preprocess", "classes", "class_mask")


@dataclass
class LoadedModel:
    """A checkpoint ready to score: the model, its classes and the settings it was trained with."""

    model: torch.nn.Module
    class_mask: torch.Tensor
    preprocess: RecordProcessingConfig
    training: TrainingConfig

    @property
    def class_names(self) -> list[str]:
        return [label for label, present in zip(LABELS, self.class_mask.tolist()) if present]


@dataclass
class PredictionReport:
    scored: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (record id or file, reason)
    output: Path | None = None


def load_model(path: Path, device: torch.device, expected_sha256: str | None = None) -> LoadedModel:
    """Load a checkpoint (`weights_only`), refusing one this code cannot use (or whose SHA-256 differs from
    `expected_sha256`, when given), with the reason."""
    checkpoint = load_checkpoint(path, map_location=device, expected_sha256=expected_sha256)
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: not a model checkpoint of this pipeline")
    if list(checkpoint["classes"]) != list(LABELS):
        raise CheckpointError(f"{path} predicts classes {checkpoint['classes']}, this code knows {list(LABELS)}")
    try:
        preprocess = RecordProcessingConfig.model_validate(checkpoint["preprocess"] or {})
        training = TrainingConfig.model_validate(checkpoint["training_config"])
        model = build_model(checkpoint["model_config"]).to(device)
        model.load_state_dict(checkpoint["model_state"])
    except (ValidationError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} does not match this code's model or settings: {error}") from error
    model.eval()
    return LoadedModel(model, torch.as_tensor(checkpoint["class_mask"], device=device), preprocess, training)


def predict_folder(
    model_path: Path,
    input_dir: Path,
    output_csv: Path,
    device: str = "cpu",
    batch_size: int = 64,
    expected_sha256: str | None = None,
) -> PredictionReport:
    """Score every record of `input_dir` with the checkpoint at `model_path`; write `output_csv`.

    Labels play no part: records without one (or excluded from training for a label reason) are
    scored too. Unreadable records (and files the format could not match to a record) are written with
    their reason in the `error` column and logged; they are never dropped silently. With
    `expected_sha256` (e.g. the `checkpoint_sha256` of the `trained_model` materialization), a
    checkpoint whose hash differs is refused. A folder that cannot be read as a dataset raises one of
    `datasets.DATASET_ERRORS`, with the reason.
    """
    settings = DeviceSettings(device=torch.device(device))
    loaded = load_model(model_path, settings.device, expected_sha256)
    dataset_format, scan = scan_dataset(input_dir)
    failures = list(scan.problems)
    config = loaded.preprocess
    preparer = RecordPreparer(config)
    scored_ids: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="ecg-predict-") as scratch:
        with RecordStoreWriter(Path(scratch), (len(LEAD_ORDER), config.target_length)) as writer:
            for entry in scan.entries:
                if entry.record_id in scored_ids:  # a repeated label row, or a second file with the same id
                    failures.append((entry.source_file, f"record id {entry.record_id!r} is scored once already"))
                    continue
                scored_ids.add(entry.record_id)
                try:
                    _, prepared = preparer.read(input_dir, dataset_format, entry)
                except Exception as error:  # one bad file must not stop the others
                    failures.append((entry.record_id, failure_reason(error)))
                    continue
                row = {"record_id": entry.record_id, "label_index": -1, "lead_mask": mask_string(prepared.lead_mask)}
                writer.append(prepared.signal, row, prepared.window)
            store = writer.commit(metadata={"preprocess": config.model_dump()})
        positions = np.arange(len(store))
        labels = np.zeros(len(store), dtype=np.int64)
        batches = inference_batches(store, positions, labels, batch_size, loaded.training)
        probabilities, _, _ = predict_probabilities(loaded.model, batches, settings, loaded.class_mask)
        record_ids = store.index["record_id"].tolist() if len(store) else []
    for record_id, reason in failures:
        logger.warning("not scored: %s: %s", record_id, reason)
    table = _prediction_table(record_ids, probabilities, failures, loaded.class_mask.cpu().numpy())
    atomic_write_text(output_csv, table.to_csv(index=False))
    logger.info("scored %d record(s), %d not scored; wrote %s", len(record_ids), len(failures), output_csv)
    return PredictionReport(scored=len(record_ids), failures=failures, output=output_csv)


def _prediction_table(
    record_ids: list[str], probabilities: np.ndarray, failures: list[tuple[str, str]], class_mask: np.ndarray
) -> pd.DataFrame:
    classes = np.flatnonzero(class_mask)
    scored = pd.DataFrame({"record_id": record_ids})
    scored["predicted_label"] = [LABELS[index] for index in probabilities.argmax(axis=1)] if record_ids else []
    for index in classes:
        scored[f"p_{LABELS[index]}"] = probabilities[:, index].round(6) if record_ids else []
    scored["error"] = ""
    failed = pd.DataFrame({"record_id": [name for name, _ in failures], "error": [reason for _, reason in failures]})
    return pd.concat([scored, failed], ignore_index=True).fillna({"predicted_label": ""})
