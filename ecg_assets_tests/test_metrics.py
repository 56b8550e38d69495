"""Test metrics and their bootstrap intervals."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from ecg_assets.core.metrics import bootstrap_intervals, classification_metrics, format_interval

NAMES = ["MI", "AF", "BBB", "NORM", "OTHER"]


def _predictions(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.choice([1, 3, 4], size=n, p=[0.1, 0.6, 0.3])
    y_pred = np.where(rng.random(n) < 0.75, y_true, rng.choice([1, 3, 4], size=n))
    return y_true, y_pred


def test_each_resample_scores_exactly_as_sklearn():
    """The vectorised resample scores equal sklearn's on the same resamples (same seed, same draws)."""
    y_true, y_pred = _predictions(120)
    classes = [1, 3, 4]
    intervals = bootstrap_intervals(y_true, y_pred, NAMES, classes, resamples=200, seed=7)
    picks = np.random.default_rng(7).integers(0, 120, size=(200, 120))
    expected = {
        "macro_f1": [f1_score(y_true[p], y_pred[p], labels=classes, average="macro", zero_division=0) for p in picks],
        "micro_f1": [f1_score(y_true[p], y_pred[p], labels=classes, average="micro", zero_division=0) for p in picks],
        "weighted_f1": [
            f1_score(y_true[p], y_pred[p], labels=classes, average="weighted", zero_division=0) for p in picks
        ],
        "accuracy": [accuracy_score(y_true[p], y_pred[p]) for p in picks],
    }
    for key, values in expected.items():
        assert intervals[key] == pytest.approx(np.percentile(values, [2.5, 97.5]), abs=1e-4), key
    af = [f1_score(y_true[p], y_pred[p], labels=[1], average=None, zero_division=0)[0] for p in picks]
    assert intervals["per_class"]["AF"] == pytest.approx(np.percentile(af, [2.5, 97.5]), abs=1e-4)


def test_intervals_contain_the_estimate_and_narrow_with_more_records():
    widths = []
    for n in (100, 2000):
        y_true, y_pred = _predictions(n)
        point = classification_metrics(y_true, y_pred, NAMES, [1, 3, 4])
        intervals = bootstrap_intervals(y_true, y_pred, NAMES, [1, 3, 4])
        low, high = intervals["macro_f1"]
        assert low <= point["macro_f1"] <= high and intervals["n_samples"] == n
        assert set(intervals["per_class"]) == {"AF", "NORM", "OTHER"}
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~1/sqrt(20) as wide with 20x the records
    assert bootstrap_intervals(*_predictions(100), NAMES, [1, 3, 4]) == bootstrap_intervals(
        *_predictions(100), NAMES, [1, 3, 4]
    )  # seeded: reproducible


def test_no_records_gives_empty_intervals_not_an_error():
    intervals = bootstrap_intervals(np.zeros(0, int), np.zeros(0, int), NAMES, [1, 3])
    assert intervals["macro_f1"] == [0.0, 0.0] and intervals["n_samples"] == 0


def test_format_interval():
    assert format_interval(0.81234, [0.77, 0.851]) == "0.812 (95% CI 0.770-0.851)"
    assert format_interval(0.5, None) == "0.500"
