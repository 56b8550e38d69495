"""The design the store replaces: one compressed `.npz` per record, read back one by one.

A faithful re-implementation of the original notebook pipeline's storage: records are read and
preprocessed sequentially with the same code as the store (`dataset_format.read` + `signal.preprocess`),
each one saved with `np.savez_compressed` as float32, and a torch `Dataset` opens and
decompresses one file per item behind a `DataLoader`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from ecg_assets.core.datasets import DatasetFormat
from ecg_assets.core.labels import LABEL_TO_INDEX
from ecg_assets.core.records import RecordEntry
from ecg_assets.core.signal import PreprocessConfig, preprocess


def preprocess_to_npz(
    dataset_dir: Path, dataset_format: DatasetFormat, records: pd.DataFrame, out_dir: Path
) -> list[Path]:
    """Sequentially read, preprocess and `savez_compressed` every record; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = PreprocessConfig()
    written = []
    for row in records.itertuples(index=False):
        entry = RecordEntry(row.record_id, row.source_file, tuple(row.native_labels.split(";")), row.patient_id)
        try:
            recording = dataset_format.read(dataset_dir, entry, max_duration_s=config.target_length / config.target_fs)
            result = preprocess(recording.signal, recording.fs, recording.lead_names, config)
        except Exception:  # the notebook skipped unreadable records too
            continue
        path = out_dir / f"{row.record_id}.npz"
        np.savez_compressed(
            path,
            signal=result.signal.astype(np.float32),
            label=np.int64(LABEL_TO_INDEX[row.mapped_label]),
            lead_mask=result.lead_mask,
        )
        written.append(path)
    return written


class NpzDataset(Dataset):
    """One file open and one decompression per item."""

    def __init__(self, files: list[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with np.load(self.files[index]) as archive:
            return torch.from_numpy(archive["signal"]), torch.as_tensor(int(archive["label"]))


def npz_loader(files: list[Path], batch_size: int, num_workers: int, seed: int = 0) -> DataLoader:
    """The baseline's shuffled `DataLoader` over per-record files."""
    return DataLoader(
        NpzDataset(files),
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )
