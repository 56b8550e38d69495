"""The processed-record store: contiguous, memory-mappable `.npy` shards plus an index table.

Layout of a store folder::

    manifest.json             commit point: generation, shards, index file, shape, dtype
    index-<generation>.csv    one row per record (id, label, masks, provenance, shard, offset)
    signals-<generation>-00000.npy   float16 [n, 12, 5000], streamed to disk row by row
    windows-<generation>.npy  optional float16 1-D: a longer window of each long record, present
                              leads only, concatenated (`window_offset`/`window_samples` in the index)

Writers stream rows straight to the shard file (memory stays flat however large the
dataset), then publish a new generation by atomically replacing `manifest.json`. Readers
only ever follow the manifest, so a crash mid-write leaves the previous generation intact;
the next writer deletes what the crashed one left (temporary files, uncommitted shards).
A store folder has one writer at a time (the assets hold the partition lock, `core.locks`).
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ecg_assets.core.atomic_io import (
    atomic_write_json,
    atomic_write_text,
    fsync_directory,
    open_new_file,
    read_json,
    remove_temp_files,
    storage_errors,
    temp_path,
    unlink_quietly,
)

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SIGNAL_DTYPE = np.dtype("<f2")
DEFAULT_SHARD_SIZE = 1024
FORMAT_VERSION = 1
EMPTY_INDEX_COLUMNS = ("record_id", "label", "label_index", "shard", "offset")
# Index columns read back as text whatever they look like (a hash of digits must not become a number).
TEXT_COLUMNS = (
    "record_id",
    "label",
    "native_labels",
    "patient_id",
    "source_file",
    "lead_mask",
    "flat_mask",
    "content_hash",
    "file_signature",
    "warnings",
    "record_key",
    "input_files",
    "sex",
    "age",
    "signal_fingerprint",
)


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype.str, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# Header reserved for a flat array of unknown final length (numpy pads headers to 64 bytes).
_FLAT_CAPACITY = 10**15
NO_WINDOW = -1


def _raw_bytes(array: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, without a copy."""
    return memoryview(array).cast("B") if array.size else memoryview(b"")


class _ShardWriter:
    """Appends rows to a `.npy` file; the header is rewritten with the final row count on close.

    With `row_shape == ()` the file is a flat 1-D array and `append` takes any number of values.
    """

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype, capacity: int):
        self.path, self.row_shape, self.dtype = path, row_shape, dtype
        self.tmp_path = temp_path(path, unique=False)
        self.header_size = len(_npy_header((capacity, *row_shape), dtype))
        with storage_errors(path):
            self.handle = open_new_file(self.tmp_path)
            self.handle.write(_npy_header((capacity, *row_shape), dtype))
        self.count = 0

    def append(self, rows: np.ndarray, line_mask: np.ndarray | None = None) -> None:
        """Append `rows` shaped `[k, *row_shape]` (or any 1-D array for a flat file).

        All-zero lines (absent leads) are skipped with a seek instead of written, so the file is
        sparse on file systems that support it: a single-lead record costs one lead on disk.
        With `line_mask` (one row only), `rows` holds just the lines the mask marks, in order;
        the others are zero.
        """
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        with storage_errors(self.path):
            if data.ndim < 2:
                self.handle.write(_raw_bytes(data))
            else:
                lines = data.reshape(-1, data.shape[-1])
                nonzero = lines.view(np.dtype(f"u{self.dtype.itemsize}")).any(axis=-1)
                if line_mask is None:
                    written = nonzero
                else:
                    written = np.array(line_mask, dtype=bool)
                    written[written] = nonzero
                self._write_lines(lines if nonzero.all() else lines[nonzero], written.tolist())
        if not self.row_shape:
            self.count += data.size
        else:
            self.count += 1 if line_mask is not None else data.shape[0]

    def _write_lines(self, lines: np.ndarray, written: list[bool]) -> None:
        """`lines`: the non-zero lines, in order; `written[i]`: whether line `i` is one of them."""
        line_bytes = self.row_shape[-1] * self.dtype.itemsize
        # One write per run of data lines, one seek per run of zero lines (a dozen lines: plain Python).
        start = taken = 0
        for stop in range(1, len(written) + 1):
            if stop < len(written) and written[stop] == written[start]:
                continue
            if written[start]:
                self.handle.write(_raw_bytes(lines[taken : taken + stop - start]))
                taken += stop - start
            else:
                self.handle.seek((stop - start) * line_bytes, os.SEEK_CUR)
            start = stop

    def close(self) -> None:
        header = _npy_header((self.count, *self.row_shape), self.dtype)
        if len(header) != self.header_size:  # numpy pads headers so the row count can change in place
            raise RuntimeError("npy header size changed; cannot finalise shard in place")
        with storage_errors(self.path):
            self.handle.truncate(self.header_size + self.count * int(np.prod(self.row_shape)) * self.dtype.itemsize)
            self.handle.seek(0)
            self.handle.write(header)
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self.tmp_path, self.path)

    def discard(self) -> None:
        try:
            self.handle.close()  # may flush buffered bytes, and fail again on a full disk
        except OSError:
            pass
        unlink_quietly(self.tmp_path)


class RecordStoreWriter:
    """Stream records into a new store generation; `commit()` publishes it atomically.

    Use as a context manager: an exception discards the new generation's files and leaves the
    previously committed generation untouched.
    """

    def __init__(self, directory: Path, row_shape: tuple[int, int], shard_size: int = DEFAULT_SHARD_SIZE):
        self.directory = directory
        self.row_shape = tuple(row_shape)
        self.shard_size = shard_size
        self.generation = uuid.uuid4().hex[:12]
        self.rows: list[dict[str, Any]] = []
        self._shard: _ShardWriter | None = None
        self._shards: list[dict[str, Any]] = []
        self._windows: _ShardWriter | None = None
        with storage_errors(directory, "creating"):
            directory.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(directory)

    def __enter__(self) -> "RecordStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()

    def append(
        self,
        signal: np.ndarray,
        row: dict[str, Any],
        window: np.ndarray | None = None,
        lead_mask: np.ndarray | None = None,
    ) -> None:
        """Add one record (`signal` shaped `row_shape`) with its index row.

        `window` (optional, `[present leads, samples]`) is a longer view of the same record,
        kept for training crops and multi-window inference; its leads are the `True` entries of
        the row's lead mask, in lead order. With `lead_mask`, `signal` is `[present leads,
        samples]` in the same way (absent leads are zero), which spares building the full row.
        """
        shape = signal.shape if lead_mask is None else (len(lead_mask), signal.shape[-1])
        if shape != self.row_shape or (lead_mask is not None and signal.shape[0] != np.count_nonzero(lead_mask)):
            raise ValueError(f"signal shape {signal.shape} != store row shape {self.row_shape}")
        if self._shard is None:
            name = f"signals-{self.generation}-{len(self._shards):05d}.npy"
            self._shard = _ShardWriter(self.directory / name, self.row_shape, SIGNAL_DTYPE, self.shard_size)
        placement = {"shard": len(self._shards), "offset": self._shard.count}
        placement.update(window_offset=NO_WINDOW, window_samples=0)
        if window is not None and window.size:
            if self._windows is None:
                path = self.directory / f"windows-{self.generation}.npy"
                self._windows = _ShardWriter(path, (), SIGNAL_DTYPE, _FLAT_CAPACITY)
            placement.update(window_offset=self._windows.count, window_samples=int(window.shape[-1]))
            self._windows.append(window.reshape(-1))
        self.rows.append({**row, **placement})
        self._shard.append(signal[None] if lead_mask is None else signal, lead_mask)
        if self._shard.count == self.shard_size:
            self._close_shard()

    def _close_shard(self) -> None:
        assert self._shard is not None
        self._shard.close()
        self._shards.append({"file": self._shard.path.name, "count": self._shard.count})
        self._shard = None

    def commit(self, metadata: dict[str, Any] | None = None, columns: Sequence[str] = ()) -> "RecordStore":
        """Finish the last shard, write the index, then atomically switch the manifest.

        `columns` are the index columns the caller writes: an empty store's index still has them.
        """
        if self._shard is not None:
            self._close_shard()
        windows_file = None
        if self._windows is not None:
            self._windows.close()
            windows_file = self._windows.path.name
        index_name = f"index-{self.generation}.csv"
        empty_columns = list(dict.fromkeys([*EMPTY_INDEX_COLUMNS, *columns, "window_offset", "window_samples"]))
        index = pd.DataFrame(self.rows) if self.rows else pd.DataFrame(columns=empty_columns)
        atomic_write_text(self.directory / index_name, index.to_csv(index=False))
        manifest = {
            "format_version": FORMAT_VERSION,
            "generation": self.generation,
            "count": len(self.rows),
            "row_shape": list(self.row_shape),
            "dtype": SIGNAL_DTYPE.str,
            "index_file": index_name,
            "shards": self._shards,
            "windows_file": windows_file,
            "metadata": metadata or {},
        }
        atomic_write_json(self.directory / MANIFEST, manifest)
        self._remove_other_generations()
        return RecordStore(self.directory)

    def discard(self) -> None:
        """Drop everything this writer wrote; the committed generation stays."""
        if self._shard is not None:
            self._shard.discard()
            self._shard = None
        if self._windows is not None:
            self._windows.discard()
            self._windows = None
        for shard in self._shards:
            unlink_quietly(self.directory / shard["file"])
        self._shards = []

    def _remove_other_generations(self) -> None:
        _remove_store_files(self.directory, keep_generation=self.generation)
        fsync_directory(self.directory)


STORE_FILE_PREFIXES = ("signals-", "index-", "windows-")


def _remove_store_files(directory: Path, keep_generation: str | None) -> list[Path]:
    """Delete the shards, index and windows files of every generation but `keep_generation` (None: all)."""
    removed = []
    for path in directory.iterdir():
        if path.name.startswith(STORE_FILE_PREFIXES) and (keep_generation is None or keep_generation not in path.name):
            unlink_quietly(path)
            removed.append(path)
    return removed


def _remove_leftovers(directory: Path) -> None:
    """Before writing: delete what an interrupted writer left (temporary files, uncommitted generations)."""
    removed = remove_temp_files(directory)
    try:
        committed = read_json(directory / MANIFEST)["generation"]
    except FileNotFoundError:
        committed = None
    except (OSError, ValueError, KeyError, TypeError):
        return  # an unreadable manifest: keep every file for inspection
    removed += _remove_store_files(directory, keep_generation=None if committed is None else str(committed))
    if removed:
        names = ", ".join(sorted(path.name for path in removed)[:5])
        logger.info("removed %d file(s) left by an interrupted write in %s: %s", len(removed), directory, names)


def allocated_bytes(path: Path) -> int:
    """Bytes a file occupies on disk (its size where the platform does not report blocks)."""
    stat = path.stat()
    blocks = getattr(stat, "st_blocks", None)
    return stat.st_size if blocks is None else blocks * 512


@dataclass
class RecordStore:
    """Read side of a committed store: the index table and memory-mapped shards."""

    directory: Path

    def __post_init__(self) -> None:
        manifest_path = self.directory / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no processed-record store at {self.directory} (missing {MANIFEST})")
        self.manifest: dict[str, Any] = read_json(manifest_path)
        self.index = pd.read_csv(
            self.directory / self.manifest["index_file"],
            dtype={column: str for column in TEXT_COLUMNS},
            keep_default_na=False,
            float_precision="round_trip",  # a reused row is written back byte for byte
        )
        self._shards = [np.load(self.directory / shard["file"], mmap_mode="r") for shard in self.manifest["shards"]]
        windows_file = self.manifest.get("windows_file")
        self._windows = np.load(self.directory / windows_file, mmap_mode="r") if windows_file else None
        self._shard_of = self._int_column("shard")
        self._offset_of = self._int_column("offset")
        self.window_offsets = self._int_column("window_offset", NO_WINDOW)
        self.window_samples = self._int_column("window_samples", 0)
        n_leads = self.row_shape[0]
        if "lead_mask" in self.index and len(self.index):
            codes = np.frombuffer("".join(self.index["lead_mask"]).encode(), np.uint8)
            self.lead_masks = codes.reshape(len(self.index), -1) == ord("1")
        else:  # no masks recorded: every lead may hold data
            self.lead_masks = np.ones((len(self.index), n_leads), dtype=bool)
        self._present_leads = [np.flatnonzero(mask) for mask in self.lead_masks]

    def _int_column(self, name: str, default: int = 0) -> np.ndarray:
        if name not in self.index or not len(self.index):
            return np.full(len(self.index), default, dtype=np.int64)
        return self.index[name].to_numpy(dtype=np.int64)

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def row_shape(self) -> tuple[int, int]:
        return tuple(self.manifest["row_shape"])  # type: ignore[return-value]

    @property
    def generation(self) -> str:
        return str(self.manifest["generation"])

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.manifest.get("metadata") or {})

    def files(self) -> list[Path]:
        """Every file of the committed generation (manifest, index, shards, windows)."""
        names = [MANIFEST, self.manifest["index_file"], *(shard["file"] for shard in self.manifest["shards"])]
        if self.manifest.get("windows_file"):
            names.append(self.manifest["windows_file"])
        return [self.directory / name for name in names]

    def nbytes(self) -> int:
        """Logical size of the committed generation's files."""
        return sum(path.stat().st_size for path in self.files())

    def disk_bytes(self) -> int:
        """Bytes the files occupy on disk (smaller than `nbytes` where absent leads left holes)."""
        return sum(allocated_bytes(path) for path in self.files())

    def signals(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 `[len(indices), 12, L]` for the given record positions, gathered per shard.

        Only leads present in at least one of the records are read (the others are zeros in
        the store): a batch of single-lead records reads and converts one lead of twelve.
        """
        indices = np.asarray(indices, dtype=np.int64)
        leads = np.flatnonzero(self.lead_masks[indices].any(axis=0))
        every_lead = len(leads) == self.row_shape[0]
        out = (np.empty if every_lead else np.zeros)((len(indices), *self.row_shape), dtype=np.float32)
        shards = self._shard_of[indices]
        for shard in np.unique(shards):
            selected = np.flatnonzero(shards == shard)
            offsets = self._offset_of[indices[selected]]
            if every_lead:
                out[selected] = self._shards[shard][offsets]
            else:
                out[np.ix_(selected, leads)] = self._shards[shard][np.ix_(offsets, leads)]
        return out

    def signal(self, index: int) -> np.ndarray:
        return self.signals([index])[0]

    def stored_signal(self, index: int) -> np.ndarray:
        """One record exactly as stored (float16 memory-map view, no conversion)."""
        return self._shards[self._shard_of[index]][self._offset_of[index]]

    def stored_rows(self, start: int, stop: int) -> np.ndarray:
        """Records `start:stop` exactly as stored, every lead included (float16 copy), for integrity scans."""
        rows = [self.stored_signal(index) for index in range(start, stop)]
        return np.stack(rows) if rows else np.zeros((0, *self.row_shape), dtype=SIGNAL_DTYPE)

    def window(self, index: int) -> np.ndarray | None:
        """The record's longer window as float32 `[12, samples]` (absent leads zero), or None."""
        if self.window_values(index) is None:
            return None
        return self.window_crops([index], [0], int(self.window_samples[index]))[0]

    def window_crops(
        self, indices: Sequence[int] | np.ndarray, starts: Sequence[int] | np.ndarray, length: int
    ) -> np.ndarray:
        """float32 `[len(indices), 12, length]`: `length` samples from `starts` of each record's window.

        Every record must have a window; samples past its end are zero.
        """
        out = np.zeros((len(indices), self.row_shape[0], length), dtype=np.float32)
        for row, (index, start) in enumerate(zip(np.asarray(indices, np.int64), np.asarray(starts, np.int64))):
            block = self.window_values(int(index))
            if block is None:
                raise ValueError(f"record {index} has no window")
            stop = min(block.shape[-1], int(start) + length)
            out[row, self._present_leads[index], : stop - start] = block[:, start:stop]
        return out

    def window_values(self, index: int) -> np.ndarray | None:
        """The stored window as float16 `[present leads, samples]` (a memory-map view), or None."""
        offset, samples = int(self.window_offsets[index]), int(self.window_samples[index])
        if self._windows is None or offset == NO_WINDOW or samples == 0:
            return None
        leads = len(self._present_leads[index])
        return self._windows[offset : offset + leads * samples].reshape(leads, samples)
