"""Turn a dataset's labelled records into the processed-record store: in parallel, incrementally.

Records are read and preprocessed by a bounded pool of worker processes and written, in the
label mapping's order, by this process into the store's shards (memory stays flat: only a
few chunks are in flight at any time). A record is copied from the previous generation instead
of being processed again only when nothing it comes from changed (`core.reuse`: settings,
dataset layout and dataset.yaml, code, its label mapping row, and every file its reader read).
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
from typing import Any, Iterator

import numpy as np
import pandas as pd
from pydantic import Field

from ecg_assets.core.atomic_io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ecg_assets.core import reuse
from ecg_assets.core.datasets import DatasetFormat
from ecg_assets.core.datasets.config import load_dataset_config
from ecg_assets.core.labels import LABEL_TO_INDEX, LABELS
from ecg_assets.core.records import RecordEntry, Recording, RecordReadError, duplicate_reason
from ecg_assets.core.rhythm import RHYTHM_COLUMNS, rhythm_features
from ecg_assets.core.signal import LEAD_ORDER, PreprocessConfig, preprocess_leads, preprocess_spans
from ecg_assets.core.signal_fingerprint import signal_fingerprint
from ecg_assets.core.store import SIGNAL_DTYPE, RecordStore, RecordStoreWriter

logger = logging.getLogger(__name__)

FAILURES_FILE = "failures.csv"
LABEL_MAP_FILE = "label_map.json"
LABELS_FILE = "labels.npy"
# Below this many records to process, a pool costs more than it saves.
MIN_RECORDS_FOR_POOL = 64
# Index columns computed from the signal files (kept when a record is reused).
SIGNAL_COLUMNS = (
    "original_fs",
    "original_samples",
    "lead_mask",
    "flat_mask",
    "warnings",
    "input_files",
    "sex",
    "age",
    "signal_fingerprint",
    *RHYTHM_COLUMNS,
)
# Every column of the store index this module writes (the store's own placement columns come after).
INDEX_COLUMNS = (
    "record_id",
    "label",
    "label_index",
    "native_labels",
    "patient_id",
    "source_file",
    "record_key",
    "content_hash",
    "file_signature",
    *SIGNAL_COLUMNS,
)


class RecordProcessingConfig(PreprocessConfig):
    """`PreprocessConfig` plus the shortest usable record and the longer window kept for training crops and
    multi-window inference."""

    min_duration_s: float = Field(
        2.0,
        ge=0,
        description="Records shorter than this many seconds (their whole length on disk) fail with a reason: "
        "at 2 s a record holds two or three beats at resting heart rates, the least that shows a rhythm, and "
        "80% of the 10-s canonical window is already padding; every supported public dataset records 5 s or more.",
    )
    training_window_s: float = Field(
        60.0,
        ge=0,
        description="Also keep up to this many seconds of every record longer than the canonical window "
        "(present leads only), for random training crops and multi-window inference; 0 turns it off.",
    )
    rhythm_features: bool = Field(
        True,
        description="Detect the beats of every record and store its rhythm features (core.rhythm) in the index, "
        "for models that fuse them (about 1.6 ms of CPU per record); off, training computes them itself.",
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
    rhythm: np.ndarray | None  # float32 [N_RHYTHM_FEATURES] from the longest stored signal (`core.rhythm`)

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
        """Raises `RecordReadError` (or `ValueError`) with the reason for a recording that cannot give a valid
        tensor: shorter than `min_duration_s`, no ECG lead, non-finite samples, values that overflow while
        resampling (so a stored record is always finite: float16 holds any z-scored value)."""
        config = self.config
        _check_duration(recording, config.min_duration_s)
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
        rows = result.rows.astype(SIGNAL_DTYPE)
        # From the values exactly as stored (float16), so a store without these columns recomputes the same.
        rhythm = (
            rhythm_features((window if window is not None else rows).astype(np.float32), config.target_fs)
            if config.rhythm_features
            else None
        )
        return PreparedRecord(rows, window, result.lead_mask, result.flat_mask, warnings, rhythm)

    def read(
        self, dataset_dir: Path, dataset_format: DatasetFormat, entry: RecordEntry
    ) -> tuple[Recording, PreparedRecord]:
        """Read one record as far as the config needs and prepare it (raises with a user-facing reason)."""
        recording = dataset_format.read(dataset_dir, entry, max_duration_s=self.config.read_seconds)
        return recording, self(recording)


def _check_duration(recording: Recording, min_duration_s: float) -> None:
    if not (recording.fs > 0 and math.isfinite(recording.fs)):
        return  # an invalid rate has its own reason (signal.preprocess)
    seconds = recording.original_samples / recording.fs
    if seconds < min_duration_s:
        raise RecordReadError(
            f"recording is too short: {seconds:.3g} s ({recording.original_samples} sample(s) at {recording.fs:g} Hz); "
            f"records must last at least {min_duration_s:g} s (min_duration_s)"
        )


@dataclass
class ProcessingReport:
    """What happened to each record of one materialization."""

    discovered: int
    processed: int = 0
    reprocessed: int = 0  # read and preprocessed in this run
    reused: int = 0  # copied unchanged from the previous generation
    full_reprocess_reason: str | None = None  # why nothing could be reused (None: reuse was possible)
    reprocess_reasons: Counter = field(default_factory=Counter)  # why each record read again was not reused
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


# --- the work one record needs ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    position: int
    entry: RecordEntry
    previous_files: tuple[str, ...] = ()  # what the reader read last time (when the record may be reused)
    signature: str | None = None  # of `previous_files`, now
    previous_hash: str | None = None  # content hash in the previous generation, when it may be reused
    reason: str = reuse.NEW_RECORD  # why it is read again, unless its content hash says it is unchanged


@dataclass
class _Outcome:
    """What a worker sends back (the prepared record's present leads only)."""

    job: _Job
    content_hash: str
    signature: str
    status: str  # "processed" | "unchanged" | "failed"
    prepared: PreparedRecord | None = None
    recording: Recording | None = None  # without its signal
    files: tuple[str, ...] = ()
    reason: str = ""


def _run_job(dataset_dir: Path, dataset_format: DatasetFormat, preparer: RecordPreparer, job: _Job) -> _Outcome:
    if job.previous_hash is not None:
        _, digest = reuse.fingerprint(dataset_dir, job.previous_files)
        if digest == job.previous_hash:  # touched, not changed
            return _Outcome(job, digest, job.signature or "", "unchanged", files=job.previous_files)
    try:
        recording, prepared = preparer.read(dataset_dir, dataset_format, job.entry)
    except Exception as error:  # a bad file must never stop the partition
        return _Outcome(job, "", "", "failed", reason=failure_reason(error))
    files = tuple(reuse.relative_files(dataset_dir, job.entry.source_file, recording.files))
    recording.signal, recording.files = recording.signal[:, :0], []  # only its description travels back
    signature, digest = reuse.fingerprint(dataset_dir, files, checked_inside=True)  # the reader just checked them
    return _Outcome(job, digest, signature, "processed", prepared, recording, files)


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
    for job, reusable in jobs:
        chunk.append(job if reusable else None)
        if not reusable:
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


def _previous_generation(store_dir: Path, key: dict[str, Any]) -> tuple[RecordStore | None, str | None]:
    """The committed generation, when its records can be reused under `key`; else None and why not."""
    try:
        previous = RecordStore(store_dir)
    except FileNotFoundError:
        return None, "no previous generation"
    except Exception as error:
        return None, f"previous generation unreadable ({type(error).__name__}: {error})"
    changed = reuse.key_changes(previous.metadata.get("reuse_key"), key)
    if changed:
        return None, changed
    if previous.row_shape != (len(LEAD_ORDER), key["preprocess"]["target_length"]) or not {
        "record_key",
        "input_files",
        "content_hash",
    } <= set(previous.index.columns):
        return None, "previous generation has another format"
    return previous, None


def _record_key(row: Any) -> str:
    return reuse.record_key(
        row.record_id, row.source_file, row.native_labels, row.mapped_label, row.label_source, row.patient_id
    )


def process_records(
    dataset_dir: Path,
    dataset_format: DatasetFormat,
    records: pd.DataFrame,
    store_dir: Path,
    config: PreprocessConfig,
    workers: int | None = None,
    progress_every: int | None = None,
    chunk_size: int = 32,
) -> tuple[RecordStore, ProcessingReport]:
    """Read, preprocess and store every row of `records` (a label mapping table's included rows).

    Uses `workers` processes (default: one per CPU) and logs `stored N/M records` every `progress_every`
    records (default: a tenth of them; `ecg-assets materialize` draws it as a progress bar). Records that did
    not change since the previous generation (`core.reuse`) are copied from it. A record that fails is logged
    with its reason, counted and skipped; it never stops the run. With nothing to process the store is
    committed empty. The store (committed last, by its manifest), `failures.csv`, `labels.npy` and
    `label_map.json` are written atomically, in `records` order.
    """
    if type(config) is not RecordProcessingConfig:  # a bare PreprocessConfig (or a subclass with extra fields)
        fields = set(RecordProcessingConfig.model_fields)
        config = RecordProcessingConfig.model_validate(config.model_dump(include=fields))
    records = _with_mapping_columns(records)
    started = time.perf_counter()
    key = reuse.generation_key(
        config.model_dump(), dataset_format.name, load_dataset_config(dataset_dir).model_dump(mode="json")
    )
    previous, full_reason = _previous_generation(store_dir, key)
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
    rows = list(records[~repeated].itertuples(index=False))
    progress_every = progress_every or max(1, math.ceil(len(rows) / 10))

    def jobs() -> Iterator[tuple[_Job, bool]]:
        for position, row in enumerate(rows):
            entry = RecordEntry(row.record_id, row.source_file, tuple(row.native_labels.split(";")), row.patient_id)
            old = previous_index[previous_rows[row.record_id]] if row.record_id in previous_rows else None
            if old is None:
                yield _Job(position, entry, reason=full_reason or reuse.NEW_RECORD), False
            elif old["record_key"] != _record_key(row):
                yield _Job(position, entry, reason=reuse.ROW_CHANGED), False
            else:
                files = tuple(reuse.decode_files(old["input_files"]))
                signature = reuse.files_signature(dataset_dir, files)
                job = _Job(position, entry, files, signature, str(old["content_hash"]), reuse.FILES_CHANGED)
                yield job, old["file_signature"] == signature

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
        metadata = {"preprocess": config.model_dump(), "processing_version": key["code"], "reuse_key": key}
        metadata["content_fingerprint"] = content_fingerprint(writer.rows, metadata)
        store = writer.commit(metadata=metadata, columns=INDEX_COLUMNS)
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
    if not report.processed:
        logger.warning("no record was processed: %s", nothing_processed_reason(report))
    return store, report


def _with_mapping_columns(records: pd.DataFrame) -> pd.DataFrame:
    """`records` with the label mapping columns the reuse key reads (older or hand-made tables may lack some)."""
    missing = {"label_source": "", "patient_id": "", "native_labels": ""}
    records = records.assign(**{name: value for name, value in missing.items() if name not in records.columns})
    return records.fillna({"label_source": "", "patient_id": "", "native_labels": ""})


def nothing_processed_reason(report: ProcessingReport) -> str:
    """One sentence on why a run stored no record."""
    if not report.discovered:
        return "the label mapping has no labelled record (see the excluded reasons in the label_mapping metadata)"
    reasons = Counter(reason for _, reason in report.failures).most_common(3)
    shown = "; ".join(f"{count} x {reason}" for reason, count in reasons)
    return f"all {report.discovered} labelled record(s) failed ({shown}); see failures.csv"


def empty_store_explanation(label_mapping: pd.DataFrame, failures_csv: Path) -> str:
    """Why a store holds no records, for the steps that need some (splits, training): counts and where to look."""
    excluded = label_mapping.loc[label_mapping["mapped_label"] == "", "excluded_reason"].value_counts()
    labelled = int((label_mapping["mapped_label"] != "").sum())
    failures = pd.read_csv(failures_csv, dtype=str, keep_default_na=False) if failures_csv.is_file() else None
    failed = failures["reason"].value_counts() if failures is not None else pd.Series(dtype=int)

    def top(counts: pd.Series) -> str:
        shown = "; ".join(f"{int(count)} x {reason}" for reason, count in counts.head(3).items())
        return f" ({shown})" if shown else ""

    return (
        f"no processed records: label_mapping lists {len(label_mapping)} record(s), {int(excluded.sum())} excluded"
        f"{top(excluded)} and {labelled} labelled, of which {int(failed.sum())} failed in processed_records"
        f"{top(failed)}. The reason of each record is in label_mapping.csv (excluded_reason) and {failures_csv}."
    )


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
        report.reprocess_reasons[job.reason] += 1
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
        "record_key": _record_key(row),
        "content_hash": job.previous_hash if isinstance(outcome, _Job) else outcome.content_hash,
        "file_signature": job.signature if isinstance(outcome, _Job) else outcome.signature,
    }
    if isinstance(outcome, _Job) or outcome.status == "unchanged":
        assert previous is not None
        position = previous_rows[row.record_id]
        old = previous_index[position]
        index_row.update({column: old[column] for column in SIGNAL_COLUMNS if column in old})
        writer.append(previous.stored_signal(position), index_row, previous.window_values(position))
        report.reused += 1
        warnings = [message for message in str(old["warnings"]).split("\n") if message]
    else:
        prepared, recording = outcome.prepared, outcome.recording
        assert prepared is not None and recording is not None
        warnings = prepared.warnings
        index_row.update(
            original_fs=recording.fs,
            original_samples=recording.original_samples,
            lead_mask=mask_string(prepared.lead_mask),
            flat_mask=mask_string(prepared.flat_mask),
            warnings="\n".join(warnings),
            input_files=reuse.encode_files(outcome.files),
            sex=recording.sex,
            age="" if recording.age is None else f"{recording.age:g}",
            signal_fingerprint=signal_fingerprint(prepared.rows, prepared.lead_mask, prepared.flat_mask),
            **({} if prepared.rhythm is None else dict(zip(RHYTHM_COLUMNS, prepared.rhythm.tolist()))),
        )
        writer.append(prepared.rows, index_row, prepared.window, lead_mask=prepared.lead_mask)
        report.reprocessed += 1
        report.reprocess_reasons[job.reason] += 1
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


def read_failures(store_dir: Path) -> pd.DataFrame:
    """The `failures.csv` of a store folder (`record_id`, `reason`), as `write_failures` wrote it."""
    return pd.read_csv(store_dir / FAILURES_FILE, dtype=str, keep_default_na=False)


def write_label_exports(directory: Path, store: RecordStore) -> None:
    """The notebook-compatible exports: `label_map.json` and `labels.npy` (store order)."""
    atomic_write_json(directory / LABEL_MAP_FILE, {label: index for index, label in enumerate(LABELS)})
    labels = store.index["label_index"].to_numpy(dtype=np.int64) if len(store) else np.zeros(0, np.int64)
    buffer = io.BytesIO()
    np.save(buffer, labels)
    atomic_write_bytes(directory / LABELS_FILE, buffer.getvalue())
