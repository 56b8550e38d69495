"""QRS detection and rhythm features: synthetic ECGs with known beats, and MIT-BIH record 100."""

import numpy as np
import pytest

from ecg_assets.core.rhythm import (
    N_RHYTHM_FEATURES,
    RHYTHM_FEATURE_NAMES,
    detect_qrs,
    rhythm_features,
    rhythm_features_from_beats,
)

FS = 500.0


def synthetic_ecg(
    beats_s: np.ndarray, duration_s: float, fs: float = FS, noise: float = 0.05, seed: int = 0
) -> np.ndarray:
    """A lead with a narrow QRS spike (R 1.0, S -0.3) at every beat time, P and T waves, baseline wander
    and white noise, z-scored like the store's signals."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(duration_s * fs)) / fs
    x = 0.3 * np.sin(2 * np.pi * 0.2 * t) + noise * rng.normal(size=t.size)
    for beat in beats_s:
        x += 1.0 * np.exp(-0.5 * ((t - beat) / 0.010) ** 2)  # R
        x -= 0.3 * np.exp(-0.5 * ((t - beat - 0.03) / 0.010) ** 2)  # S
        x += 0.15 * np.exp(-0.5 * ((t - beat + 0.16) / 0.025) ** 2)  # P
        x += 0.3 * np.exp(-0.5 * ((t - beat - 0.3) / 0.05) ** 2)  # T
    return ((x - x.mean()) / x.std()).astype(np.float32)


def regular_beats(rate_bpm: float, duration_s: float, start_s: float = 0.4) -> np.ndarray:
    return np.arange(start_s, duration_s - 0.5, 60.0 / rate_bpm)


def irregular_beats(duration_s: float, seed: int = 1) -> np.ndarray:
    """AF-like: independent RR intervals between 0.4 and 1.1 s."""
    rng = np.random.default_rng(seed)
    rr = rng.uniform(0.4, 1.1, size=int(duration_s / 0.4))
    beats = 0.4 + np.concatenate([[0.0], np.cumsum(rr)])
    return beats[beats < duration_s - 0.5]


def match(detected_samples: np.ndarray, true_s: np.ndarray, fs: float, tolerance_s: float = 0.05) -> tuple[int, int]:
    """(true beats found within the tolerance, detections matching no true beat)."""
    detected_s = np.asarray(detected_samples) / fs
    found = sum(np.any(np.abs(detected_s - beat) <= tolerance_s) for beat in true_s)
    extra = sum(not np.any(np.abs(true_s - beat) <= tolerance_s) for beat in detected_s)
    return found, extra


@pytest.mark.parametrize("rate_bpm", [45, 75, 150])
def test_regular_rhythm_every_beat_found_once(rate_bpm):
    beats = regular_beats(rate_bpm, 30.0)
    detected = detect_qrs(synthetic_ecg(beats, 30.0)[None], FS)
    assert match(detected, beats, FS) == (len(beats), 0)


def test_irregular_rhythm_every_beat_found_once():
    beats = irregular_beats(60.0)
    detected = detect_qrs(synthetic_ecg(beats, 60.0, seed=3)[None], FS)
    assert match(detected, beats, FS) == (len(beats), 0)


def test_detection_ignores_polarity():
    beats = regular_beats(80, 20.0)
    signal = synthetic_ecg(beats, 20.0)[None]
    np.testing.assert_array_equal(detect_qrs(signal, FS), detect_qrs(-signal, FS))


def test_several_leads_combine_and_absent_leads_are_ignored():
    beats = regular_beats(70, 20.0)
    good = synthetic_ecg(beats, 20.0, seed=1)
    inverted_small = -0.2 * synthetic_ecg(beats, 20.0, seed=2)
    absent = np.zeros_like(good)
    detected = detect_qrs(np.stack([good, absent, inverted_small]), FS)
    assert match(detected, beats, FS) == (len(beats), 0)


@pytest.mark.parametrize("fs", [250.0, 300.0, 360.0, 1000.0])
def test_other_sampling_rates(fs):
    beats = regular_beats(90, 20.0)
    detected = detect_qrs(synthetic_ecg(beats, 20.0, fs=fs)[None], fs)
    assert match(detected, beats, fs) == (len(beats), 0)


def test_a_beat_next_to_an_artefact_is_still_found():
    beats = regular_beats(75, 20.0)
    signal = synthetic_ecg(beats, 20.0)
    t = np.arange(signal.size) / FS
    signal = signal + 12.0 * np.exp(-0.5 * ((t - 10.2) / 0.02) ** 2)  # one movement spike, far larger than a QRS
    found, _ = match(detect_qrs(signal[None], FS), beats, FS)
    assert found >= len(beats) - 1


def test_too_short_or_empty_signals_have_no_beats():
    assert len(detect_qrs(np.zeros((1, 5000), np.float32), FS)) == 0
    assert len(detect_qrs(synthetic_ecg(np.array([0.5]), 1.5)[None], FS)) == 0
    assert len(detect_qrs(np.zeros((0, 5000), np.float32), FS)) == 0


def test_features_have_a_fixed_length_and_stay_finite_whatever_the_input():
    inputs = [
        synthetic_ecg(regular_beats(75, 30.0), 30.0)[None],
        np.zeros((1, 5000), np.float32),
        np.zeros((0, 5000), np.float32),
        np.random.default_rng(0).normal(size=(2, 3000)).astype(np.float32),
        synthetic_ecg(regular_beats(75, 3.0), 3.0)[None],
    ]
    for signal in inputs:
        features = rhythm_features(signal, FS)
        assert features.shape == (N_RHYTHM_FEATURES,) == (len(RHYTHM_FEATURE_NAMES),)
        assert features.dtype == np.float32 and np.isfinite(features).all()


def feature(features: np.ndarray, name: str) -> float:
    return float(features[RHYTHM_FEATURE_NAMES.index(name)])


def test_features_tell_a_regular_rhythm_from_an_irregular_one():
    regular = rhythm_features(synthetic_ecg(regular_beats(75, 60.0), 60.0)[None], FS)
    irregular = rhythm_features(synthetic_ecg(irregular_beats(60.0), 60.0)[None], FS)
    assert feature(regular, "log_heart_rate") == pytest.approx(0.0, abs=0.02)  # 75 bpm
    assert feature(regular, "rr_cv") < 0.02 < 0.2 < feature(irregular, "rr_cv")
    for name in ("rmssd_ratio", "pnn50", "large_drr_fraction", "cosen", "lorenz_occupancy"):
        assert feature(irregular, name) > feature(regular, name), name
    assert feature(regular, "lorenz_origin_fraction") > 0.9 > feature(irregular, "lorenz_origin_fraction")
    assert feature(regular, "template_correlation") > 0.9


def test_premature_beats_are_counted():
    beats = list(regular_beats(60, 40.0))
    for index in (10, 20, 30):  # early beat, then the compensatory pause
        beats[index] -= 0.35
    features = rhythm_features_from_beats(np.asarray(beats), 40.0)
    assert feature(features, "premature_fraction") == pytest.approx(3 / (len(beats) - 2), abs=0.01)


def test_trailing_zero_padding_is_not_part_of_the_record():
    beats = regular_beats(75, 12.0)
    signal = synthetic_ecg(beats, 12.0)[None]
    padded = np.concatenate([signal, np.zeros((1, 4000), np.float32)], axis=1)
    np.testing.assert_array_equal(rhythm_features(signal, FS), rhythm_features(padded, FS))


def test_mit_bih_record_100_against_its_beat_annotations(shared_data):
    wfdb = pytest.importorskip("wfdb", reason="wfdb reads the MIT-BIH annotations")
    path = shared_data / "wfdb_samples" / "100"
    if not path.with_suffix(".atr").is_file():
        pytest.skip(f"MIT-BIH record 100 with its .atr annotations not found at {path}")
    record = wfdb.rdrecord(str(path))
    annotation = wfdb.rdann(str(path), "atr")
    beat_symbols = set("NLRBAaJSVrFejnE/fQ?")
    truth = np.array([s for s, symbol in zip(annotation.sample, annotation.symbol) if symbol in beat_symbols])
    tolerance = round(0.15 * record.fs)
    for leads in (record.p_signal.T[:1], -record.p_signal.T[:1], record.p_signal.T):
        detected = detect_qrs(leads.astype(np.float32), record.fs)
        distance = np.abs(detected[:, None] - truth[None, :])
        sensitivity = np.mean(distance.min(axis=0) <= tolerance)
        positive_predictivity = np.mean(distance.min(axis=1) <= tolerance)
        assert sensitivity > 0.995 and positive_predictivity > 0.995
