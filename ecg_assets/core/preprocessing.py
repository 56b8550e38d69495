"""Turn a dataset's labelled records into the processed-record store: in parallel, incrementally.

Records are read and preprocessed by a bounded pool of worker processes and written, in the
label mapping's order, by this process into the store's shards (memory stays flat: only a
few chunks are in flight at any time). A record whose files are unchanged since the previous
generation (same size and mtime, or same content hash) is copied from it instead of being
processed again, as long as the preprocessing settings and code are the same.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import threading
import time
from collections import Counter, deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
from pydantic import Field

from ecg_assets.core.atomic_io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ecg_assets.core.datasets import DatasetFormat
from ecg_assets.core.labels import LABEL_TO_INDEX, LABELS
from ecg_assets.core.paths import OutsideFolderError, is_inside
from ecg_assets.core.records import RecordEntry, Recording, RecordReadError, duplicate_reason
from ecg_assets.core.signal import LEAD_ORDER, PreprocessConfig, preprocess_leads, preprocess_spans
from ecg_assets.core.signal_fingerprint import signal_fingerprint
from ecg_assets.core.store import SIGNAL_DTYPE, RecordStore, RecordStoreWriter
from ecg_assets.core.versioning import PROCESSING_CODE, code_version

logger = logging.getLogger(__name__)

FAILURES_FILE = "failures.csv"
LABEL_MAP_FILE = "label_map.json"
LABELS_FILE = "labels.npy"
# Below this many records to process, a pool costs more than it saves.
MIN_RECORDS_FOR_POOL = 64
# Index columns computed from the signal files (kept when a record is reused).
SIGNAL_COLUMNS = ("original_fs", "original_samples", "lead_mask", "flat_mask", "warnings", "signal_fingerprint")


class RecordProcessingConfig(PreprocessConfig):
    """`PreprocessConfig` plus the longer window kept for training crops and multi-window inference."""

    training_window_s: float = Field(
        60.0,
        ge=0,
        description="Also keep up to this many seconds of every record longer than the canonical window "
        "(present leads only), for random training crops and multi-window inference; 0 turns it off.",
    )

    @property
    def window_length(self) -> int:
        """Samples of the longer window at `target_fs` (0 when it is not longer than the canonical one)."""
        length = round(self.training_window_s * self.target_fs)
        return length if length > self.target_length else 0

    @property
    def read_seconds(self) -> float:
        return max(self.target_length / self.target_fs, self.window_length / self.target_fs)


@dataclass
class PreparedRecord:
    """One record as the store holds it: canonical float16 `[12, L]` (`signal`), optional longer window, masks.

    Only the present leads are kept (`rows`, float16 `[present leads, L]`): that is what travels
    from a worker process to the writer; `signal` puts them in the 12-lead dataset_format.
    """

    rows: np.ndarray
    window: np.ndarray | None  # float16 [present leads, samples] or None
    lead_mask: np.ndarray
    flat_mask: np.ndarray
    warnings: list[str]

    @property
    def signal(self) -> np.ndarray:
        full = np.zeros((len(self.lead_mask), self.rows.shape[-1]), dtype=SIGNAL_DTYPE)  # absent leads stay zero
        full[self.lead_mask] = self.rows
        return full


class RecordPreparer:
    """The exact transformation behind every stored record (and every scored one, see `predict`).

    The canonical tensor is `signal.preprocess` of the first `target_length` samples; when the
    recording is longer and `training_window_s` allows, the same preprocessing over the longer
    span gives the window (z-scored over that span, trailing padding removed). Both are float16,
    as stored.
    """

    def __init__(self, config: RecordProcessingConfig):
        self.config = config
        self.base = PreprocessConfig.model_validate(config.model_dump(include=set(PreprocessConfig.model_fields)))
        self.long = self.base.model_copy(update={"target_length": config.window_length})

    def __call__(self, recording: Recording) -> PreparedRecord:
        config = self.config
        window = None
        available = math.ceil(recording.signal.shape[-1] * config.target_fs / recording.fs)
        if config.window_length and available > config.target_length:  # both from one resampling
            result, long = preprocess_spans(
                recording.signal, recording.fs, recording.lead_names, [self.base, self.long]
            )
            window = long.rows[:, : min(config.window_length, available)].astype(SIGNAL_DTYPE)
        else:
            result = preprocess_leads(recording.signal, recording.fs, recording.lead_names, self.base)
        warnings = [*recording.notes, *result.warnings]  # notes: what the reader left out (non-ECG channels)
        return PreparedRecord(result.rows.astype(SIGNAL_DTYPE), window, result.lead_mask, result.flat_mask, warnings)

    def read(
        self, dataset_dir: Path, dataset_format: DatasetFormat, entry: RecordEntry
    ) -> tuple[Recording, PreparedRecord]:
        """Read one record as far as the config needs and prepare it (raises with a user-facing reason)."""
        recording = dataset_format.read(dataset_dir, entry, max_duration_s=self.config.read_seconds)
        return recording, self(recording)


@dataclass
class ProcessingReport:
    """What happened to each record of one materialization."""

    discovered: int
    processed: int = 0
    reprocessed: int = 0  # read and preprocessed in this run
    reused: int = 0  # copied unchanged from the previous generation
    full_reprocess_reason: str | None = None  # why nothing could be reused (None: reuse was possible)
    workers: int = 1
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
    return (np.asarray(mask, dtype=np.uint8) + ord("0")).tobytes().decode()


def failure_reason(error: Exception) -> str:
    """The user-facing reason for a skipped record; unexpected errors keep their type name."""
    if isinstance(error, (RecordReadError, ValueError)) and str(error):
        return str(error)
    return f"{type(error).__name__}: {error}"


# --- record files, signatures and hashes ------------------------------------------------------------


class RecordFiles:
    """The files of each record: every file beside its source file with the same stem (`.hea`, `.mat`, ...).

    Only files inside the dataset folder count: a symbolic link pointing out of it (or a source
    file in a folder outside it) is never listed, so it is never hashed or read.
    """

    def __init__(self, dataset_dir: Path):
        self.dataset_dir = dataset_dir
        self._listings: dict[str, tuple[dict[str, list[str]], set[str]]] = {}

    def _listing(self, folder: str) -> tuple[dict[str, list[str]], set[str]]:
        """`({stem: file names}, names refused)` of one sub-folder (everything refused when it lies outside)."""
        if folder not in self._listings:
            listing: dict[str, list[str]] = {}
            refused: set[str] = set()
            try:
                if not is_inside(self.dataset_dir, folder):
                    raise OutsideFolderError(folder)
                with os.scandir(self.dataset_dir / folder) as entries:
                    for entry in entries:
                        if entry.is_symlink() and not is_inside(self.dataset_dir, os.path.abspath(entry.path)):
                            refused.add(entry.name)
                        elif entry.is_file():
                            listing.setdefault(entry.name.split(".", 1)[0], []).append(entry.name)
            except OutsideFolderError:
                listing, refused = {}, {"*"}
            except OSError:
                pass
            self._listings[folder] = (listing, refused)
        return self._listings[folder]

    def of(self, source_file: str) -> list[str]:
        """Paths relative to the dataset folder (POSIX separators), sorted."""
        folder, _, name = source_file.rpartition("/")
        prefix = f"{folder}/" if folder else ""
        listing, refused = self._listing(folder)
        if name in refused or "*" in refused:
            return []
        return [prefix + other for other in sorted(listing.get(name.split(".", 1)[0], [name]))]


def files_signature(dataset_dir: Path, files: Sequence[str]) -> str:
    """`name:size:mtime_ns` of each file (`name:missing` when absent): cheap change detection."""
    parts = []
    for name in files:
        try:
            stat = os.stat(os.path.join(dataset_dir, name))
            parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
        except OSError:
            parts.append(f"{name}:missing")
    return "|".join(parts)


def content_hash(dataset_dir: Path, files: Sequence[str]) -> str:
    """SHA-256 (first 32 hex digits) over the names and bytes of a record's files."""
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        try:
            digest.update((dataset_dir / name).read_bytes())
        except OSError:
            digest.update(b"<missing>")
    return digest.hexdigest()[:32]


# --- the work one record needs ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    position: int
    entry: RecordEntry
    files: tuple[str, ...]
    signature: str | None  # None: the worker takes it (no previous generation to compare with)
    previous_hash: str | None  # content hash in the previous generation, when it can be reused


@dataclass
class _Outcome:
    """What a worker sends back (the prepared record's present leads only)."""

    job: _Job
    content_hash: str
    signature: str
    status: str  # "processed" | "unchanged" | "failed"
    prepared: PreparedRecord | None = None
    recording_fs: float = 0.0
    original_samples: int = 0
    reason: str = ""


def _run_job(dataset_dir: Path, dataset_format: DatasetFormat, preparer: RecordPreparer, job: _Job) -> _Outcome:
    signature = job.signature if job.signature is not None else files_signature(dataset_dir, job.files)
    digest = content_hash(dataset_dir, job.files)
    if job.previous_hash is not None and digest == job.previous_hash:
        return _Outcome(job, digest, signature, "unchanged")
    try:
        recording, prepared = preparer.read(dataset_dir, dataset_format, job.entry)
    except Exception as error:  # a bad file must never stop the partition
        return _Outcome(job, digest, signature, "failed", reason=failure_reason(error))
    return _Outcome(job, digest, signature, "processed", prepared, recording.fs, recording.original_samples)


def _run_jobs(dataset_dir: Path, dataset_format: DatasetFormat, config: RecordProcessingConfig, jobs: list[_Job]):
    """One chunk of jobs (what a worker process runs per task)."""
    preparer = RecordPreparer(config)
    return [_run_job(dataset_dir, dataset_format, preparer, job) for job in jobs]


def default_workers() -> int:
    """One worker process per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _pool_context() -> multiprocessing.context.BaseContext:
    """`fork` when this process is single-threaded (cheap, safe); else `forkserver` (or `spawn`)."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


class _Inline(Executor):
    """Runs each task in this process (small datasets, `workers=1`)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _ordered_outcomes(
    executor: Executor,
    dataset_dir: Path,
    dataset_format: DatasetFormat,
    config: RecordProcessingConfig,
    jobs: Iterator[tuple[_Job, bool]],
    chunk_size: int,
    max_in_flight: int,
) -> Iterator[_Outcome | _Job]:
    """Outcomes in job order. `jobs` yields `(job, reuse)`; a reused job is yielded back as is.

    Jobs go to the executor in chunks; at most `max_in_flight` chunks are pending at any time,
    so memory stays bounded however many records there are.
    """
    pending: deque[tuple[list[Any], Future | None]] = deque()

    def drain(limit: int) -> Iterator[_Outcome | _Job]:
        while len(pending) > limit:
            items, future = pending.popleft()
            results = iter(future.result() if future is not None else ())
            for item in items:
                yield next(results) if item is None else item

    chunk: list[Any] = []  # None: a slot for the next worker result; a _Job: reused as is
    work: list[_Job] = []
    for job, reuse in jobs:
        chunk.append(job if reuse else None)
        if not reuse:
            work.append(job)
        if len(chunk) == chunk_size:
            pending.append(
                (chunk, executor.submit(_run_jobs, dataset_dir, dataset_format, config, work) if work else None)
            )
            chunk, work = [], []
            yield from drain(max_in_flight)
    if chunk:
        pending.append((chunk, executor.submit(_run_jobs, dataset_dir, dataset_format, config, work) if work else None))
    yield from drain(0)


# --- the store ---------------------------------------------------------------------------------------


def _previous_generation(
    store_dir: Path, config: RecordProcessingConfig, version: str
) -> tuple[RecordStore | None, str | None]:
    """The committed generation, when its records can be reused; else None and why not."""
    try:
        previous = RecordStore(store_dir)
    except FileNotFoundError:
        return None, "no previous generation"
    except Exception as error:
        return None, f"previous generation unreadable ({type(error).__name__}: {error})"
    metadata = previous.metadata
    if metadata.get("preprocess") != config.model_dump():
        return None, "preprocessing settings changed"
    if metadata.get("processing_version") != version:
        return None, "preprocessing code changed"
    if previous.row_shape != (len(LEAD_ORDER), config.target_length) or "content_hash" not in previous.index:
        return None, "previous generation has another format"
    return previous, None


def process_records(
    dataset_dir: Path,
    dataset_format: DatasetFormat,
    records: pd.DataFrame,
    store_dir: Path,
    config: PreprocessConfig,
    workers: int | None = None,
    progress_every: int = 500,
    chunk_size: int = 32,
) -> tuple[RecordStore, ProcessingReport]:
    """Read, preprocess and store every row of `records` (a label mapping table's included rows).

    Uses `workers` processes (default: one per CPU). Records whose files did not change since
    the previous generation are copied from it. A record that fails is logged with its reason,
    counted and skipped; it never stops the run. The store (committed last, by its manifest),
    `failures.csv`, `labels.npy` and `label_map.json` are written atomically, in `records` order.
    """
    config = RecordProcessingConfig.model_validate(config.model_dump())
    started = time.perf_counter()
    version = code_version(PROCESSING_CODE)
    previous, full_reason = _previous_generation(store_dir, config, version)
    previous_rows: dict[str, int] = {}
    previous_index: list[dict[str, Any]] = []
    if previous is not None:
        previous_index = previous.index.to_dict("records")
        previous_rows = {row["record_id"]: position for position, row in enumerate(previous_index)}
    report = ProcessingReport(discovered=len(records), full_reprocess_reason=full_reason)
    repeated = records["record_id"].duplicated()  # only the first row of a record id is processed
    for record_id in records.loc[repeated, "record_id"]:
        report.failures.append((record_id, duplicate_reason(record_id)))
        logger.warning("skipping record %s: %s", record_id, report.failures[-1][1])
    record_files = RecordFiles(dataset_dir)
    rows = list(records[~repeated].itertuples(index=False))

    def jobs() -> Iterator[tuple[_Job, bool]]:
        for position, row in enumerate(rows):
            entry = RecordEntry(row.record_id, row.source_file, tuple(row.native_labels.split(";")), row.patient_id)
            files = tuple(record_files.of(row.source_file))
            old = previous_index[previous_rows[row.record_id]] if row.record_id in previous_rows else None
            if old is None or old["source_file"] != row.source_file:
                yield _Job(position, entry, files, None, None), False
                continue
            signature = files_signature(dataset_dir, files)
            yield _Job(position, entry, files, signature, str(old["content_hash"])), old["file_signature"] == signature

    workers = workers or default_workers()
    use_pool = workers > 1 and len(rows) >= MIN_RECORDS_FOR_POOL
    report.workers = workers if use_pool else 1
    executor: Executor = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) if use_pool else _Inline()
    with executor, RecordStoreWriter(store_dir, (len(LEAD_ORDER), config.target_length)) as writer:
        outcomes = _ordered_outcomes(
            executor, dataset_dir, dataset_format, config, jobs(), chunk_size, max_in_flight=2 * report.workers
        )
        for done, outcome in enumerate(outcomes, start=1):
            _store_outcome(writer, report, rows, previous, previous_index, previous_rows, outcome)
            if done % progress_every == 0:
                logger.info(
                    "stored %d/%d records (%d reused, %d failed)", done, len(rows), report.reused, report.failed
                )
        metadata = {"preprocess": config.model_dump(), "processing_version": version}
        metadata["content_fingerprint"] = content_fingerprint(writer.rows, metadata)
        store = writer.commit(metadata=metadata)
    write_failures(store_dir / FAILURES_FILE, report.failures)
    write_label_exports(store_dir, store)
    report.seconds = time.perf_counter() - started
    logger.info(
        "stored %d of %d records in %.1f s with %d worker(s): %d processed, %d reused unchanged, %d failed%s",
        report.processed,
        report.discovered,
        report.seconds,
        report.workers,
        report.reprocessed,
        report.reused,
        report.failed,
        f" (nothing reused: {full_reason})" if full_reason else "",
    )
    return store, report


def _store_outcome(
    writer: RecordStoreWriter,
    report: ProcessingReport,
    rows: list[Any],
    previous: RecordStore | None,
    previous_index: list[dict[str, Any]],
    previous_rows: dict[str, int],
    outcome: _Outcome | _Job,
) -> None:
    """Append one record to the new generation (processed now, or copied from the previous one)."""
    job = outcome if isinstance(outcome, _Job) else outcome.job
    row = rows[job.position]
    if isinstance(outcome, _Outcome) and outcome.status == "failed":
        report.failures.append((job.entry.record_id, outcome.reason))
        logger.warning("skipping record %s: %s", job.entry.record_id, outcome.reason)
        return
    index_row: dict[str, Any] = {
        "record_id": row.record_id,
        "label": row.mapped_label,
        "label_index": LABEL_TO_INDEX[row.mapped_label],
        "native_labels": row.native_labels,
        "patient_id": row.patient_id,
        "source_file": row.source_file,
        "content_hash": job.previous_hash if isinstance(outcome, _Job) else outcome.content_hash,
        "file_signature": job.signature if isinstance(outcome, _Job) else outcome.signature,
    }
    if isinstance(outcome, _Job) or outcome.status == "unchanged":
        assert previous is not None
        position = previous_rows[row.record_id]
        old = previous_index[position]
        index_row.update({column: old[column] for column in SIGNAL_COLUMNS})
        writer.append(previous.stored_signal(position), index_row, previous.window_values(position))
        report.reused += 1
        warnings = [message for message in str(old["warnings"]).split("\n") if message]
    else:
        prepared = outcome.prepared
        assert prepared is not None
        warnings = prepared.warnings
        index_row.update(
            original_fs=outcome.recording_fs,
            original_samples=outcome.original_samples,
            lead_mask=mask_string(prepared.lead_mask),
            flat_mask=mask_string(prepared.flat_mask),
            warnings="\n".join(warnings),
            signal_fingerprint=signal_fingerprint(prepared.rows, prepared.lead_mask, prepared.flat_mask),
        )
        writer.append(prepared.rows, index_row, prepared.window, lead_mask=prepared.lead_mask)
        report.reprocessed += 1
    for message in warnings:
        report.warnings[message] += 1
        logger.debug("record %s: %s", row.record_id, message)
    report.processed += 1
    report.original_fs.append(float(index_row["original_fs"]))
    report.original_seconds.append(float(index_row["original_samples"]) / float(index_row["original_fs"]))


def content_fingerprint(rows: list[dict[str, Any]], metadata: dict[str, Any]) -> str:
    """Identity of a generation's content: records, labels, file hashes, settings and code.

    Unlike the generation name it survives a re-materialization that changed nothing, so a
    training run can resume across one.
    """
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for row in rows:
        digest.update(f"{row['record_id']}\0{row['label_index']}\0{row['content_hash']}\n".encode())
    return digest.hexdigest()[:32]


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
