"""QRS detection and record-level rhythm features, in plain numpy/scipy.

Irregular RR intervals are what tells atrial fibrillation from sinus rhythm and from other
arrhythmias; a 10-s crop seen by the network holds a dozen beats, the whole record up to 60 s
several times more. `rhythm_features` summarises the beats of a whole (preprocessed) record as
a short fixed-length vector that the network takes next to the signal (`ModelConfig.rhythm_features`).

The detector (`detect_qrs`) is a vectorised energy detector in the spirit of Pan and Tompkins:

1. every present lead is decimated to about 125 Hz (block means) and band-passed 5-18 Hz;
2. the squared derivative of each lead, scaled by its own robust amplitude, is summed over the
   leads (squaring makes it polarity-invariant: inverted leads are found alike) and integrated
   over 100 ms;
3. peaks at least `refractory_s` apart whose height exceeds a fraction of a local reference
   level (the running maximum over 2.5 s, capped near the record's typical beat height so a
   single artefact does not mask its neighbours) are beats; long gaps are searched again with a
   halved threshold; each beat is then placed on the maximum of the energy near the peak.

All transforms of the features are fixed (logarithms, clipping to physiological ranges): no
statistic is fitted on a training set, so nothing needs storing besides the vector itself.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.signal import butter, find_peaks, lfilter, lfilter_zi

DETECTION_FS = 125.0
BAND_HZ = (5.0, 18.0)
INTEGRATION_S = 0.1
REFERENCE_WINDOW_S = 2.5
THRESHOLD = 0.3
REFRACTORY_S = 0.2
# RR intervals outside this range (seconds) are not counted as beat-to-beat intervals.
RR_RANGE_S = (0.24, 2.5)

RHYTHM_FEATURE_NAMES: tuple[str, ...] = (
    "log_heart_rate",  # log(beats per minute / 75) from the median RR
    "rr_cv",  # standard deviation / mean of RR
    "rmssd_ratio",  # RMS of successive RR differences / mean RR
    "median_abs_drr_ratio",  # median |dRR| / median RR: robust irregularity
    "pnn50",  # fraction of |dRR| > 50 ms
    "large_drr_fraction",  # fraction of |dRR| > 15% of the preceding RR
    "cosen",  # coefficient of sample entropy (Lake and Moorman), clipped to [-4, 3], + 1.5
    "lorenz_occupancy",  # AFEv-like: occupied 40-ms bins of the (dRR_i, dRR_i+1) plot / points
    "lorenz_origin_fraction",  # fraction of Lorenz points in the central bin (regular rhythm)
    "premature_fraction",  # short RR (< 85% of the local median) followed by a compensating long one
    "short_rr_fraction",  # RR < 80% of the median RR
    "long_rr_fraction",  # RR > 130% of the median RR
    "rr_range_ratio",  # (90th - 10th percentile of RR) / median RR
    "log_beat_count",  # log(1 + beats) - 4
    "rr_outlier_fraction",  # RR outside the physiological range: detection quality
    "template_correlation",  # median correlation of beats with the median beat (morphology stability)
    "log_duration",  # log(seconds analysed / 30)
    "rr_lag1_correlation",  # correlation of successive RR (bigeminy: negative; AF: about 0)
    "rr_min_ratio",  # shortest RR / median RR
    "rr_max_ratio",  # longest RR / median RR, clipped
    "ectopic_fraction",  # beats whose correlation with the median beat is below 0.7
    "p_wave_consistency",  # median correlation of the pre-QRS segments (-280..-80 ms) with their median
    "atrial_residual",  # log RMS of the pre-QRS segments around their median / QRS amplitude
    "p_wave_amplitude",  # peak-to-peak of the median pre-QRS segment / QRS amplitude
    "high_frequency_noise",  # log RMS of the second difference (noise, muscle artefact), z-scored signal
)
N_RHYTHM_FEATURES = len(RHYTHM_FEATURE_NAMES)
# The store index's columns for the features (written by `core.preprocessing`, one per name).
RHYTHM_COLUMNS: tuple[str, ...] = tuple(f"rhythm_{name}" for name in RHYTHM_FEATURE_NAMES)


@functools.lru_cache(maxsize=16)
def _bandpass(rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 2nd-order Butterworth band-pass at `rate` (b, a) and its steady-state initial conditions."""
    high = min(BAND_HZ[1], 0.45 * rate)
    b, a = butter(2, [BAND_HZ[0], high], btype="bandpass", fs=rate)
    return b, a, lfilter_zi(b, a)


def _zero_phase(x: np.ndarray, rate: float) -> np.ndarray:
    """Band-pass `x` `[leads, samples]` forwards then backwards (no phase shift), each pass started
    in its steady state for the first sample, like `filtfilt` without the edge padding."""
    b, a, zi = _bandpass(rate)
    forward, _ = lfilter(b, a, x, axis=-1, zi=zi[None, :] * x[:, :1])
    backward = forward[:, ::-1]
    result, _ = lfilter(b, a, backward, axis=-1, zi=zi[None, :] * backward[:, :1])
    return result[:, ::-1]


def _decimation(fs: float) -> int:
    return max(1, int(fs // DETECTION_FS))


def _trim_trailing_zeros(signal: np.ndarray) -> np.ndarray:
    """Drop trailing samples that are zero in every lead (zero padding of short records)."""
    nonzero = np.flatnonzero(np.any(signal != 0, axis=0))
    return signal[:, : nonzero[-1] + 1] if len(nonzero) else signal[:, :0]


def qrs_energy(signal: np.ndarray, fs: float) -> tuple[np.ndarray, float]:
    """The combined, lead-normalised QRS energy at the detection rate, and that rate.

    `signal`: `[leads, samples]` (or 1-D). Absent or flat leads (all zero) contribute nothing.
    """
    x = np.atleast_2d(np.asarray(signal, dtype=np.float32))
    factor = _decimation(fs)
    rate = fs / factor
    x = x[np.any(x != 0, axis=-1)]
    usable = x.shape[-1] // factor
    if not len(x) or usable < 2 * round(rate):
        return np.zeros(0, dtype=np.float32), rate
    if factor > 1:
        x = x[:, : usable * factor].reshape(x.shape[0], usable, factor).mean(axis=-1)
    filtered = _zero_phase(x.astype(np.float64), rate)
    slope = np.diff(filtered, axis=-1, prepend=filtered[:, :1])
    energy = slope * slope
    # Each lead scaled by a robust high level of its own energy (its 98th percentile), so every lead counts alike.
    rank = int(0.98 * (energy.shape[-1] - 1))
    scale = np.partition(energy, rank, axis=-1)[:, rank]
    keep = scale > 0
    combined = (energy[keep] / scale[keep, None]).sum(axis=0) / max(int(keep.sum()), 1)
    return combined.astype(np.float32), rate


def detect_qrs(
    signal: np.ndarray, fs: float = 500.0, refractory_s: float = REFRACTORY_S, threshold: float = THRESHOLD
) -> np.ndarray:
    """Sample indices (at `fs`) of the QRS complexes of `signal` (`[leads, samples]` or 1-D).

    Polarity-invariant and multi-lead (every present lead contributes). Records shorter than
    two seconds, or without a non-zero lead, give no beats.
    """
    energy, rate = qrs_energy(signal, fs)
    if len(energy) < 2 * round(rate):
        return np.zeros(0, dtype=np.int64)
    width = max(1, round(INTEGRATION_S * rate))
    integrated = np.convolve(energy, np.full(width, 1.0 / width, dtype=np.float32), mode="same")
    distance = max(1, round(refractory_s * rate))
    candidates, _ = find_peaks(integrated, distance=distance)
    if not len(candidates):
        return np.zeros(0, dtype=np.int64)
    heights = integrated[candidates]
    # Typical beat height: the median of the 1-s blocks' maxima (most seconds hold a beat).
    block = round(rate)
    blocks = len(integrated) // block
    typical = _quantile(np.sort(integrated[: blocks * block].reshape(blocks, block).max(axis=1)), 0.5)
    reference = maximum_filter1d(integrated, size=max(3, round(REFERENCE_WINDOW_S * rate)), mode="nearest")
    reference = np.clip(reference, 0.3 * typical, 2.0 * typical)
    limits = threshold * reference[candidates]
    beats = candidates[heights > limits]
    beats = _search_back(beats, candidates, heights, limits)
    factor = _decimation(fs)
    return _refine(beats, energy, width) * factor + factor // 2


def _search_back(beats: np.ndarray, candidates: np.ndarray, heights: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """In gaps longer than 1.66 median RR, also take the highest candidate above half the threshold."""
    if len(beats) < 3:
        return beats
    rr = np.diff(beats)
    gaps = np.flatnonzero(rr > 1.66 * np.median(rr))
    if not len(gaps):
        return beats
    extra = []
    for gap in gaps:
        start, stop = beats[gap], beats[gap + 1]
        inside = np.flatnonzero((candidates > start) & (candidates < stop) & (heights > 0.5 * limits))
        if len(inside):
            extra.append(candidates[inside[np.argmax(heights[inside])]])
    return np.sort(np.concatenate([beats, np.asarray(extra, dtype=beats.dtype)])) if extra else beats


def _refine(beats: np.ndarray, energy: np.ndarray, width: int) -> np.ndarray:
    """Move each beat to the energy maximum within the integration window around it."""
    if not len(beats):
        return np.zeros(0, dtype=np.int64)
    offsets = np.arange(-width, width // 2 + 1)
    window = np.clip(beats[:, None] + offsets[None, :], 0, len(energy) - 1)
    return window[np.arange(len(beats)), np.argmax(energy[window], axis=1)].astype(np.int64)


def _sample_entropy(rr: np.ndarray, tolerance: float = 0.03) -> float:
    """SampEn(m=1, r=`tolerance` s) of an RR series; without matches, the largest value the series allows."""
    n = len(rr)
    if n < 4:
        return math.nan
    close = np.abs(rr[:, None] - rr[None, :]) <= tolerance
    upper = np.triu(np.ones((n - 1, n - 1), dtype=bool), 1)
    b = np.count_nonzero(close[:-1, :-1] & upper)  # pairs of length-1 templates that match
    a = np.count_nonzero(close[:-1, :-1] & close[1:, 1:] & upper)  # ... and still match at length 2
    if b == 0:
        return math.log((n - 1) * (n - 2) / 2)
    return -math.log(max(a, 1) / b) if a else math.log(b)


def _correlations(segments: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Correlation of every beat's segment with the template, averaged over leads: `[beats]`.

    `segments`: `[leads, beats, samples]`; `template`: `[leads, samples]`.
    """
    segments = segments - segments.mean(axis=-1, keepdims=True)
    template = (template - template.mean(axis=-1, keepdims=True))[:, None, :]
    numerator = (segments * template).sum(axis=-1)
    denominator = np.sqrt((segments * segments).sum(axis=-1) * (template * template).sum(axis=-1)) + 1e-6
    return (numerator / denominator).mean(axis=0)


def _beat_morphology(signal: np.ndarray, beats: np.ndarray, fs: float) -> dict[str, float]:
    """Morphology entries: beat-to-beat stability (QRS-T, -0.2..+0.4 s), ectopic beats, and the atrial
    activity before each QRS (consistent P waves in sinus rhythm, disorganised activity in AF), all
    against the median beat."""
    before, after = round(0.3 * fs), round(0.4 * fs)
    beats = beats[(beats >= before) & (beats + after <= signal.shape[-1])]
    if len(beats) < 3:
        return {}
    step = max(1, round(fs / DETECTION_FS))
    offsets = np.arange(-before, after, step)
    segments = np.asarray(signal, dtype=np.float32)[:, beats[:, None] + offsets[None, :]]  # [leads, beats, samples]
    template = np.median(segments, axis=1)  # the median beat, [leads, samples]
    beat_part = offsets >= -round(0.2 * fs)
    correlation = _correlations(segments[:, :, beat_part], template[:, beat_part])
    atrial_part = (offsets >= -round(0.28 * fs)) & (offsets < -round(0.08 * fs))
    atrial, atrial_template = segments[:, :, atrial_part], template[:, atrial_part]
    p_wave = _correlations(atrial, atrial_template)
    qrs = template[:, np.abs(offsets) <= round(0.05 * fs)]
    qrs_amplitude = float(np.mean(np.ptp(qrs, axis=-1))) + 1e-3
    residual = atrial - atrial.mean(axis=-1, keepdims=True)
    residual -= (atrial_template - atrial_template.mean(axis=-1, keepdims=True))[:, None, :]
    return {
        "template_correlation": float(np.median(correlation)),
        "ectopic_fraction": float(np.mean(correlation < 0.7)),
        "p_wave_consistency": float(np.median(p_wave)),
        "atrial_residual": math.log(float(np.sqrt(np.mean(residual * residual))) / qrs_amplitude + 1e-3) + 3.0,
        "p_wave_amplitude": float(np.mean(np.ptp(atrial_template, axis=-1))) / qrs_amplitude,
    }


def _quantile(ordered: np.ndarray, q: float) -> float:
    """The `q` quantile of a sorted 1-D array (linear interpolation, as `np.quantile`)."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def rhythm_features_from_beats(beats_s: np.ndarray, duration_s: float) -> np.ndarray:
    """The RR-based entries of `RHYTHM_FEATURE_NAMES` (the morphology ones left at 0), from beat times in s."""
    out = np.zeros(N_RHYTHM_FEATURES, dtype=np.float32)
    names = RHYTHM_FEATURE_NAMES
    out[names.index("log_beat_count")] = math.log1p(len(beats_s)) - 4.0
    out[names.index("log_duration")] = math.log(max(duration_s, 1.0) / 30.0)
    rr_all = np.diff(beats_s)
    if len(rr_all) < 3:
        out[names.index("rr_outlier_fraction")] = 1.0
        return out
    valid = (rr_all >= RR_RANGE_S[0]) & (rr_all <= RR_RANGE_S[1])
    out[names.index("rr_outlier_fraction")] = 1.0 - valid.mean()
    rr = rr_all[valid]
    if len(rr) < 3:
        return out
    ordered = np.sort(rr)
    mean, median = float(rr.mean()), _quantile(ordered, 0.5)
    drr = np.diff(rr)  # successive differences (may span an outlier: rare, kept simple)
    abs_drr = np.abs(drr)
    local = np.sort(np.lib.stride_tricks.sliding_window_view(np.pad(rr, 2, mode="edge"), 5), axis=1)[:, 2]
    premature = (rr[:-1] < 0.85 * local[:-1]) & (rr[1:] > 1.1 * local[1:])
    entropy = _sample_entropy(rr)
    cosen = entropy + math.log(2 * 0.03) - math.log(mean) if math.isfinite(entropy) else -2.0
    lorenz = np.floor(np.stack([drr[:-1], drr[1:]], axis=1) / 0.04 + 0.5).astype(np.int64)
    occupied = len(np.unique(lorenz[:, 0] * 1000 + lorenz[:, 1])) if len(lorenz) else 0
    lag1 = float(np.corrcoef(rr[:-1], rr[1:])[0, 1]) if len(rr) > 3 and rr.std() > 1e-9 else 0.0
    values = {
        "rr_lag1_correlation": lag1 if math.isfinite(lag1) else 0.0,
        "rr_min_ratio": float(ordered[0]) / median,
        "rr_max_ratio": float(ordered[-1]) / median,
        "log_heart_rate": math.log(60.0 / median / 75.0),
        "rr_cv": float(rr.std()) / mean,
        "rmssd_ratio": math.sqrt(float(np.mean(drr * drr))) / mean,
        "median_abs_drr_ratio": _quantile(np.sort(abs_drr), 0.5) / median,
        "pnn50": float(np.mean(abs_drr > 0.05)),
        "large_drr_fraction": float(np.mean(abs_drr > 0.15 * rr[:-1])),
        "cosen": float(np.clip(cosen, -4.0, 3.0)) + 1.5,
        "lorenz_occupancy": occupied / max(len(lorenz), 1),
        "lorenz_origin_fraction": float(np.mean(np.all(lorenz == 0, axis=1))) if len(lorenz) else 0.0,
        "premature_fraction": float(np.mean(premature)),
        "short_rr_fraction": float(np.mean(rr < 0.8 * median)),
        "long_rr_fraction": float(np.mean(rr > 1.3 * median)),
        "rr_range_ratio": (_quantile(ordered, 0.9) - _quantile(ordered, 0.1)) / median,
    }
    for name, value in values.items():
        out[names.index(name)] = value
    # Ratios are clipped to a physiological range so a failed detection cannot produce huge inputs.
    return np.clip(out, -3.0, 3.0)


def rhythm_features(signal: np.ndarray, fs: float = 500.0) -> np.ndarray:
    """float32 `[N_RHYTHM_FEATURES]` describing the rhythm of a preprocessed record.

    `signal`: `[present leads, samples]` at `fs` (e.g. the store's longer window, or its
    canonical tensor for short records); trailing all-zero samples (padding) are ignored.
    The order of the entries is `RHYTHM_FEATURE_NAMES`.
    """
    x = _trim_trailing_zeros(np.atleast_2d(np.asarray(signal, dtype=np.float32)))
    x = x[np.any(x != 0, axis=-1)]
    duration = x.shape[-1] / fs
    beats = detect_qrs(x, fs) if len(x) else np.zeros(0, dtype=np.int64)
    out = rhythm_features_from_beats(beats / fs, duration)
    for name, value in (_beat_morphology(x, beats, fs) if len(x) else {}).items():
        out[RHYTHM_FEATURE_NAMES.index(name)] = np.clip(value, -3.0, 3.0)
    if x.shape[-1] > 2:
        second = np.diff(x, n=2, axis=-1)
        noise = math.log(float(np.sqrt(np.mean(second * second))) + 1e-4) + 4.0
        out[RHYTHM_FEATURE_NAMES.index("high_frequency_noise")] = np.clip(noise, -3.0, 3.0)
    return out
