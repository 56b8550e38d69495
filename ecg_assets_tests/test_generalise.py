"""Issue 11's training options: rhythm-feature fusion, EMA weights, last-epoch selection and polarity
flips. The default recipe uses the first three; checkpoints and runs of older code still load and resume."""

import json

import numpy as np
import pytest
import torch

from ecg_assets.core import training as training_module
from ecg_assets.core.averaging import ExponentialMovingAverage
from ecg_assets.core.checkpoints import load_checkpoint
from ecg_assets.core.data import StoreBatches, WindowBatches, flip_polarity
from ecg_assets.core.evaluation import evaluate_checkpoint
from ecg_assets.core.model import ECGResNet1D, ModelConfig, build_model, count_parameters
from ecg_assets.core.record_features import store_rhythm_features
from ecg_assets.core.rhythm import N_RHYTHM_FEATURES, RHYTHM_COLUMNS, rhythm_features
from ecg_assets.core.store import RecordStoreWriter
from ecg_assets.core.training import DeviceSettings, TrainingConfig, train_model, training_fingerprint

from .test_rhythm import irregular_beats, regular_beats, synthetic_ecg

CPU = DeviceSettings(device=torch.device("cpu"))
SMALL = dict(epochs=2, batch_size=8, base_channels=8, log_every_batches=1)
RECIPE = dict(
    SMALL,
    rhythm_features=True,
    rhythm_rbf=0,
    rhythm_aux_weight=0.0,
    ema_decay=0.9,
    selection="last",
    flip_probability=0.5,
)


@pytest.fixture(scope="module")
def rhythm_store(tmp_path_factory):
    """48 single-lead records told apart by rhythm: AF irregular, NORM 70 bpm, OTHER 130 bpm; every other
    record has a longer window (random crops, multi-window inference, features over the whole window)."""
    root = tmp_path_factory.mktemp("rhythm")
    writer = RecordStoreWriter(root / "processed", (12, 3000))
    for i in range(48):
        label = i % 3
        duration = 9.0 if i % 2 else 6.0
        beats = (irregular_beats(duration, seed=i), regular_beats(70, duration), regular_beats(130, duration))[label]
        lead = synthetic_ecg(beats, duration, seed=i)
        row = {"record_id": f"r{i}", "label": ("AF", "NORM", "OTHER")[label], "label_index": (1, 3, 4)[label]}
        canonical = np.zeros((12, 3000), np.float32)
        canonical[0] = lead[:3000]
        window = lead[None] if len(lead) > 3000 else None
        writer.append(canonical, {**row, "lead_mask": "1" + "0" * 11}, window)
    store = writer.commit()
    splits = {"train": list(range(32)), "val": list(range(32, 40)), "test": list(range(40, 48))}
    return store, splits


def test_model_config_defaults_rebuild_checkpoints_of_older_code():
    model = ECGResNet1D()
    assert model.rhythm is None and model.head[-1].in_features == 256
    old_config = {key: value for key, value in ModelConfig().model_dump().items() if key in _OLD_MODEL_FIELDS}
    rebuilt = build_model(old_config)
    rebuilt.load_state_dict(model.state_dict())  # strict: same keys and shapes
    assert not any(name.startswith("rhythm") for name in rebuilt.state_dict())
    older_training = {key: value for key, value in BEFORE_ISSUE_11.items() if key not in training_module._LEGACY_VALUES}
    scored_as = training_module.stored_training_config(older_training)  # what test_metrics/predict score it with
    assert not scored_as.rhythm_features and scored_as.selection == "best_val" and scored_as.ema_decay == 0.0


_OLD_MODEL_FIELDS = (
    "in_leads",
    "num_classes",
    "base_channels",
    "blocks_per_stage",
    "kernel_size",
    "stem_kernel_size",
    "stem_stride",
    "dropout",
)


# The training options as they stood before issue 11 (the older defaults).
BEFORE_ISSUE_11 = dict(training_module._LEGACY_VALUES, epochs=20, learning_rate=1e-3, stem_stride=4)


def test_a_run_of_older_code_keeps_its_fingerprint_so_it_resumes(rhythm_store):
    store, splits = rhythm_store
    config = TrainingConfig(**BEFORE_ISSUE_11)
    older = training_module.hashlib.sha256(
        json.dumps(
            {
                "config": {
                    key: value
                    for key, value in config.model_dump(exclude={"log_every_batches", "resume"}).items()
                    if key not in training_module._LEGACY_VALUES
                },
                "store": store.metadata.get("content_fingerprint") or store.generation,
                "splits": splits,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    assert training_fingerprint(config, store, splits) == older
    assert training_fingerprint(TrainingConfig(), store, splits) != older  # the new default is a new run


def test_fused_model_takes_the_feature_vector():
    model = ECGResNet1D(ModelConfig(base_channels=8, rhythm_features=N_RHYTHM_FEATURES)).train()
    x, rhythm = torch.randn(4, 12, 2000), torch.randn(4, N_RHYTHM_FEATURES)
    logits = model(x, rhythm)
    assert logits.shape == (4, 5)
    logits.sum().backward()
    assert model.rhythm[1].weight.grad.abs().sum() > 0  # the features reach the head
    with pytest.raises(ValueError, match="record-level features"):
        model(x)


def test_stage_widths_can_be_set_explicitly():
    model = ECGResNet1D(ModelConfig(stage_channels=(16, 32, 96, 192), stem_channels=24))
    assert model.stem[0].out_channels == 24 and model.head[-1].in_features == 192
    with pytest.raises(ValueError, match="one width per entry"):
        ECGResNet1D(ModelConfig(stage_channels=(16, 32)))


def test_ema_follows_the_weights_and_round_trips():
    model = torch.nn.Linear(3, 2)
    ema = ExponentialMovingAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    start = ema.model.weight.clone()
    ema.update(model)  # first update: decay min(0.5, 2/11)
    torch.testing.assert_close(ema.model.weight, start + (1 - 2 / 11) * 1.0)
    copy = ExponentialMovingAverage(model, decay=0.5)
    copy.load_state_dict(ema.state_dict())
    assert copy.updates == 1 and torch.equal(copy.model.weight, ema.model.weight)
    with pytest.raises(ValueError):
        ExponentialMovingAverage(model, decay=1.0)


def test_flip_polarity_inverts_whole_records():
    signals = torch.randn(64, 12, 10)
    original = signals.clone()
    flip_polarity(signals, 0.5, torch.Generator().manual_seed(0))
    flipped = (signals == -original).all(dim=(1, 2))
    assert flipped.any() and (~flipped).any() and torch.equal(signals[~flipped], original[~flipped])
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    flip_polarity(signals, 0.0, generator)  # off: draws nothing (older runs keep their random streams)
    assert torch.equal(generator.get_state(), state)


def test_store_features_are_computed_from_the_longest_signal_or_read_from_the_index(rhythm_store):
    store, _ = rhythm_store
    features = store_rhythm_features(store)
    assert features.shape == (len(store), N_RHYTHM_FEATURES) and not features.flags.writeable
    np.testing.assert_array_equal(features[1], rhythm_features(store.window_values(1), 500.0))
    np.testing.assert_array_equal(features[0], rhythm_features(store.signal(0)[:1], 500.0))
    assert store_rhythm_features(store) is features  # once per store generation
    store.index[list(RHYTHM_COLUMNS)] = 1.0  # as preprocessing will write them
    try:
        assert (store_rhythm_features(store) == 1.0).all()
    finally:
        store.index = store.index.drop(columns=list(RHYTHM_COLUMNS))


def test_batches_carry_the_features_of_their_records(rhythm_store):
    store, _ = rhythm_store
    features = np.arange(len(store) * 2, dtype=np.float32).reshape(-1, 2)
    labels = np.arange(len(store))
    signals, targets, rows = next(iter(StoreBatches(store, [3, 5, 7], labels, 3, features=features)))
    assert torch.equal(rows, torch.from_numpy(features[targets.numpy()]))
    for signals, targets, groups, rows in WindowBatches(store, [0, 1, 3], labels, 4, stride=500, features=features):
        assert torch.equal(rows, torch.from_numpy(features[targets.numpy()]))
    assert len(next(iter(StoreBatches(store, [3, 5], labels, 2)))) == 2  # no features: as before


def test_fused_ema_last_epoch_run_trains_and_evaluates(rhythm_store, tmp_path):
    store, splits = rhythm_store
    config = TrainingConfig(**{**RECIPE, "epochs": 3})
    reference = train_model(store, splits, config, CPU, tmp_path / "a", tmp_path / "a.json")
    history = json.loads((tmp_path / "a.json").read_text())["epochs"]
    assert all(row["val_macro_f1"] is not None for row in history)  # every epoch is validated and logged
    assert reference.best_epoch == 3 and reference.parameters > 0  # the last one is kept
    best, latest = load_checkpoint(reference.best_checkpoint), load_checkpoint(reference.latest_checkpoint)
    assert best["model_config"]["rhythm_features"] == N_RHYTHM_FEATURES
    assert "training_model_state" in latest and latest["ema_updates"] > 0
    assert all(torch.equal(best["model_state"][key], latest["model_state"][key]) for key in best["model_state"])
    outputs = evaluate_checkpoint(store, splits, reference.best_checkpoint, CPU, tmp_path / "m.json", tmp_path / "f")
    assert outputs.metrics["n_samples"] == len(splits["test"])
    # Resuming such a run bit for bit: test_training.test_interrupted_run_resumes_to_the_same_weights.


def test_without_a_validation_split_the_last_epoch_is_kept(rhythm_store, tmp_path):
    store, splits = rhythm_store
    config = TrainingConfig(**{**RECIPE, "selection": "best_val", "epochs": 2})
    result = train_model(store, {**splits, "val": []}, config, CPU, tmp_path / "models", tmp_path / "log.json")
    history = json.loads((tmp_path / "log.json").read_text())["epochs"]
    assert [row["val_macro_f1"] for row in history] == [None, None] and result.best_epoch == 2


@pytest.mark.slow
def test_fused_ema_model_trains_under_torchrun_and_resumes_bit_for_bit(rhythm_store, tmp_path):
    from .test_distributed import _torchrun

    store, splits = rhythm_store
    root = store.directory.parent
    (root / "splits.json").write_text(json.dumps(splits))
    config = TrainingConfig(**{**RECIPE, "epochs": 3, "rhythm_aux_weight": 0.5})
    killed = _torchrun(root, 2, tmp_path / "killed", config, "--crash-after-epoch", "2")
    assert killed.returncode != 0 and "killed after epoch 2" in killed.stderr
    resumed = _torchrun(root, 2, tmp_path / "killed", config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    uninterrupted = _torchrun(root, 2, tmp_path / "whole", config)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    expected = load_checkpoint(tmp_path / "whole" / "models" / "latest.pth")
    got = load_checkpoint(tmp_path / "killed" / "models" / "latest.pth")
    assert expected["model_config"]["rhythm_features"] == N_RHYTHM_FEATURES
    for name in ("model_state", "training_model_state"):  # the average and the raw weights
        assert all(torch.equal(expected[name][key], got[name][key]) for key in expected[name]), name


def test_auxiliary_rhythm_head_trains_and_is_left_out_at_inference(rhythm_store, tmp_path):
    store, splits = rhythm_store
    config = TrainingConfig(**{**RECIPE, "epochs": 1, "rhythm_aux_weight": 0.5})
    assert config.architecture().rhythm_head and not TrainingConfig(**RECIPE).architecture().rhythm_head
    result = train_model(store, splits, config, CPU, tmp_path / "models", tmp_path / "log.json")
    model = build_model(load_checkpoint(result.best_checkpoint)["model_config"])
    assert model.rhythm_head is not None
    x, rhythm = torch.randn(2, 12, 3000), torch.randn(2, N_RHYTHM_FEATURES)
    model.eval()
    logits, auxiliary = model(x, rhythm, auxiliary=True)
    assert torch.equal(logits, model(x, rhythm)) and auxiliary.shape == (2, 5)
    outputs = evaluate_checkpoint(store, splits, result.best_checkpoint, CPU, tmp_path / "m.json", tmp_path / "f")
    assert outputs.metrics["n_samples"] == len(splits["test"])


def test_radial_encoding_of_the_features():
    model = ECGResNet1D(ModelConfig(base_channels=8, rhythm_features=N_RHYTHM_FEATURES, rhythm_rbf=8)).train()
    encoding = model.rhythm[0]
    rhythm = torch.randn(16, N_RHYTHM_FEATURES)
    encoded = encoding(rhythm)
    assert encoded.shape == (16, N_RHYTHM_FEATURES * 9) and not encoding.norm.affine
    assert float(encoded[:, N_RHYTHM_FEATURES:].max()) <= 1.0
    model(torch.randn(16, 12, 1000), rhythm).sum().backward()
    assert model.rhythm[1].weight.grad.abs().sum() > 0
    assert TrainingConfig(rhythm_features=True, rhythm_rbf=8).architecture().rhythm_rbf == 8
    assert TrainingConfig(rhythm_features=False, rhythm_rbf=8).architecture().rhythm_rbf == 0  # no features: none


def test_the_default_recipe_fuses_rhythm_keeps_the_averaged_last_epoch_and_has_about_1_6m_parameters():
    config = TrainingConfig()
    assert config.rhythm_features and config.selection == "last" and config.ema_decay > 0
    assert config.architecture().rhythm_features == N_RHYTHM_FEATURES and config.architecture().rhythm_head
    assert 1.4e6 < count_parameters(ECGResNet1D(config.architecture())) < 1.7e6


def test_the_default_is_the_recipe_the_benchmark_cross_validated():
    from benchmarks.cinc2017_quality import FINAL_MEMBER

    measured = TrainingConfig(**FINAL_MEMBER).model_dump(exclude={"log_every_batches"})
    assert TrainingConfig().model_dump(exclude={"log_every_batches"}) == measured
