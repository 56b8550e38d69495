import json

import numpy as np
import pytest
import torch

from ecg_assets.core import training as training_module
from ecg_assets.core.checkpoints import CheckpointError, load_checkpoint
from ecg_assets.core.evaluation import evaluate_checkpoint
from ecg_assets.core.store import RecordStoreWriter
from ecg_assets.core.training import DeviceSettings, TrainingConfig, class_weights, cosine_with_warmup, train_model

CPU = DeviceSettings(device=torch.device("cpu"))
FAST = dict(epochs=2, batch_size=8, base_channels=8, log_every_batches=1)


@pytest.fixture
def toy_store(tmp_path):
    """Three separable classes: a sine of a class-specific frequency on every lead."""
    rng = np.random.default_rng(0)
    t = np.arange(1000) / 500.0
    writer = RecordStoreWriter(tmp_path / "processed", (12, 1000))
    for i in range(60):
        label = i % 3
        wave = np.sin(2 * np.pi * (2 + 6 * label) * t) + 0.3 * rng.normal(size=t.size)
        writer.append(
            np.tile(wave, (12, 1)).astype(np.float32),
            {"record_id": f"r{i}", "label": ["AF", "NORM", "OTHER"][label], "label_index": [1, 3, 4][label]},
        )
    store = writer.commit()
    splits = {"train": list(range(0, 42)), "val": list(range(42, 51)), "test": list(range(51, 60))}
    return store, splits, tmp_path


@pytest.mark.slow  # a full training loop
def test_training_writes_checkpoints_and_log(toy_store):
    store, splits, tmp = toy_store
    result = train_model(store, splits, TrainingConfig(**FAST), CPU, tmp / "models", tmp / "training_log.json")
    assert result.epochs_run == 2 and result.best_checkpoint.is_file() and result.latest_checkpoint.is_file()
    log = json.loads((tmp / "training_log.json").read_text())
    assert [row["epoch"] for row in log["epochs"]] == [1, 2]
    assert {"train_loss", "val_loss", "val_macro_f1", "learning_rate"} <= set(log["epochs"][0])
    latest = load_checkpoint(result.latest_checkpoint)
    assert latest["epoch"] == 2 and latest["finished"] and "optimizer_state" in latest
    assert latest["class_mask"] == [False, True, False, True, True]


@pytest.mark.slow  # a full training loop
def test_rerun_with_same_config_does_not_retrain_and_changed_config_starts_fresh(toy_store):
    store, splits, tmp = toy_store
    train_model(store, splits, TrainingConfig(**FAST), CPU, tmp / "models", tmp / "log.json")
    again = train_model(store, splits, TrainingConfig(**FAST), CPU, tmp / "models", tmp / "log.json")
    assert again.already_complete and again.resumed_from_epoch == 2
    changed = train_model(store, splits, TrainingConfig(**{**FAST, "seed": 1}), CPU, tmp / "models", tmp / "log.json")
    assert not changed.already_complete and changed.resumed_from_epoch is None
    assert any("starting fresh" in note for note in changed.notes)


@pytest.mark.slow  # a full training loop
def test_interrupted_run_resumes_to_the_same_weights(toy_store, monkeypatch):
    store, splits, tmp = toy_store
    # The default recipe's stateful parts: the weights' moving average and the fused rhythm branch.
    config = TrainingConfig(**{**FAST, "epochs": 3, "ema_decay": 0.99, "rhythm_features": True})
    reference = train_model(store, splits, config, CPU, tmp / "a", tmp / "a.json")

    real_log_writer = training_module._write_training_log

    def crash_after_epoch_two(path, config, settings, history, *args):
        real_log_writer(path, config, settings, history, *args)
        if len(history) == 2:
            raise KeyboardInterrupt("killed after epoch 2")

    monkeypatch.setattr(training_module, "_write_training_log", crash_after_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_model(store, splits, config, CPU, tmp / "b", tmp / "b.json")
    monkeypatch.setattr(training_module, "_write_training_log", real_log_writer)
    assert load_checkpoint(tmp / "b" / "latest.pth")["epoch"] == 2

    resumed = train_model(store, splits, config, CPU, tmp / "b", tmp / "b.json")
    assert resumed.resumed_from_epoch == 2 and resumed.epochs_run == 3
    assert "resuming from latest.pth after epoch 2" in resumed.notes
    expected, got = load_checkpoint(reference.latest_checkpoint), load_checkpoint(resumed.latest_checkpoint)
    for name in ("model_state", "training_model_state"):  # the average and the raw weights
        assert all(torch.equal(expected[name][key], got[name][key]) for key in expected[name]), name  # bit for bit


@pytest.mark.slow  # a full training loop
def test_evaluation_writes_metrics_and_figures(toy_store):
    store, splits, tmp = toy_store
    result = train_model(store, splits, TrainingConfig(**FAST), CPU, tmp / "models", tmp / "log.json")
    outputs = evaluate_checkpoint(
        store, splits, result.best_checkpoint, CPU, tmp / "test_metrics.json", tmp / "figures"
    )
    metrics = json.loads(outputs.metrics_file.read_text())
    assert metrics["classes"] == ["AF", "NORM", "OTHER"] and metrics["n_samples"] == 9
    assert {"macro_f1", "micro_f1", "weighted_f1", "per_class", "confusion_matrix", "classification_report"} <= set(
        metrics
    )
    assert np.asarray(metrics["confusion_matrix"]).sum() == 9
    low, high = metrics["intervals"]["macro_f1"]
    assert low <= metrics["macro_f1"] <= high and metrics["intervals"]["n_samples"] == 9
    assert set(metrics["intervals"]["per_class"]) == set(metrics["per_class"])
    for path in (outputs.f1_plot, outputs.history_plot, outputs.confusion_plot):
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_tampered_checkpoint_is_refused(tmp_path):
    path = tmp_path / "best.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(path)


def test_class_weights_and_schedule():
    weights = class_weights(np.array([1, 1, 1, 3]), 5)
    assert weights[0] == 0 and weights[1] < weights[3]
    multiplier = cosine_with_warmup(total_steps=100, warmup_steps=10)
    assert multiplier(0) == pytest.approx(0.1) and multiplier(9) == pytest.approx(1.0)
    assert multiplier(55) == pytest.approx(0.5) and multiplier(100) == pytest.approx(0.0)


@pytest.mark.slow  # a full training loop
def test_early_stopping_on_validation_macro_f1(toy_store, monkeypatch, caplog):
    store, splits, tmp = toy_store
    scores = iter([0.5, 0.6, 0.55, 0.58, 0.9, 0.9])
    monkeypatch.setattr(training_module._Trainer, "validate", lambda self: (1.0, next(scores)))
    config = TrainingConfig(**{**FAST, "epochs": 6, "early_stopping_patience": 2, "selection": "best_val"})
    with caplog.at_level("INFO", logger="ecg_assets"):
        result = train_model(store, splits, config, CPU, tmp / "models", tmp / "log.json")
    assert result.stopped_early and result.epochs_run == 4 and result.best_epoch == 2
    assert "early stopping" in caplog.text
    assert load_checkpoint(result.best_checkpoint)["epoch"] == 2
    with pytest.raises(ValueError, match="early_stopping_patience needs selection 'best_val'"):
        TrainingConfig(early_stopping_patience=2, selection="last")


@pytest.mark.slow  # a full training loop
def test_batch_progress_and_prefetch_give_the_same_run(toy_store, caplog):
    store, splits, tmp = toy_store
    with caplog.at_level("INFO", logger="ecg_assets"):
        plain = train_model(store, splits, TrainingConfig(**FAST), CPU, tmp / "a", tmp / "a.json")
    assert "epoch 1 batch 1/6 loss" in caplog.text and "samples/s" in caplog.text
    prefetching = DeviceSettings(device=torch.device("cpu"), prefetch_batches=2)
    threaded = train_model(store, splits, TrainingConfig(**FAST), prefetching, tmp / "b", tmp / "b.json")
    expected = load_checkpoint(plain.latest_checkpoint)["model_state"]
    got = load_checkpoint(threaded.latest_checkpoint)["model_state"]
    assert all(torch.equal(expected[key], got[key]) for key in expected)
