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
from typing import Callable

import numpy as np
import pandas as pd

from ecg_assets.core.atomic_io import atomic_write_text
from ecg_assets.core.datasets import scan_dataset
from ecg_assets.core.devices import resolve_device
from ecg_assets.core.labels import LABELS
from ecg_assets.core.preprocessing import RecordPreparer, failure_reason, mask_string
from ecg_assets.core.scoring import ScoringModel, load_scoring_model, score_positions
from ecg_assets.core.signal import LEAD_ORDER
from ecg_assets.core.store import RecordStore, RecordStoreWriter
from ecg_assets.core.training import DeviceSettings

logger = logging.getLogger(__name__)

# Kept under their earlier names: `ecg_assets.predict.load_model` is part of the documented API.
LoadedModel = ScoringModel
load_model = load_scoring_model


@dataclass
class PredictionReport:
    scored: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (record id or file, reason)
    output: Path | None = None


def predict_folder(
    model_path: Path,
    input_dir: Path,
    output_csv: Path,
    device: str = "cpu",
    batch_size: int = 64,
    expected_sha256: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> PredictionReport:
    """Score every record of `input_dir` with the checkpoint at `model_path`; write `output_csv`.

    Labels play no part: records without one (or excluded from training for a label reason) are
    scored too. Unreadable records (and files the format could not match to a record) are written with
    their reason in the `error` column and logged; they are never dropped silently. With
    `expected_sha256` (e.g. the `checkpoint_sha256` of the `trained_model` materialization), a
    checkpoint whose hash differs is refused. A folder that cannot be read as a dataset raises one of
    `datasets.DATASET_ERRORS`, with the reason. `progress(stage, done, total)` is called as records are read
    (`reading`) and scored (`scoring`).
    """
    settings = resolve_device(device, setting_hint="--device")
    loaded = load_model(model_path, settings.device, expected_sha256)
    dataset_format, scan = scan_dataset(input_dir)
    failures = list(scan.problems)
    config = loaded.preprocess
    preparer = RecordPreparer(config)
    scored_ids: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="ecg-predict-") as scratch:
        with RecordStoreWriter(Path(scratch), (len(LEAD_ORDER), config.target_length)) as writer:
            for done, entry in enumerate(scan.entries, start=1):
                if progress is not None:
                    progress("reading", done - 1, len(scan.entries))
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
            if progress is not None:
                progress("reading", len(scan.entries), len(scan.entries))
            store = writer.commit(metadata={"preprocess": config.model_dump()})
        positions = np.arange(len(store))
        labels = np.zeros(len(store), dtype=np.int64)
        probabilities = _score_in_chunks(loaded, store, positions, settings, batch_size, labels, progress)
        record_ids = store.index["record_id"].tolist() if len(store) else []
    for record_id, reason in failures:
        logger.warning("not scored: %s: %s", record_id, reason)
    table = _prediction_table(record_ids, probabilities, failures, loaded.class_mask.cpu().numpy())
    atomic_write_text(output_csv, table.to_csv(index=False))
    logger.info("scored %d record(s), %d not scored; wrote %s", len(record_ids), len(failures), output_csv)
    return PredictionReport(scored=len(record_ids), failures=failures, output=output_csv)


def _score_in_chunks(
    loaded: ScoringModel,
    store: RecordStore,
    positions: np.ndarray,
    settings: DeviceSettings,
    batch_size: int,
    labels: np.ndarray,
    progress: Callable[[str, int, int], None] | None,
) -> np.ndarray:
    """`score_positions` over every record; with `progress`, `batch_size` records at a time, reporting each chunk
    (a record's windows are averaged within its chunk, so the probabilities are the same)."""
    if progress is None:
        return score_positions(loaded, store, positions, settings, batch_size, labels)[0]
    total = len(positions)
    progress("scoring", 0, total)
    chunks = []
    for start in range(0, total, batch_size):
        chunk = positions[start : start + batch_size]
        chunks.append(score_positions(loaded, store, chunk, settings, batch_size, labels)[0])
        progress("scoring", start + len(chunk), total)
    return np.concatenate(chunks) if chunks else np.zeros((0, len(LABELS)))


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
