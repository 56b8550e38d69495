"""Signal processing: canonical 12-lead order, resampling, z-scoring and length fitting."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import numpy as np
from pydantic import BaseModel, Field
from scipy.signal import firwin, resample_poly

LEAD_ORDER: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
N_LEADS = len(LEAD_ORDER)

# Lead names matched case-insensitively; modified (Holter/monitor) leads count as the lead they
# approximate: MLII is the modified lead II of MIT-BIH, MCL1 the modified chest lead V1.
_LEAD_ALIASES: dict[str, str] = {
    **{name.lower(): name for name in LEAD_ORDER},
    "mli": "I",
    "mlii": "II",
    "mliii": "III",
    "ml2": "II",
    **{f"mcl{n}": f"V{n}" for n in range(1, 7)},
}

# A standard deviation below this (in the record's units) counts as a flat lead.
FLAT_STD = 1e-6


class PreprocessConfig(BaseModel):
    """How every record becomes a `[12, target_length]` float tensor."""

    target_fs: float = Field(500.0, gt=0, description="Sampling rate after resampling, Hz.")
    target_length: int = Field(5000, gt=0, description="Samples per record after pad/truncate.")
    resample_warn_ratio: float = Field(
        2.0, ge=1.0, description="Warn when the native rate differs from target_fs by more than this factor."
    )


@dataclass
class PreprocessedSignal:
    """A record in canonical form: `signal` float32 `[12, target_length]`, per-lead masks."""

    signal: np.ndarray
    lead_mask: np.ndarray  # True where the lead was present in the source
    flat_mask: np.ndarray  # True where a present lead was flat (zeros after z-score)
    warnings: list[str] = field(default_factory=list)


def canonical_lead(name: str) -> str | None:
    """The standard lead a channel name denotes (case-insensitive), or None for non-ECG channels."""
    return _LEAD_ALIASES.get(name.strip().lower())


def ecg_channels(lead_names: list[str]) -> list[int]:
    """Positions of the channels that are standard ECG leads (blood pressure, respiration, ... are not)."""
    return [channel for channel, name in enumerate(lead_names) if canonical_lead(name) is not None]


def no_ecg_lead_message(lead_names: list[str]) -> str:
    names = ", ".join(name or "(unnamed)" for name in lead_names)
    return f"no standard ECG lead among channels {names or '(none)'}"


def unused_channels_message(lead_names: list[str]) -> str:
    return f"channels not used (not standard ECG leads): {', '.join(lead_names)}"


def present_leads(
    signal: np.ndarray, lead_names: list[str], samples: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The standard leads a record has, in `LEAD_ORDER`, as float32 `[present, n]` (the first `samples`
    only, when given), and the `[12]` lead mask. The first channel naming a lead wins; others are dropped."""
    if signal.ndim != 2 or signal.shape[0] != len(lead_names):
        raise ValueError(f"signal shape {signal.shape} does not match {len(lead_names)} lead names")
    first: dict[int, int] = {}  # lead index -> channel
    for channel, name in enumerate(lead_names):
        lead = canonical_lead(name)
        if lead is not None:
            first.setdefault(LEAD_ORDER.index(lead), channel)
    leads = sorted(first)
    mask = np.zeros(N_LEADS, dtype=bool)
    mask[leads] = True
    rows = signal[[first[lead] for lead in leads], :samples].astype(np.float32, copy=False)  # indexing copied
    return rows, mask


def to_canonical_leads(signal: np.ndarray, lead_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Reorder channels into `LEAD_ORDER`; missing leads are zero-filled, extra channels dropped.

    Returns the `[12, n]` array and a boolean lead mask. The first channel naming a lead wins.
    """
    rows, mask = present_leads(signal, lead_names)
    out = np.zeros((N_LEADS, signal.shape[1]), dtype=np.float32)
    out[mask] = rows
    return out, mask


def native_samples_needed(fs: float, config: PreprocessConfig) -> int:
    """How many native samples cover `target_length` samples at `target_fs`."""
    return math.ceil(config.target_length * fs / config.target_fs)


def resample(signal: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Polyphase resampling along the last axis (anti-aliased); a no-op at the target rate."""
    if fs <= 0 or not math.isfinite(fs):
        raise ValueError(f"invalid sampling rate {fs!r}")
    up, down = _rate_ratio(fs, target_fs)
    if up == down:
        return signal.astype(np.float32, copy=False)
    signal = signal.astype(np.float32, copy=False)
    taps = _antialias_taps(up, down)  # what resample_poly designs by default, cached
    return resample_poly(signal, up, down, axis=-1, window=taps).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _rate_ratio(fs: float, target_fs: float) -> tuple[int, int]:
    """`target_fs / fs` as a reduced fraction `(up, down)` with `down <= 1000`."""
    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    return ratio.numerator, ratio.denominator


@functools.lru_cache(maxsize=64)
def _antialias_taps(up: int, down: int) -> np.ndarray:
    max_rate = max(up, down)
    taps = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)
    taps.flags.writeable = False
    return taps


def zscore(signal: np.ndarray, check_finite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-lead z-score. Flat leads (std below `FLAT_STD`) become zeros, never NaN.

    Returns the normalised array and a mask of the flat leads. Mean and standard deviation are
    computed in float64 exactly as `ndarray.mean`/`ndarray.std` do, sharing the mean and the
    deviations between them. With `check_finite`, a `ValueError` says when a value is not finite
    (the standard deviations tell, at no extra pass over the samples): in the pipeline the input
    was checked finite, so only float32 overflow while resampling huge values can cause it.
    """
    signal = signal.astype(np.float32, copy=False)
    _, deviations, std = _moments(signal)
    if check_finite and not np.isfinite(std).all():
        raise ValueError(
            "sample values overflow while resampling (they are not finite afterwards): they are too large for "
            "32-bit floats, so the file's gain or units are probably wrong"
        )
    flat = std[..., 0] < FLAT_STD
    safe_std = np.where(std < FLAT_STD, 1.0, std)
    out = (deviations / safe_std).astype(np.float32)
    out[flat] = 0.0
    return out, flat


def _moments(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row float64 mean, deviations from it and standard deviation (keepdims), bit for bit what
    `signal.mean(axis=-1, dtype=np.float64)` and `signal.std(axis=-1, dtype=np.float64)` give."""
    count = signal.shape[-1]
    mean = np.add.reduce(signal, axis=-1, dtype=np.float64, keepdims=True) / count
    deviations = signal - mean
    std = np.sqrt(np.add.reduce(deviations * deviations, axis=-1, keepdims=True) / count)
    return mean, deviations, std


def fit_length(signal: np.ndarray, length: int) -> np.ndarray:
    """Truncate (keep the start) or zero-pad (at the end) along the last axis to `length`."""
    n = signal.shape[-1]
    if n >= length:
        return signal[..., :length]
    pad = [(0, 0)] * (signal.ndim - 1) + [(0, length - n)]
    return np.pad(signal, pad)


@dataclass
class PreprocessedLeads:
    """`preprocess` without the absent leads: `rows` float32 `[present leads, target_length]` in `LEAD_ORDER`."""

    rows: np.ndarray
    lead_mask: np.ndarray
    flat_mask: np.ndarray
    warnings: list[str] = field(default_factory=list)


def preprocess(signal: np.ndarray, fs: float, lead_names: list[str], config: PreprocessConfig) -> PreprocessedSignal:
    """Canonical leads, crop, resample, z-score, fit length: one record end to end.

    Raises `ValueError` with a user-facing reason for inputs that cannot give a valid tensor
    (no standard ECG lead, non-finite samples, invalid rate, empty signal).
    """
    leads = preprocess_leads(signal, fs, lead_names, config)
    normalised = np.zeros((N_LEADS, config.target_length), dtype=np.float32)  # absent leads stay zero
    normalised[leads.lead_mask] = leads.rows
    return PreprocessedSignal(normalised, leads.lead_mask, leads.flat_mask, leads.warnings)


def preprocess_leads(
    signal: np.ndarray, fs: float, lead_names: list[str], config: PreprocessConfig
) -> PreprocessedLeads:
    """`preprocess`, keeping only the leads the record has (what the store writes)."""
    span = _native_span(signal, fs, lead_names, config)
    return _normalised(span, resample(span.present, fs, config.target_fs), config)


def preprocess_spans(
    signal: np.ndarray, fs: float, lead_names: list[str], configs: Sequence[PreprocessConfig]
) -> list[PreprocessedLeads]:
    """`[preprocess_leads(signal, fs, lead_names, config) for config in configs]`, bit for bit, with one
    resampling: configs that differ only in `target_length` (a canonical window and a longer one)
    start at the same sample, so the shorter spans reuse the longest one's resampled samples and
    recompute only their last few (those that see the span's end) from a short tail."""
    if len({(config.target_fs, config.resample_warn_ratio) for config in configs}) > 1:
        raise ValueError("spans must share target_fs and resample_warn_ratio")
    spans = [_native_span(signal, fs, lead_names, config) for config in configs]  # every check, in order
    longest = max(spans, key=lambda span: span.present.shape[-1])
    resampled = resample(longest.present, fs, configs[0].target_fs)
    return [
        _normalised(
            span,
            resampled if span is longest else _resampled_start(span.present, resampled, fs, config.target_fs),
            config,
        )
        for span, config in zip(spans, configs)
    ]


@dataclass
class _NativeSpan:
    present: np.ndarray  # float32 [present leads, native samples], cropped
    lead_mask: np.ndarray
    flat: np.ndarray  # per present lead
    warnings: list[str]


def _native_span(signal: np.ndarray, fs: float, lead_names: list[str], config: PreprocessConfig) -> _NativeSpan:
    """The checked native samples one config needs (every `ValueError` of `preprocess` is raised here)."""
    warnings: list[str] = []
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"invalid sampling rate {fs!r}")
    if signal.ndim != 2 or signal.shape[-1] == 0:
        raise ValueError(f"empty signal (shape {signal.shape})")
    # Only present leads are cropped, checked, resampled and z-scored: 12x less work for one lead.
    present, lead_mask = present_leads(signal, lead_names, native_samples_needed(fs, config))
    if not lead_mask.any():
        raise ValueError(no_ecg_lead_message(lead_names))
    unused = [name for name in lead_names if canonical_lead(name) is None]
    if unused:
        warnings.append(unused_channels_message(unused))
    if not np.isfinite(present).all():
        bad = int((~np.isfinite(present)).sum())
        raise ValueError(f"{bad} non-finite (NaN or infinite) sample(s)")
    ratio = max(fs, config.target_fs) / min(fs, config.target_fs)
    if ratio > config.resample_warn_ratio:
        warnings.append(f"native rate {fs:g} Hz is {ratio:.1f}x away from {config.target_fs:g} Hz")
    # Flatness is judged on the native samples: resampling filters ring at a constant's edges.
    return _NativeSpan(present, lead_mask, _moments(present)[2][:, 0] < FLAT_STD, warnings)


def _normalised(span: _NativeSpan, resampled: np.ndarray, config: PreprocessConfig) -> PreprocessedLeads:
    rows, _ = zscore(resampled, check_finite=True)
    rows[span.flat] = 0.0
    flat_mask = np.zeros(N_LEADS, dtype=bool)
    flat_mask[span.lead_mask] = span.flat
    warnings = list(span.warnings)
    if flat_mask.any():
        warnings.append("flat lead(s): " + ", ".join(np.asarray(LEAD_ORDER)[flat_mask]))
    return PreprocessedLeads(fit_length(rows, config.target_length), span.lead_mask, flat_mask, warnings)


def _resampled_start(present: np.ndarray, longer: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """`resample(present, fs, target_fs)`, given `longer`: the resampling of samples that start with `present`.

    An output sample depends on the input within the filter's reach (resample_poly's filter has
    10 * max(up, down) taps each side at the up-sampled rate), so all but the last few outputs
    are `longer`'s; those are recomputed from a tail starting at a multiple of `down` (same
    filter phases), well before the first of them.
    """
    up, down = _rate_ratio(fs, target_fs)
    samples = present.shape[-1]
    reach = math.ceil(10 * max(up, down) / up) + 2  # input samples on either side of an output
    start = max(samples - 4 * reach - 2 * down, 0) // down * down
    if up == down or start == 0 or longer.shape[-1] * down < samples * up:
        return resample(present, fs, target_fs)
    tail = resample(present[:, start:], fs, target_fs)
    shift = start * up // down  # the tail's first output is output `shift`
    keep = shift + math.ceil(2 * reach * up / down) + 2  # past the tail's own start-up
    return np.concatenate([longer[:, :keep], tail[:, keep - shift :]], axis=-1)
