"""Readers for WFDB records (`.hea` + signal files) and MAT files, reading only the window needed.

Every way a file can be wrong ends as a `RecordReadError` whose message says what is wrong:
headers that are not UTF-8, truncated or lack a sampling rate; signal files that are missing,
shorter than the header says, or whose samples contradict the header's initial values or
checksums; MAT files without the expected variable or with an unknown layout; empty signals.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import wfdb

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
# A WFDB header is a few KiB at most (a 15-lead PTB header with its clinical notes: 3 KiB).
MAX_HEADER_BYTES = 2**20


@dataclass(frozen=True)
class SignalDefaults:
    """What a dataset.yaml states for files that do not say it themselves."""

    fs: float | None = None
    lead_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class HeaderSummary:
    """The parts of a WFDB header that scans need, parsed without validation.

    `problem` says why the file is not a usable header ('' when it looks like one): empty, not
    text, or without a record line.
    """

    record_line: list[str]
    signal_files: list[str]
    comments: list[str]
    problem: str = ""

    @property
    def has_length(self) -> bool:
        return len(self.record_line) >= 4


def _header_bytes(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_HEADER_BYTES + 1)
    if len(data) > MAX_HEADER_BYTES:
        raise RecordReadError(f"header {path.name} is larger than {MAX_HEADER_BYTES // 2**20} MiB: not a WFDB header")
    return data


def _nul_problem(name: str, data: bytes) -> str:
    position = data.find(b"\0")
    if position < 0:
        return ""
    line = data[:position].count(b"\n") + 1
    return (
        f"header {name} contains NUL bytes (from byte {position}, line {line}): a damaged or incompletely "
        "copied file"
    )


def read_header_text(path: Path, strict: bool = True) -> str:
    """A header's text. Strict mode refuses what is not a text header (NUL bytes, bytes that are not UTF-8,
    more than `MAX_HEADER_BYTES`), naming the line; otherwise undecodable bytes are replaced and NULs dropped."""
    try:
        data = _header_bytes(path)
    except OSError as error:
        raise RecordReadError(f"header {path.name} cannot be read: {error.strerror or error}") from error
    if not strict:
        return data.replace(b"\0", b"").decode("utf-8", errors="replace")
    problem = _nul_problem(path.name, data)
    if problem:
        raise RecordReadError(problem)
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
    problem = ""
    if not text.strip():
        problem = "header is empty"
    elif len(record_line) < 2 or not record_line[1].isdigit():
        problem = "header has no valid record line (name and number of signals)"
    return HeaderSummary(record_line, [spec[0] for spec in specs[1:]], comments, problem)


def header_summary(path: Path) -> HeaderSummary:
    """`summarize_header` of a header file, tolerant (for scans): what is wrong with it goes to `problem`."""
    try:
        data = _header_bytes(path)
    except (OSError, RecordReadError) as error:
        return HeaderSummary([], [], [], str(error) if isinstance(error, RecordReadError) else f"unreadable: {error}")
    summary = summarize_header(data.replace(b"\0", b"").decode("utf-8", errors="replace"))
    problem = _nul_problem(path.name, data) or summary.problem
    return HeaderSummary(summary.record_line, summary.signal_files, summary.comments, problem)


def comment_value(comments: list[str], key: str) -> str | None:
    """The value of a `key: value` header comment (key case-insensitive), or None when absent."""
    for comment in comments:
        name, separator, value = comment.partition(":")
        if separator and name.strip().lower() == key.lower():
            return value.strip()
    return None


def header_comments(header_path: Path) -> list[str]:
    """The `#` comment lines of a WFDB header, without the `#` (undecodable bytes replaced)."""
    return header_summary(header_path).comments


def read_wfdb(
    header_path: Path,
    max_duration_s: float | None = None,
    defaults: SignalDefaults = SignalDefaults(),
    root: Path | None = None,
) -> Recording:
    """Read the ECG channels of a WFDB record in physical units, only the first `max_duration_s` seconds.

    The header and its signal files must lie inside `root` (the dataset folder) when it is given.
    Non-ECG channels are not read. Raises `RecordReadError` with a user-facing reason for any
    malformed input. `Recording.files` lists the header and every signal file it names.
    """
    if root is not None:
        header_path = resolve_inside(root, header_path.absolute())
    text = read_header_text(header_path)
    header = _read_header(header_path, text, defaults)
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
    with _wfdb_record_name(header_path, text, header, sig_len) as record_name:
        digital = _read_digital(record_name, frames, channels)
    _check_against_header(header, names, channels, digital, whole=frames == sig_len)
    signal = np.stack([_to_physical(header, channel, samples) for channel, samples in zip(channels, digital)])
    spf = per_frame.pop()
    unused = [name for channel, name in enumerate(names) if channel not in channels]
    return Recording(
        signal=as_float32(signal, header_path.name),
        fs=float(header.fs) * spf,
        lead_names=[names[channel] for channel in channels],
        original_samples=sig_len * spf,
        notes=[unused_channels_message(unused)] if unused else [],
        files=[header_path, *(header_path.parent / name for name in dict.fromkeys(header.file_name))],
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
    return Recording(as_float32(data / gain, path.name), fs, list(lead_names), total, files=[path])


def as_float32(values: np.ndarray, name: str) -> np.ndarray:
    """`values` as float32; `RecordReadError` when finite values are too large for it (a wrong gain or unit)."""
    converted = values.astype(np.float32)
    if not math.isfinite(np.add.reduce(converted, axis=None, dtype=np.float64)):  # one pass; rare: look closer
        finite = values[np.isfinite(values)]
        if (np.abs(finite) > np.finfo(np.float32).max).any():
            raise RecordReadError(
                f"sample values up to {np.abs(finite).max():.3g} in {name} are too large for 32-bit floats: "
                "the file's gain or units are probably wrong"
            )
    return converted


def _read_header(header_path: Path, text: str, defaults: SignalDefaults) -> wfdb.Record:
    summary = summarize_header(text)
    if summary.problem:
        raise RecordReadError(summary.problem.replace("header", f"header {header_path.name}", 1))
    record_line = summary.record_line
    if "/" in record_line[0]:
        raise RecordReadError("multi-segment WFDB records are not supported")
    n_signals = int(record_line[1])
    if n_signals == 0:
        raise RecordReadError("header describes no signals")
    if len(summary.signal_files) < n_signals:
        raise RecordReadError(
            f"header is truncated: it announces {n_signals} signal(s) but describes {len(summary.signal_files)}"
        )
    if len(summary.signal_files) > n_signals:
        raise RecordReadError(
            f"header is inconsistent: it announces {n_signals} signal(s) but describes "
            f"{len(summary.signal_files)} (its record line or its signal lines are wrong)"
        )
    try:
        with _wfdb_record_name(header_path, text) as record_name:
            header = wfdb.rdheader(record_name)
    except RecordReadError:
        raise
    except Exception as error:  # wfdb raises many types for malformed headers
        raise RecordReadError(f"malformed header: {type(error).__name__}: {error}") from error
    stated_fs = float(header.fs) if len(record_line) >= 3 else None  # wfdb silently assumes 250 Hz
    if stated_fs is None or not (math.isfinite(stated_fs) and stated_fs > 0):
        if defaults.fs is None:
            stated = "no sampling rate" if stated_fs is None else f"an invalid sampling rate ({stated_fs:g})"
            raise RecordReadError(f"header states {stated}; give sampling_rate in dataset.yaml if it is known")
        header.fs = defaults.fs
    return header


@contextlib.contextmanager
def _wfdb_record_name(
    header_path: Path, text: str, header: wfdb.Record | None = None, sig_len: int | None = None
) -> Iterator[str]:
    """A record name `wfdb.rdheader`/`wfdb.rdrecord` can open for this header.

    wfdb opens `NAME.hea` and needs a signal length to read a window. The header's own name serves
    when it is `NAME.hea` and (when reading signals) states its length; otherwise (`NAME.HEA`, or a
    length inferred from the signal files) a copy of the header, completed with `sig_len`, goes into a
    temporary folder beside links to the signal files, which were checked to lie inside the dataset.
    """
    needs_length = header is not None and header.sig_len is None
    if header_path.suffix == ".hea" and not needs_length:
        yield str(header_path.with_suffix(""))
        return
    with tempfile.TemporaryDirectory(prefix="ecg-wfdb-") as scratch:
        lines = text.splitlines()
        if needs_length:
            position = next(index for index, line in enumerate(lines) if line.strip() and line.split()[0][0] != "#")
            tokens = lines[position].split()
            if len(tokens) < 3:
                tokens.append(f"{header.fs:g}")
            lines[position] = " ".join([*tokens[:3], str(sig_len)])
        if header is not None:
            for file_name in dict.fromkeys(header.file_name):
                os.symlink((header_path.parent / file_name).resolve(), os.path.join(scratch, file_name))
        stem = header_path.name.rsplit(".", 1)[0]
        Path(scratch, f"{stem}.hea").write_text("\n".join(lines) + "\n", encoding="utf-8")
        yield os.path.join(scratch, stem)


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


def _read_digital(record_name: str, frames: int, channels: list[int]) -> list:
    """Digital samples of `channels`, first `frames` frames only (wfdb seeks to and reads just those bytes)."""
    try:
        record = wfdb.rdrecord(
            record_name,
            sampfrom=0,
            sampto=frames,
            channels=channels,
            physical=False,
            smooth_frames=False,
            return_res=64,
        )
    except Exception as error:  # wfdb raises many types for malformed signal files
        raise RecordReadError(f"unreadable WFDB signal: {type(error).__name__}: {error}") from error
    return record.e_d_signal


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
