"""`python -m benchmarks`: the record store, loader and training against the per-record `.npz` baseline.

Every ratio is measured in this one run, on the same data (`../shared/data/cinc2017`), with the
baseline and the store interleaved so that load from other processes hits both alike; each
figure is the best of `--repeats` runs. Writes `benchmarks/results/latest.json`
(`--only preprocess`: the preprocessing comparison alone, to `benchmarks/results/preprocess.json`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from benchmarks.cinc2017_quality import QUALITY_CONFIG, run_quality
from benchmarks.npz_baseline import npz_loader, preprocess_to_npz
from benchmarks.peak_rss import measure_peak_rss
from ecg_assets.core.data import StoreBatches
from ecg_assets.core.datasets import detect_format
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records
from ecg_assets.core.splits import SplitConfig, stratified_split
from ecg_assets.core.store import RecordStore, allocated_bytes
from ecg_assets.core.training import DeviceSettings, TrainingConfig, _Trainer

logger = logging.getLogger("benchmarks")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "latest.json"
PREPROCESS_RESULTS = RESULTS.with_name("preprocess.json")
# What the CinC 2017 training run measures: carried over from the previous results by `--skip-quality`.
QUALITY_KEYS = ("cinc2017_test_macro_f1", "cinc2017_test_mean_f1_nao", "cinc2017_train_wall_s")
QUALITY_MACHINE_KEYS = ("cinc2017_train_cpu_s", "cinc2017_epochs_run")
BATCH_SIZE = 32


def machine_section() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": [round(value, 2) for value in os.getloadavg()],
    }


def bench_preprocessing(dataset: Path, records, work: Path, repeats: int) -> dict:
    """Records/s of a cold run of both designs producing the same canonical tensors (no long windows, and
    no rhythm features: the baseline computes neither; `benchmarks/rhythm_benchmark.py` measures their cost)."""
    dataset_format = detect_format(dataset)
    like_for_like = RecordProcessingConfig(training_window_s=0, rhythm_features=False)
    ours, baseline = [], []
    for attempt in range(repeats):
        store_dir, npz_dir = work / f"store-{attempt}", work / f"npz-{attempt}"
        started = time.perf_counter()
        store, report = process_records(dataset, dataset_format, records, store_dir, like_for_like)
        ours.append(report.processed / (time.perf_counter() - started))
        started = time.perf_counter()
        files = preprocess_to_npz(dataset, dataset_format, records, npz_dir)
        baseline.append(len(files) / (time.perf_counter() - started))
        logger.info("preprocess attempt %d: store %.0f rec/s, npz %.0f rec/s", attempt + 1, ours[-1], baseline[-1])
    with np.load(files[0]) as archive:  # same tensors, up to float16 rounding
        np.testing.assert_allclose(store.signal(0), archive["signal"], atol=5e-3, rtol=2e-3)
    return {
        "preprocess_records_per_s": max(ours),
        "baseline_preprocess_records_per_s": max(baseline),
        "store_bytes": RecordStore(store_dir).disk_bytes(),
        "baseline_store_bytes": sum(allocated_bytes(path) for path in files),
        "store": RecordStore(store_dir),
        "npz_files": files,
    }


def bench_loader(store: RecordStore, files: list[Path], repeats: int, batches: int = 60) -> dict:
    """Shuffled batches of 32 per second: vectorised memory-map gathers vs per-item `np.load` + DataLoader."""
    labels = store.index["label_index"].to_numpy(dtype=np.int64)

    def ours() -> float:
        loader = StoreBatches(
            store, np.arange(len(store)), labels, BATCH_SIZE, shuffle=True, generator=torch.Generator()
        )
        return _throughput(loader, batches)

    def baseline() -> float:
        return _throughput(npz_loader(files, BATCH_SIZE, num_workers=min(2, os.cpu_count() or 1)), batches)

    ours_rate, baseline_rate = [], []
    for _ in range(repeats):
        ours_rate.append(ours())
        baseline_rate.append(baseline())
    return {"loader_samples_per_s": max(ours_rate), "baseline_loader_samples_per_s": max(baseline_rate)}


def _throughput(loader, batches: int) -> float:
    seen, started = 0, time.perf_counter()
    for step, (signals, _) in enumerate(loader):
        seen += signals.shape[0]
        if step + 1 == batches:
            break
    return seen / (time.perf_counter() - started)


def bench_training_speed(store: RecordStore, repeats: int, batches: int = 12) -> dict:
    """Samples/s of the real training loop (store, crops, augmentation) vs the same steps on in-memory batches."""
    splits = stratified_split(store.index["label"].tolist(), SplitConfig())
    config = TrainingConfig(**{**QUALITY_CONFIG, "log_every_batches": 10**6})
    trainer = _Trainer(store, splits, config, DeviceSettings(device=torch.device("cpu")))
    synthetic = [
        (torch.randn(BATCH_SIZE, *store.row_shape), torch.from_numpy(np.resize(trainer.labels[splits["train"]], 32)))
        for _ in range(4)
    ]

    def loop() -> float:
        started = time.perf_counter()
        trainer.train_one_epoch(max_batches=batches)
        return batches * BATCH_SIZE / (time.perf_counter() - started)

    def model_only() -> float:
        trainer.model.train()
        started = time.perf_counter()
        for step in range(1, batches + 1):
            signals, targets = synthetic[step % len(synthetic)]
            trainer.train_step(signals, targets, step, last=False)
        return batches * BATCH_SIZE / (time.perf_counter() - started)

    loop(), model_only()  # warm-up: first-touch of weights and pages
    train_rate, model_rate = [], []
    for _ in range(repeats):
        model_rate.append(model_only())
        train_rate.append(loop())
    return {"train_samples_per_s": max(train_rate), "model_only_samples_per_s": max(model_rate)}


def previous_quality(path: Path) -> dict | None:
    """The training-run figures of an earlier results file (None when it has none)."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if previous.get("cinc2017_test_mean_f1_nao") is None:
        return previous.get("quality_from")  # itself carried over: keep pointing at the run that measured it
    machine = previous.get("machine", {})
    return {
        "note": "not measured in this run (--skip-quality): the CinC 2017 training run's figures from an earlier run",
        "date": machine.get("date"),
        "loadavg_start": machine.get("loadavg_start"),
        **{key: previous.get(key) for key in QUALITY_KEYS},
        **{key: machine.get(key) for key in QUALITY_MACHINE_KEYS},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding cinc2017/")
    parser.add_argument(
        "--output", type=Path, default=None, help=f"default: {RESULTS} ({PREPROCESS_RESULTS} with --only)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip-quality",
        action="store_true",
        help="leave out the CinC 2017 training run (its figures are carried over from the previous results "
        "file under `quality_from`)",
    )
    parser.add_argument(
        "--only", choices=["preprocess"], help="run only this comparison (preprocessing: about a minute)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: all cores, or 1 when the machine is busy)"
    )
    args = parser.parse_args(argv)
    output = args.output or (PREPROCESS_RESULTS if args.only else RESULTS)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    dataset = args.data / "cinc2017"
    if not dataset.is_dir():
        logger.error("CinC 2017 data not found at %s (see ../shared/data/README.md)", dataset)
        return 2
    results: dict = {}
    busy = os.getloadavg()[0] > 1.0
    torch.set_num_threads(args.threads or (1 if busy else (os.cpu_count() or 1)))
    machine = machine_section()
    machine["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "default")
    records = build_label_mapping(dataset, "cinc2017").included
    with tempfile.TemporaryDirectory(prefix="ecg-bench-") as scratch:
        work = Path(scratch)
        pre = bench_preprocessing(dataset, records, work / "pre", args.repeats)
        store, files = pre.pop("store"), pre.pop("npz_files")
        results.update(pre)
        results["preprocess_speedup"] = pre["preprocess_records_per_s"] / pre["baseline_preprocess_records_per_s"]
        if not args.only:
            results.update(bench_rest(args, records, store, files, work, machine, output))
    machine["loadavg_end"] = [round(value, 2) for value in os.getloadavg()]
    results = {key: round(value, 4) if isinstance(value, float) else value for key, value in results.items()}
    results["machine"] = machine
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    logger.info("wrote %s", output)
    return 0


def bench_rest(args, records, store: RecordStore, files: list[Path], work: Path, machine: dict, output: Path) -> dict:
    """Loader, memory, training speed and (unless skipped) the CinC 2017 training run."""
    results: dict = {}
    results.update(bench_loader(store, files, args.repeats))
    results["loader_speedup"] = results["loader_samples_per_s"] / results["baseline_loader_samples_per_s"]
    for n in (500, len(records)):
        key = "peak_rss_mb_500_records" if n == 500 else "peak_rss_mb_3000_records"
        results[key] = measure_peak_rss(args.data, n, work / f"rss-{n}")
        shutil.rmtree(work / f"rss-{n}", ignore_errors=True)
    quality_dir = work / "quality"
    quality = None if args.skip_quality else run_quality(args.data, quality_dir)
    training_store = RecordStore(quality_dir / "processed") if quality else store
    results.update(bench_training_speed(training_store, args.repeats))
    results["cinc2017_test_macro_f1"] = quality.test_macro_f1 if quality else None
    results["cinc2017_test_mean_f1_nao"] = quality.test_mean_f1_nao if quality else None
    results["cinc2017_train_wall_s"] = quality.train_wall_s if quality else None
    machine["cinc2017_train_cpu_s"] = quality.train_cpu_s if quality else None
    machine["cinc2017_epochs_run"] = quality.epochs_run if quality else None
    if quality is None:
        results["training_speed_store"] = "canonical 10-s tensors only (no long windows: --skip-quality)"
        results["quality_from"] = previous_quality(output)
    return results


if __name__ == "__main__":
    sys.exit(main())
