"""The processed-record store: contiguous, memory-mappable `.npy` shards plus an index table.

Layout of a store folder::

    manifest.json             commit point: generation, shards, index file, shape, dtype
    index-<generation>.csv    one row per record (id, label, masks, provenance, shard, offset)
    signals-<generation>-00000.npy   float16 [n, 12, 5000], streamed to disk row by row

Writers stream rows straight to the shard file (memory stays flat however large the
dataset), then publish a new generation by atomically replacing `manifest.json`. Readers
only ever follow the manifest, so a crash mid-write leaves the previous generation intact.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ecg_assets.core.storage import atomic_write_json, atomic_write_text, fsync_directory, read_json

MANIFEST = "manifest.json"
SIGNAL_DTYPE = np.dtype("<f2")
DEFAULT_SHARD_SIZE = 1024
FORMAT_VERSION = 1
EMPTY_INDEX_COLUMNS = ("record_id", "label", "label_index", "shard", "offset")


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype.str, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


class _ShardWriter:
    """Appends rows to a `.npy` file; the header is rewritten with the final row count on close."""

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype, capacity: int):
        self.path, self.row_shape, self.dtype = path, row_shape, dtype
        self.tmp_path = path.with_name(f".{path.name}.tmp")
        self.header_size = len(_npy_header((capacity, *row_shape), dtype))
        self.handle = self.tmp_path.open("wb")
        self.handle.write(_npy_header((capacity, *row_shape), dtype))
        self.count = 0

    def append(self, row: np.ndarray) -> None:
        self.handle.write(np.ascontiguousarray(row, dtype=self.dtype).tobytes())
        self.count += 1

    def close(self) -> None:
        header = _npy_header((self.count, *self.row_shape), self.dtype)
        if len(header) != self.header_size:  # numpy pads headers so the row count can change in place
            raise RuntimeError("npy header size changed; cannot finalise shard in place")
        self.handle.seek(0)
        self.handle.write(header)
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp_path, self.path)

    def discard(self) -> None:
        self.handle.close()
        self.tmp_path.unlink(missing_ok=True)


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
        directory.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> "RecordStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()

    def append(self, signal: np.ndarray, row: dict[str, Any]) -> None:
        """Add one record (`signal` shaped `row_shape`) with its index row."""
        if signal.shape != self.row_shape:
            raise ValueError(f"signal shape {signal.shape} != store row shape {self.row_shape}")
        if self._shard is None:
            name = f"signals-{self.generation}-{len(self._shards):05d}.npy"
            self._shard = _ShardWriter(self.directory / name, self.row_shape, SIGNAL_DTYPE, self.shard_size)
        self.rows.append({**row, "shard": len(self._shards), "offset": self._shard.count})
        self._shard.append(signal)
        if self._shard.count == self.shard_size:
            self._close_shard()

    def _close_shard(self) -> None:
        assert self._shard is not None
        self._shard.close()
        self._shards.append({"file": self._shard.path.name, "count": self._shard.count})
        self._shard = None

    def commit(self, metadata: dict[str, Any] | None = None) -> "RecordStore":
        """Finish the last shard, write the index, then atomically switch the manifest."""
        if self._shard is not None:
            self._close_shard()
        index_name = f"index-{self.generation}.csv"
        index = pd.DataFrame(self.rows) if self.rows else pd.DataFrame(columns=list(EMPTY_INDEX_COLUMNS))
        atomic_write_text(self.directory / index_name, index.to_csv(index=False))
        manifest = {
            "format_version": FORMAT_VERSION,
            "generation": self.generation,
            "count": len(self.rows),
            "row_shape": list(self.row_shape),
            "dtype": SIGNAL_DTYPE.str,
            "index_file": index_name,
            "shards": self._shards,
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
        for shard in self._shards:
            (self.directory / shard["file"]).unlink(missing_ok=True)
        self._shards = []

    def _remove_other_generations(self) -> None:
        for path in self.directory.iterdir():
            is_store_file = path.name.startswith(("signals-", "index-"))
            if is_store_file and self.generation not in path.name:
                path.unlink(missing_ok=True)
        fsync_directory(self.directory)


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
            dtype={"record_id": str, "patient_id": str, "native_labels": str, "lead_mask": str, "flat_mask": str},
            keep_default_na=False,
        )
        self._shards = [np.load(self.directory / shard["file"], mmap_mode="r") for shard in self.manifest["shards"]]
        self._shard_of = self.index["shard"].to_numpy(dtype=np.int64) if len(self.index) else np.zeros(0, np.int64)
        self._offset_of = self.index["offset"].to_numpy(dtype=np.int64) if len(self.index) else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def row_shape(self) -> tuple[int, int]:
        return tuple(self.manifest["row_shape"])  # type: ignore[return-value]

    @property
    def generation(self) -> str:
        return str(self.manifest["generation"])

    def files(self) -> list[Path]:
        """Every file of the committed generation (manifest, index, shards)."""
        names = [MANIFEST, self.manifest["index_file"], *(shard["file"] for shard in self.manifest["shards"])]
        return [self.directory / name for name in names]

    def nbytes(self) -> int:
        return sum(path.stat().st_size for path in self.files())

    def signals(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 `[len(indices), 12, L]` for the given record positions, gathered per shard."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.row_shape), dtype=np.float32)
        shards = self._shard_of[indices]
        for shard in np.unique(shards):
            selected = np.flatnonzero(shards == shard)
            out[selected] = self._shards[shard][self._offset_of[indices[selected]]]
        return out

    def signal(self, index: int) -> np.ndarray:
        return self.signals([index])[0]
