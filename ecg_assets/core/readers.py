"""Low-level readers for the two file families: WFDB records (.hea + signal files) and MAT files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import scipy.io
import wfdb

from ecg_assets.core.records import Recording, RecordReadError


def header_comments(header_path: Path) -> list[str]:
    """The `#` comment lines of a WFDB header, without the `#` (undecodable bytes replaced)."""
    text = header_path.read_bytes().decode("utf-8", errors="replace")
    return [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]


def read_wfdb(header_path: Path, max_duration_s: float | None = None) -> Recording:
    """Read a WFDB record in physical units, only as far as `max_duration_s` when given."""
    record_path = str(header_path.with_suffix(""))
    try:
        header = wfdb.rdheader(record_path)
        fs = float(header.fs or 0.0)
        if fs <= 0 or not math.isfinite(fs):
            raise RecordReadError(f"header gives no valid sampling rate ({header.fs!r})")
        sampto = None
        if max_duration_s is not None and header.sig_len:
            sampto = min(int(header.sig_len), math.ceil(max_duration_s * fs) + 1)
        record = wfdb.rdrecord(record_path, sampto=sampto, physical=True)
    except RecordReadError:
        raise
    except Exception as error:  # wfdb raises many types for malformed input
        raise RecordReadError(f"unreadable WFDB record: {type(error).__name__}: {error}") from error
    if record.p_signal is None or record.p_signal.size == 0:
        raise RecordReadError("WFDB record holds no samples")
    return Recording(
        signal=np.ascontiguousarray(record.p_signal.T, dtype=np.float32),
        fs=fs,
        lead_names=[str(name) for name in (record.sig_name or [])],
        original_samples=int(header.sig_len or record.p_signal.shape[0]),
    )


def read_mat_signal(
    path: Path,
    fs: float,
    lead_names: list[str],
    gain: float = 1.0,
    variable: str = "val",
    max_duration_s: float | None = None,
) -> Recording:
    """Read a `[leads, samples]` matrix from a MAT file whose rate and leads are known from elsewhere."""
    try:
        contents = scipy.io.loadmat(path, variable_names=[variable])
    except Exception as error:
        raise RecordReadError(f"unreadable MAT file: {type(error).__name__}: {error}") from error
    if variable not in contents:
        raise RecordReadError(f"MAT file has no variable {variable!r}")
    data = np.asarray(contents[variable])
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.number):
        raise RecordReadError(f"MAT variable {variable!r} is not a numeric matrix (shape {data.shape})")
    if data.shape[0] != len(lead_names) and data.shape[1] == len(lead_names):
        data = data.T
    if data.shape[0] != len(lead_names):
        raise RecordReadError(f"MAT matrix shape {data.shape} does not match {len(lead_names)} lead(s)")
    original_samples = int(data.shape[1])
    if max_duration_s is not None:
        data = data[:, : math.ceil(max_duration_s * fs) + 1]
    signal = data.astype(np.float32) / np.float32(gain)
    return Recording(signal=signal, fs=fs, lead_names=list(lead_names), original_samples=original_samples)
