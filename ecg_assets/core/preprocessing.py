"""Turn a dataset's labelled records into the processed-record store, one record at a time."""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_assets.core.datasets import DatasetLayout
from ecg_assets.core.labels import LABEL_TO_INDEX, LABELS
from ecg_assets.core.records import RecordEntry, RecordReadError, duplicate_reason
from ecg_assets.core.signal import LEAD_ORDER, PreprocessConfig, preprocess
from ecg_assets.core.storage import atomic_write_bytes, atomic_write_json, atomic_write_text
from ecg_assets.core.store import RecordStore, RecordStoreWriter

logger = logging.getLogger(__name__)

FAILURES_FILE = "failures.csv"
LABEL_MAP_FILE = "label_map.json"
LABELS_FILE = "labels.npy"


@dataclass
class ProcessingReport:
    """What happened to each record of one materialization."""

    discovered: int
    processed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (record_id, reason)
    warnings: Counter = field(default_factory=Counter)  # warning message -> records
    original_fs: list[float] = field(default_factory=list)
    original_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)


def mask_string(mask: np.ndarray) -> str:
    """A lead mask as 12 characters of 0/1 in `LEAD_ORDER`."""
    return "".join("1" if present else "0" for present in mask)


def failure_reason(error: Exception) -> str:
    """The user-facing reason for a skipped record; unexpected errors keep their type name."""
    if isinstance(error, (RecordReadError, ValueError)) and str(error):
        return str(error)
    return f"{type(error).__name__}: {error}"


def process_records(
    dataset_dir: Path,
    layout: DatasetLayout,
    records: pd.DataFrame,
    store_dir: Path,
    config: PreprocessConfig,
    progress_every: int = 500,
) -> tuple[RecordStore, ProcessingReport]:
    """Read, preprocess and store every row of `records` (a label mapping table's included rows).

    A record that fails is logged with its reason, counted and skipped; it never stops the run.
    The store, `failures.csv`, `labels.npy` and `label_map.json` are written atomically.
    """
    report = ProcessingReport(discovered=len(records))
    started = time.perf_counter()
    max_duration_s = config.target_length / config.target_fs
    repeated = records["record_id"].duplicated().to_numpy()  # only the first row of a record id is processed
    with RecordStoreWriter(store_dir, (len(LEAD_ORDER), config.target_length)) as writer:
        for position, row in enumerate(records.itertuples(index=False), start=1):
            entry = RecordEntry(row.record_id, row.source_file, tuple(row.native_labels.split(";")), row.patient_id)
            try:
                if repeated[position - 1]:
                    raise RecordReadError(duplicate_reason(entry.record_id))
                recording = layout.read(dataset_dir, entry, max_duration_s=max_duration_s)
                result = preprocess(recording.signal, recording.fs, recording.lead_names, config)
            except Exception as error:  # a bad file must never stop the partition
                report.failures.append((entry.record_id, failure_reason(error)))
                logger.warning("skipping record %s: %s", entry.record_id, report.failures[-1][1])
                continue
            for message in [*recording.notes, *result.warnings]:
                report.warnings[message] += 1
                logger.debug("record %s: %s", entry.record_id, message)
            writer.append(
                result.signal,
                {
                    "record_id": entry.record_id,
                    "label": row.mapped_label,
                    "label_index": LABEL_TO_INDEX[row.mapped_label],
                    "native_labels": row.native_labels,
                    "patient_id": row.patient_id,
                    "source_file": row.source_file,
                    "original_fs": recording.fs,
                    "original_samples": recording.original_samples,
                    "lead_mask": mask_string(result.lead_mask),
                    "flat_mask": mask_string(result.flat_mask),
                },
            )
            report.processed += 1
            report.original_fs.append(recording.fs)
            report.original_seconds.append(recording.original_samples / recording.fs)
            if position % progress_every == 0:
                logger.info("processed %d/%d records (%d failed)", position, len(records), report.failed)
        store = writer.commit(metadata={"preprocess": config.model_dump()})
    write_failures(store_dir / FAILURES_FILE, report.failures)
    write_label_exports(store_dir, store)
    report.seconds = time.perf_counter() - started
    logger.info(
        "processed %d of %d records in %.1f s, %d failed",
        report.processed,
        report.discovered,
        report.seconds,
        report.failed,
    )
    return store, report


def write_failures(path: Path, failures: list[tuple[str, str]]) -> None:
    """`failures.csv`: one row per skipped record with its reason (header only when none failed)."""
    atomic_write_text(path, pd.DataFrame(failures, columns=["record_id", "reason"]).to_csv(index=False))


def write_label_exports(directory: Path, store: RecordStore) -> None:
    """The notebook-compatible exports: `label_map.json` and `labels.npy` (store order)."""
    atomic_write_json(directory / LABEL_MAP_FILE, {label: index for index, label in enumerate(LABELS)})
    labels = store.index["label_index"].to_numpy(dtype=np.int64) if len(store) else np.zeros(0, np.int64)
    buffer = io.BytesIO()
    np.save(buffer, labels)
    atomic_write_bytes(directory / LABELS_FILE, buffer.getvalue())
