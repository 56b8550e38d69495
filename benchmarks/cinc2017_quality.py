"""Train and score on the CinC 2017 subset: the challenge score (mean F1 of N, A, O) on the test split."""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ecg_assets.core.datasets import detect_layout
from ecg_assets.core.evaluation import evaluate_checkpoint
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records
from ecg_assets.core.splits import SplitConfig, stratified_split
from ecg_assets.core.training import DeviceSettings, TrainingConfig, train_model

logger = logging.getLogger("benchmarks.cinc2017")

# The configuration the README quotes: the `trained_model` defaults (ResNet of width 16 with a
# stride-4 stem and kernel 7, random 10-s crops, multi-window inference) trained for 40 epochs.
QUALITY_CONFIG = dict(epochs=40, batch_size=32, learning_rate=2e-3, log_every_batches=1000)
NAO = ("NORM", "AF", "OTHER")  # CinC 2017's N, A and O


@dataclass
class QualityResult:
    test_macro_f1: float
    test_mean_f1_nao: float
    train_wall_s: float
    train_cpu_s: float
    epochs_run: int
    best_epoch: int
    config: dict


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_quality(data_dir: Path, work_dir: Path, overrides: dict | None = None) -> QualityResult:
    """Process CinC 2017 (incrementally), split 80/10/10 with seed 42, train, and score the test split."""
    dataset = data_dir / "cinc2017"
    mapping = build_label_mapping(dataset, "cinc2017")
    store, _ = process_records(
        dataset, detect_layout(dataset), mapping.included, work_dir / "processed", RecordProcessingConfig()
    )
    splits = stratified_split(store.index["label"].tolist(), SplitConfig())
    config = TrainingConfig(**{**QUALITY_CONFIG, **(overrides or {})})
    settings = DeviceSettings(device=torch.device("cpu"))
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = train_model(
        store,
        splits,
        config.model_copy(update={"resume": False}),
        settings,
        work_dir / "models",
        work_dir / "training_log.json",
    )
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    outputs = evaluate_checkpoint(
        store, splits, result.best_checkpoint, settings, work_dir / "test_metrics.json", work_dir / "figures"
    )
    per_class = outputs.metrics["per_class"]
    nao = sum(per_class[label]["f1"] for label in NAO) / len(NAO)
    return QualityResult(
        test_macro_f1=float(outputs.metrics["macro_f1"]),
        test_mean_f1_nao=float(nao),
        train_wall_s=wall,
        train_cpu_s=cpu,
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        config=config.model_dump(),
    )


if __name__ == "__main__":  # an experiment: python -m benchmarks.cinc2017_quality WORK_DIR '{"epochs": 5}'
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    work = Path(sys.argv[1])
    outcome = run_quality(
        Path(__file__).resolve().parents[1].parent / "shared" / "data",
        work,
        json.loads(sys.argv[2]) if len(sys.argv) > 2 else None,
    )
    print(json.dumps(outcome.__dict__, indent=1))
