"""The rhythm features of issue 11 on their own: QRS detector accuracy and cost, and what the features
are worth without the network.

* `--detector`: sensitivity and positive predictivity of `detect_qrs` against the beat annotations
  of MIT-BIH record 100 (150 ms tolerance; lead MLII, inverted MLII, both leads), next to
  `wfdb.processing.xqrs_detect` on MLII; then the CPU cost per CinC 2017 record of the detector
  and of the whole feature vector, interleaved with the preprocessing of the same records (the
  cost it adds to `processed_records`). Writes `results/qrs_detector.json`.
* `--features-only`: the 5-fold partition of `cinc2017_quality --cv` (seed 42), a logistic regression
  and a gradient-boosting classifier on the feature vector alone. Writes
  `results/cv_features_only_<classifier>.json`.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.benchmark_results import write_result
from benchmarks.cinc2017_quality import NAO, _cpu_seconds, build_store, cv_partition, nao_scores
from ecg_assets.core.datasets import detect_format
from ecg_assets.core.preprocessing import RecordPreparer, RecordProcessingConfig
from ecg_assets.core.record_features import compute_rhythm_features
from ecg_assets.core.rhythm import RHYTHM_FEATURE_NAMES, detect_qrs, rhythm_features

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


def _sensitivity_ppv(detected: np.ndarray, truth: np.ndarray, tolerance: int) -> tuple[float, float]:
    """Greedy one-to-one matching within `tolerance` samples: (sensitivity, positive predictivity)."""
    detected = np.sort(detected)
    used = np.zeros(len(detected), dtype=bool)
    matched = 0
    for beat in truth:
        at = np.searchsorted(detected, beat)
        candidates = [c for c in (at - 1, at) if 0 <= c < len(detected) and not used[c]]
        candidates = [c for c in candidates if abs(int(detected[c]) - int(beat)) <= tolerance]
        if candidates:
            best = min(candidates, key=lambda c: abs(int(detected[c]) - int(beat)))
            used[best] = True
            matched += 1
    return matched / max(len(truth), 1), matched / max(len(detected), 1)


def detector_benchmark(records: int = 600) -> dict:
    import wfdb
    from wfdb import processing

    path = DATA / "wfdb_samples" / "100"
    record, annotation = wfdb.rdrecord(str(path)), wfdb.rdann(str(path), "atr")
    truth = np.array([s for s, symbol in zip(annotation.sample, annotation.symbol) if symbol in BEAT_SYMBOLS])
    tolerance = round(0.15 * record.fs)
    leads = record.p_signal.T.astype(np.float32)
    accuracy = {}
    for name, signal in (("MLII", leads[:1]), ("MLII inverted", -leads[:1]), ("MLII + V5", leads)):
        started = time.process_time()
        detected = detect_qrs(signal, record.fs)
        seconds = time.process_time() - started
        sensitivity, ppv = _sensitivity_ppv(detected, truth, tolerance)
        accuracy[name] = {"sensitivity": sensitivity, "ppv": ppv, "detections": len(detected), "cpu_s": seconds}
    started = time.process_time()
    reference = np.asarray(processing.xqrs_detect(leads[0].astype(np.float64), record.fs, verbose=False))
    seconds = time.process_time() - started
    sensitivity, ppv = _sensitivity_ppv(reference, truth, tolerance)
    accuracy["xqrs_detect MLII (wfdb, reference only)"] = {
        "sensitivity": sensitivity,
        "ppv": ppv,
        "detections": len(reference),
        "cpu_s": seconds,
    }
    # Cost on CinC 2017 records, interleaved with their own preprocessing (the load hits both alike).
    dataset = DATA / "cinc2017"
    layout = detect_format(dataset)
    entries = layout.scan(dataset).entries[:records]
    preparer = RecordPreparer(RecordProcessingConfig())
    cost = {"preprocess": 0.0, "detect": 0.0, "features": 0.0}
    signal_seconds = 0.0
    for entry in entries:
        started = time.process_time()
        _, prepared = preparer.read(dataset, layout, entry)
        cost["preprocess"] += time.process_time() - started
        signal = (prepared.window if prepared.window is not None else prepared.rows).astype(np.float32)
        signal_seconds += signal.shape[-1] / 500.0
        started = time.process_time()
        detect_qrs(signal, 500.0)
        cost["detect"] += time.process_time() - started
        started = time.process_time()
        rhythm_features(signal, 500.0)
        cost["features"] += time.process_time() - started
    return {
        "mit_bih_100": {"beats": len(truth), "tolerance_ms": 150, "fs": record.fs, "results": accuracy},
        "cinc2017_records": len(entries),
        "mean_record_seconds": signal_seconds / len(entries),
        "cpu_ms_per_record": {key: 1000 * value / len(entries) for key, value in cost.items()},
        "cpu_ms_per_10_s_of_signal": {key: 10_000 * value / signal_seconds for key, value in cost.items()},
        "note": "features include detection; preprocess = read + resample + z-score of the same record",
    }


def features_only(work_dir: Path) -> list[tuple[str, dict]]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    store = build_store(DATA, work_dir)
    started = _cpu_seconds()
    features = compute_rhythm_features(store)
    feature_cpu = _cpu_seconds() - started
    labels = store.index["label_index"].to_numpy(dtype=np.int64)
    partition = cv_partition(labels)
    classifiers = {
        "logistic_regression": lambda: make_pipeline(
            StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
        ),
        "gradient_boosting": lambda: HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.05, class_weight="balanced", random_state=0
        ),
    }
    results = []
    for name, make in classifiers.items():
        folds, started = [], _cpu_seconds()
        for held_out in partition:
            train = np.setdiff1d(np.arange(len(labels)), held_out)
            predicted = make().fit(features[train], labels[train]).predict(features[held_out])
            folds.append(nao_scores(labels[held_out], predicted))
        scores = np.array([fold["mean_f1_nao"] for fold in folds])
        results.append(
            (
                f"cv_features_only_{name}",
                {
                    "mean_f1_nao_mean": float(scores.mean()),
                    "mean_f1_nao_sd": float(scores.std(ddof=1)),
                    "mean_f1_nao_per_fold": scores.round(4).tolist(),
                    "f1_per_class_mean": {label: float(np.mean([f["f1"][label] for f in folds])) for label in NAO},
                    "fit_cpu_s_all_folds": _cpu_seconds() - started,
                    "feature_cpu_s_all_records": feature_cpu,
                    "features": list(RHYTHM_FEATURE_NAMES),
                    "records": len(labels),
                },
            )
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--detector", action="store_true")
    parser.add_argument("--features-only", action="store_true")
    parser.add_argument("--records", type=int, default=600, help="CinC records timed by --detector")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.detector:
        write_result("qrs_detector", detector_benchmark(args.records))
    if args.features_only:
        with tempfile.TemporaryDirectory() as scratch:
            for name, result in features_only(args.work or Path(scratch)):
                write_result(name, result)


if __name__ == "__main__":
    main()
