import numpy as np
import pytest

from ecg_assets.core.signal import (
    LEAD_ORDER,
    PreprocessConfig,
    _moments,
    canonical_lead,
    fit_length,
    preprocess,
    preprocess_leads,
    preprocess_spans,
    resample,
    to_canonical_leads,
    zscore,
)


def test_lead_names_match_case_insensitively_and_fill_missing_with_mask():
    signal = np.stack([np.full(10, 1.0), np.full(10, 2.0), np.full(10, 3.0)])
    canonical, mask = to_canonical_leads(signal, ["v6", "AVR", "Resp"])
    assert canonical.shape == (12, 10)
    assert mask.tolist() == [name in ("aVR", "V6") for name in LEAD_ORDER]
    assert canonical[LEAD_ORDER.index("V6")][0] == 1.0
    assert canonical[LEAD_ORDER.index("aVR")][0] == 2.0
    assert not canonical[~mask].any()


def test_monitor_lead_aliases():
    assert canonical_lead("MLII") == "II"
    assert canonical_lead("MCL1") == "V1"
    assert canonical_lead("ABP") is None


@pytest.mark.parametrize("fs", [250.0, 300.0, 360.0, 1000.0, 257.0])
def test_resample_changes_length_by_rate_ratio_and_keeps_a_slow_sine(fs):
    t = np.arange(int(fs * 4)) / fs
    out = resample(np.sin(2 * np.pi * 2 * t)[None, :], fs, 500.0)
    assert out.shape[-1] == pytest.approx(2000, abs=2)
    expected = np.sin(2 * np.pi * 2 * np.arange(out.shape[-1]) / 500.0)
    assert np.abs(out[0, 100:-100] - expected[100:-100]).max() < 0.02


def test_resample_is_identity_at_target_rate():
    signal = np.random.default_rng(0).normal(size=(2, 100)).astype(np.float32)
    assert np.array_equal(resample(signal, 500.0, 500.0), signal)


def test_zscore_flat_lead_becomes_zero_not_nan():
    signal = np.stack([np.arange(100, dtype=np.float32), np.full(100, 7.0, np.float32), np.zeros(100, np.float32)])
    out, flat = zscore(signal)
    assert np.isfinite(out).all()
    assert flat.tolist() == [False, True, True]
    assert out[0].mean() == pytest.approx(0, abs=1e-6) and out[0].std() == pytest.approx(1, abs=1e-4)
    assert not out[1:].any()


def test_fit_length_truncates_start_and_pads_end():
    signal = np.arange(10, dtype=np.float32)[None, :]
    assert fit_length(signal, 4).tolist() == [[0, 1, 2, 3]]
    assert fit_length(signal, 12).tolist() == [[*range(10), 0, 0]]


def test_preprocess_single_lead_300hz_goes_to_lead_i():
    fs = 300.0
    signal = np.sin(2 * np.pi * 1.3 * np.arange(int(fs * 30)) / fs)[None, :].astype(np.float32)
    result = preprocess(signal, fs, ["I"], PreprocessConfig())
    assert result.signal.shape == (12, 5000) and result.signal.dtype == np.float32
    assert result.lead_mask.tolist() == [True] + [False] * 11
    assert result.signal[0].std() == pytest.approx(1, abs=0.05)
    assert not result.signal[1:].any()


def test_preprocess_short_record_is_padded_after_normalisation():
    signal = np.random.default_rng(1).normal(size=(12, 2500)).astype(np.float32)
    result = preprocess(signal, 500.0, list(LEAD_ORDER), PreprocessConfig())
    assert not result.signal[:, 2500:].any()
    assert result.signal[:, :2500].std(axis=1) == pytest.approx(np.ones(12), abs=1e-3)


def test_preprocess_warns_for_far_rate_and_flat_lead():
    signal = np.random.default_rng(2).normal(size=(2, 2000)).astype(np.float32)
    signal[1] = 3.0
    result = preprocess(signal, 125.0, ["I", "II"], PreprocessConfig())
    assert any("125 Hz" in message for message in result.warnings)
    assert result.flat_mask.tolist()[:2] == [False, True]
    assert np.isfinite(result.signal).all()


@pytest.mark.parametrize(
    "signal, fs, leads, reason",
    [
        (np.ones((1, 100), np.float32), 0.0, ["I"], "sampling rate"),
        (np.ones((1, 0), np.float32), 500.0, ["I"], "empty signal"),
        (np.ones((2, 100), np.float32), 500.0, ["ABP", "RESP"], "no standard ECG lead"),
        (np.array([[1.0, np.nan, 2.0]], np.float32), 500.0, ["I"], "non-finite"),
    ],
)
def test_preprocess_rejects_unusable_input_with_reason(signal, fs, leads, reason):
    with pytest.raises(ValueError, match=reason):
        preprocess(signal, fs, leads, PreprocessConfig())


@pytest.mark.parametrize("shape", [(1, 3000), (3, 7), (12, 5001), (2, 1)])
def test_moments_are_numpy_mean_and_std_bit_for_bit(shape):
    rng = np.random.default_rng(sum(shape))
    signal = (rng.normal(size=shape) * 300 + 17).astype(np.float32)
    signal[0] = 4.25  # a constant row
    mean, deviations, std = _moments(signal)
    np.testing.assert_array_equal(mean[:, 0], signal.mean(axis=-1, dtype=np.float64))
    np.testing.assert_array_equal(std[:, 0], signal.std(axis=-1, dtype=np.float64))
    np.testing.assert_array_equal(deviations, signal - signal.mean(axis=-1, keepdims=True, dtype=np.float64))


def test_preprocess_leads_is_preprocess_without_the_absent_leads():
    rng = np.random.default_rng(3)
    signal = rng.normal(size=(4, 2000))
    signal[2] = 0.5  # flat
    names = ["V2", "I", "aVF", "Resp"]
    full = preprocess(signal, 360.0, names, PreprocessConfig())
    leads = preprocess_leads(signal, 360.0, names, PreprocessConfig())
    np.testing.assert_array_equal(leads.lead_mask, full.lead_mask)
    np.testing.assert_array_equal(leads.flat_mask, full.flat_mask)
    np.testing.assert_array_equal(leads.rows, full.signal[full.lead_mask])
    assert not full.signal[~full.lead_mask].any()
    assert leads.warnings == full.warnings and len(full.warnings) == 2  # unused channel, flat lead


@pytest.mark.parametrize("fs", [300.0, 257.0, 128.0, 500.0, 1000.0, 44.1])
@pytest.mark.parametrize("seconds", [10.01, 11.0, 30.0, 61.0])
def test_spans_from_one_resampling_are_bit_identical_to_separate_preprocessing(fs, seconds):
    signal = np.random.default_rng(int(fs * seconds)).normal(size=(2, int(fs * seconds))) * 100
    signal[1] = 3.0  # flat
    configs = [PreprocessConfig(), PreprocessConfig(target_length=30000)]
    together = preprocess_spans(signal, fs, ["II", "V5"], configs)
    for config, joint in zip(configs, together):
        alone = preprocess_leads(signal, fs, ["II", "V5"], config)
        np.testing.assert_array_equal(joint.rows, alone.rows)
        np.testing.assert_array_equal(joint.flat_mask, alone.flat_mask)
        assert joint.warnings == alone.warnings


def test_spans_raise_the_first_error_separate_preprocessing_would():
    signal = np.random.default_rng(0).normal(size=(1, 300 * 60))
    signal[0, 9000:9003] = np.nan  # beyond the canonical 10 s: only the longer span fails
    configs = [PreprocessConfig(), PreprocessConfig(target_length=30000)]
    with pytest.raises(ValueError, match="^3 non-finite"):
        preprocess_spans(signal, 300.0, ["I"], configs)
    signal[0, 10] = np.inf  # within the canonical span: its own count
    with pytest.raises(ValueError, match="^1 non-finite"):
        preprocess_spans(signal, 300.0, ["I"], configs)
