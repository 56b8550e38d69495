"""Readers for WFDB records (`.hea` + signal files) and MAT files, reading only the window needed.

Every way a file can be wrong ends as a `RecordReadError` whose message says what is wrong:
headers that are not UTF-8, truncated or lack a sampling rate; signal files that are missing,
shorter than the header says, or whose samples contradict the header's initial values or
checksums; MAT files without the expected variable or with an unknown layout; empty signals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb
from wfdb.io import _signal as wfdb_signal

from ecg_assets.core.matfiles import mat4_matrices, mat_version, read_mat_matrix
from ecg_assets.core.paths import is_inside, resolve_inside
from ecg_assets.core.records import Recording, RecordReadError
from ecg_assets.core.signal import ecg_channels, no_ecg_lead_message, unused_channels_message

# Bytes per sample of the WFDB storage formats (FLAC formats 508/516/524 are compressed: not checked).
_BYTES_PER_SAMPLE = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5}
_BYTES_PER_SAMPLE.update({"310": 4 / 3, "311": 4 / 3})
# The sample value each format uses for "no data" (read as NaN).
_INVALID_SAMPLE = {"8": -128, "80": -128, "16": -32768, "61": -32768, "160": -32768, "212": -2048}
_INVALID_SAMPLE.update({"24": -(2**23), "32": -(2**31), "310": -512, "311": -512})
DEFAULT_ADC_GAIN = 200.0  # WFDB: a gain of 0 means "uncalibrated, assume 200 units per physical unit"


@dataclass(frozen=True)
class SignalDefaults:
    """What a dataset.yaml states for files that do not say it themselves."""

    fs: float | None = None
    lead_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class HeaderSummary:
    """The parts of a WFDB header that scans need, parsed without validation."""

    record_line: list[str]
    signal_files: list[str]
    comments: list[str]

    @property
    def has_length(self) -> bool:
        return len(self.record_line) >= 4


def read_header_text(path: Path, strict: bool = True) -> str:
    """A header's text; strict mode refuses bytes that are not UTF-8, naming the line."""
    data = path.read_bytes()
    if not strict:
        return data.decode("utf-8", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise RecordReadError(
            f"header {path.name} is not UTF-8 text (byte 0x{data[error.start]:02x} on line {line})"
        ) from error


def summarize_header(text: str) -> HeaderSummary:
    """Record line tokens, signal file names and comments of a header text."""
    lines = [line.strip() for line in text.splitlines()]
    comments = [line.lstrip("#").strip() for line in lines if line.startswith("#")]
    specs = [line.split() for line in lines if line and not line.startswith("#")]
    record_line = specs[0] if specs else []
    return HeaderSummary(record_line, [spec[0] for spec in specs[1:]], comments)


def comment_value(comments: list[str], key: str) -> str | None:
    """The value of a `key: value` header comment (key case-insensitive), or None when absent."""
    for comment in comments:
        name, separator, value = comment.partition(":")
        if separator and name.strip().lower() == key.lower():
            return value.strip()
    return None


def header_comments(header_path: Path) -> list[str]:
    """The `#` comment lines of a WFDB header, without the `#` (undecodable bytes replaced)."""
    return summarize_header(read_header_text(header_path, strict=False)).comments


def read_wfdb(
    header_path: Path,
    max_duration_s: float | None = None,
    defaults: SignalDefaults = SignalDefaults(),
    root: Path | None = None,
) -> Recording:
    """Read the ECG channels of a WFDB record in physical units, only the first `max_duration_s` seconds.

    The header and its signal files must lie inside `root` (the dataset folder) when it is given.
    Non-ECG channels are not read. Raises `RecordReadError` with a user-facing reason for any
    malformed input.
    """
    if root is not None:
        header_path = resolve_inside(root, header_path.absolute())
    header = _read_header(header_path, defaults)
    names = _lead_names(header, defaults)
    channels = ecg_channels(names)
    if not channels:
        raise RecordReadError(no_ecg_lead_message(names))
    sig_len = _check_signal_files(header, header_path.parent, root)
    if sig_len == 0:
        raise RecordReadError("signal is empty (0 samples)")
    per_frame = {header.samps_per_frame[channel] or 1 for channel in channels}
    if len(per_frame) > 1:
        raise RecordReadError(f"ECG leads are sampled at different rates ({sorted(per_frame)} samples per frame)")
    frames = sig_len if max_duration_s is None else min(sig_len, math.ceil(max_duration_s * header.fs) + 1)
    digital = _read_digital(header, header_path.parent, sig_len, frames, channels)
    _check_against_header(header, names, channels, digital, whole=frames == sig_len)
    signal = np.stack([_to_physical(header, channel, samples) for channel, samples in zip(channels, digital)])
    spf = per_frame.pop()
    unused = [name for channel, name in enumerate(names) if channel not in channels]
    return Recording(
        signal=signal.astype(np.float32),
        fs=float(header.fs) * spf,
        lead_names=[names[channel] for channel in channels],
        original_samples=sig_len * spf,
        notes=[unused_channels_message(unused)] if unused else [],
    )


def read_mat_signal(
    path: Path,
    fs: float,
    lead_names: list[str] | tuple[str, ...],
    gain: float = 1.0,
    variable: str = "val",
    max_duration_s: float | None = None,
) -> Recording:
    """Read a `[leads, samples]` matrix from a MAT file whose rate and leads are known from elsewhere."""
    if not (math.isfinite(fs) and fs > 0):
        raise RecordReadError(f"invalid sampling rate {fs!r}")
    max_samples = None if max_duration_s is None else math.ceil(max_duration_s * fs) + 1
    data, total = read_mat_matrix(path, variable, len(lead_names), max_samples)
    if total == 0:
        raise RecordReadError("signal is empty (0 samples)")
    return Recording((data / gain).astype(np.float32), fs, list(lead_names), total)


def _read_header(header_path: Path, defaults: SignalDefaults) -> wfdb.Record:
    summary = summarize_header(read_header_text(header_path))
    record_line = summary.record_line
    if len(record_line) < 2 or not record_line[1].isdigit():
        raise RecordReadError(f"header {header_path.name} has no valid record line (name and number of signals)")
    if "/" in record_line[0]:
        raise RecordReadError("multi-segment WFDB records are not supported")
    n_signals = int(record_line[1])
    if n_signals == 0:
        raise RecordReadError("header describes no signals")
    if len(summary.signal_files) < n_signals:
        raise RecordReadError(
            f"header is truncated: it announces {n_signals} signal(s) but describes {len(summary.signal_files)}"
        )
    try:
        header = wfdb.rdheader(str(header_path.with_suffix("")))
    except Exception as error:  # wfdb raises many types for malformed headers
        raise RecordReadError(f"malformed header: {type(error).__name__}: {error}") from error
    stated_fs = float(header.fs) if len(record_line) >= 3 else None  # wfdb silently assumes 250 Hz
    if stated_fs is None or not (math.isfinite(stated_fs) and stated_fs > 0):
        if defaults.fs is None:
            stated = "no sampling rate" if stated_fs is None else f"an invalid sampling rate ({stated_fs:g})"
            raise RecordReadError(f"header states {stated}; give sampling_rate in dataset.yaml if it is known")
        header.fs = defaults.fs
    return header


def _lead_names(header: wfdb.Record, defaults: SignalDefaults) -> list[str]:
    names = [str(name or "").strip() for name in (header.sig_name or [""] * header.n_sig)]
    if all(names) or defaults.lead_names is None:
        return names
    if len(defaults.lead_names) != header.n_sig:
        raise RecordReadError(
            f"header names no leads and dataset.yaml gives {len(defaults.lead_names)} lead name(s) "
            f"for {header.n_sig} signal(s)"
        )
    return list(defaults.lead_names)


def _check_signal_files(header: wfdb.Record, folder: Path, root: Path | None) -> int:
    """Every signal file exists inside `root` and holds what the header says; returns the length in frames."""
    lengths = []
    for file_name in dict.fromkeys(header.file_name):
        path = (folder / file_name).resolve()
        if root is not None and not is_inside(root, path):
            raise RecordReadError(f"header names signal file {file_name}, which lies outside the dataset folder")
        if not path.is_file():
            raise RecordReadError(f"header names signal file {file_name}, which does not exist")
        in_file = [index for index, name in enumerate(header.file_name) if name == file_name]
        fmt, offset = header.fmt[in_file[0]], header.byte_offset[in_file[0]] or 0
        if path.suffix.lower() == ".mat":
            _check_wfdb_mat(path, fmt, offset, len(in_file))
        if fmt not in _BYTES_PER_SAMPLE:
            continue
        frame_bytes = sum(header.samps_per_frame[index] or 1 for index in in_file) * _BYTES_PER_SAMPLE[fmt]
        size = path.stat().st_size
        if header.sig_len is None:
            lengths.append(int(max(size - offset, 0) // frame_bytes))
            continue
        needed = offset + math.ceil(header.sig_len * frame_bytes)
        if size < needed:
            raise RecordReadError(
                f"signal file {file_name} is truncated: {size} bytes, the header's {header.sig_len} samples "
                f"need {needed}"
            )
    if header.sig_len is not None:
        return int(header.sig_len)
    if not lengths:
        raise RecordReadError("header gives no signal length and it cannot be inferred from the signal files")
    return min(lengths)


def _check_wfdb_mat(path: Path, fmt: str, byte_offset: int, n_signals: int) -> None:
    """A `.mat` signal file named by a WFDB header must be the MAT v4 int16 matrix the header describes."""
    version = mat_version(path)
    if version != 4:
        raise RecordReadError(
            f"signal file {path.name} is a MAT v{version} file; a WFDB header can only describe a MAT v4 file"
        )
    matrices = mat4_matrices(path)
    first = matrices[0] if matrices else None
    if first is None or first.data_offset != byte_offset or first.rows != n_signals or fmt != "16":
        found = "nothing" if first is None else f"{first.rows} x {first.cols} {first.dtype} at byte {first.data_offset}"
        raise RecordReadError(
            f"signal file {path.name} does not match its header (header: {n_signals} signal(s), format {fmt}, "
            f"data at byte {byte_offset}; file: {found})"
        )
    if first.dtype.str != "<i2":
        raise RecordReadError(f"signal file {path.name} holds {first.dtype} samples, its header says 16-bit integers")


def _read_digital(header: wfdb.Record, folder: Path, sig_len: int, frames: int, channels: list[int]) -> list:
    """Digital samples of `channels`, first `frames` frames only (wfdb's segment reader seeks and counts)."""
    try:
        return wfdb_signal._rd_segment(
            file_name=header.file_name,
            dir_name=str(folder),
            pn_dir=None,
            fmt=header.fmt,
            n_sig=header.n_sig,
            sig_len=sig_len,
            byte_offset=header.byte_offset,
            samps_per_frame=header.samps_per_frame,
            skew=header.skew,
            init_value=header.init_value,
            sampfrom=0,
            sampto=frames,
            channels=channels,
            ignore_skew=False,
            return_res=64,
        )
    except Exception as error:  # wfdb raises many types for malformed signal files
        raise RecordReadError(f"unreadable WFDB signal: {type(error).__name__}: {error}") from error


def _check_against_header(
    header: wfdb.Record, names: list[str], channels: list[int], digital: list, whole: bool
) -> None:
    """Samples must start at the header's initial values, and (when read whole) match its checksums."""
    skewed = any(header.skew[channel] for channel in channels)
    for channel, samples in zip(channels, digital):
        name, expected_first = names[channel], (header.init_value or [None] * header.n_sig)[channel]
        if expected_first is not None and len(samples) and int(samples[0]) != expected_first:
            raise RecordReadError(
                f"signal file {header.file_name[channel]} does not match its header: lead {name} starts at "
                f"{int(samples[0])}, the header says {expected_first} (corrupt or mismatched file)"
            )
        checksum = (header.checksum or [None] * header.n_sig)[channel]
        if whole and not skewed and checksum is not None and (int(np.sum(samples)) - checksum) % 65536:
            raise RecordReadError(
                f"signal file {header.file_name[channel]} fails the header checksum of lead {name} (corrupt file)"
            )


def _to_physical(header: wfdb.Record, channel: int, samples: np.ndarray) -> np.ndarray:
    gain = header.adc_gain[channel] or DEFAULT_ADC_GAIN
    baseline = header.baseline[channel] or 0
    physical = (samples.astype(np.float64) - baseline) / gain
    invalid = _INVALID_SAMPLE.get(header.fmt[channel])
    if invalid is not None:
        physical[samples == invalid] = np.nan
    return physical
