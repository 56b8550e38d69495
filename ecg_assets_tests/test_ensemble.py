"""Cross-validated ensembles: folds, out-of-fold estimate, one checkpoint, resume."""

import json
from collections import Counter

import numpy as np
import pytest
import torch

from ecg_assets.core import training as training_module
from ecg_assets.core.checkpoints import load_checkpoint
from ecg_assets.core.ensemble import fit_model, member_splits
from ecg_assets.core.evaluation import evaluate_checkpoint
from ecg_assets.core.scoring import MemberAverage, load_scoring_model, score_positions
from ecg_assets.core.splits import cross_validation_folds
from ecg_assets.core.store import RecordStoreWriter
from ecg_assets.core.training import DeviceSettings, TrainingConfig

CPU = DeviceSettings(device=torch.device("cpu"))
ENSEMBLE = dict(epochs=2, batch_size=8, base_channels=8, log_every_batches=100, ensemble_members=3)


@pytest.fixture
def toy_store(tmp_path):
    """Three separable classes (a sine of a class-specific frequency), with patient ids shared by pairs."""
    rng = np.random.default_rng(0)
    t = np.arange(1000) / 500.0
    writer = RecordStoreWriter(tmp_path / "processed", (12, 1000))
    for i in range(66):
        label = i % 3
        wave = np.sin(2 * np.pi * (2 + 6 * label) * t) + 0.3 * rng.normal(size=t.size)
        row = {"record_id": f"r{i}", "label": ["AF", "NORM", "OTHER"][label], "label_index": [1, 3, 4][label]}
        writer.append(np.tile(wave, (12, 1)).astype(np.float32), {**row, "patient_id": f"p{i // 6}"})
    store = writer.commit()
    splits = {"train": list(range(0, 48)), "val": list(range(48, 57)), "test": list(range(57, 66))}
    return store, splits, tmp_path


def test_folds_are_disjoint_cover_everything_keep_patients_together_and_balance_classes():
    rng = np.random.default_rng(1)
    labels = rng.choice(["N", "A", "O"], size=300, p=[0.6, 0.1, 0.3]).tolist()
    patients = [f"p{i // 3}" if i < 60 else None for i in range(300)]
    folds = cross_validation_folds(labels, patients, 5, seed=42)
    flat = [position for fold in folds for position in fold]
    assert sorted(flat) == list(range(300))
    for patient in {p for p in patients if p}:
        assert sum(any(patients[i] == patient for i in fold) for fold in folds) == 1
    for label, total in Counter(labels).items():
        per_fold = [sum(labels[i] == label for i in fold) for fold in folds]
        assert max(per_fold) - min(per_fold) <= 3, (label, per_fold)
    assert folds == cross_validation_folds(labels, patients, 5, seed=42)
    assert folds != cross_validation_folds(labels, patients, 5, seed=7)


def test_members_train_on_the_pool_minus_their_fold_and_never_see_the_test_split(toy_store):
    store, splits, _ = toy_store
    members = member_splits(store, splits, 3, seed=42)
    pool = set(splits["train"]) | set(splits["val"])
    assert set().union(*(set(m["val"]) for m in members)) == pool
    for member in members:
        assert set(member["train"]) | set(member["val"]) == pool and not set(member["train"]) & set(member["val"])
        assert not (set(member["train"]) | set(member["val"])) & set(splits["test"])


@pytest.mark.slow
def test_an_ensemble_is_one_checkpoint_with_an_out_of_fold_estimate_and_resumes(toy_store, monkeypatch):
    store, splits, tmp = toy_store
    config = TrainingConfig(**ENSEMBLE)
    fit = fit_model(store, splits, config, CPU, tmp / "models", tmp / "training_log.json")
    assert len(fit.members) == 3 and fit.is_ensemble
    assert fit.cross_validation["n_samples"] == len(splits["train"]) + len(splits["val"])
    low, high = fit.cross_validation["intervals"]["macro_f1"]
    assert low <= fit.cross_validation["macro_f1"] <= high
    for number in (1, 2, 3):
        assert (tmp / "models" / f"member-{number}" / "latest.pth").is_file()
    log = json.loads((tmp / "training_log.json").read_text())
    assert [member["member"] for member in log["members"]] == [1, 2, 3] and "cross_validation" in log

    scoring = load_scoring_model(fit.best_checkpoint)
    assert isinstance(scoring.model, MemberAverage) and scoring.members == 3
    probabilities, _, _ = score_positions(scoring, store, splits["test"], CPU)
    assert probabilities.shape == (9, 5) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # The ensemble's probabilities are the mean of its members'.
    members = [load_scoring_model(member.result.best_checkpoint) for member in fit.members]
    mean = np.mean([score_positions(member, store, splits["test"], CPU)[0] for member in members], axis=0)
    assert np.allclose(probabilities, mean, atol=1e-5)
    outputs = evaluate_checkpoint(store, splits, fit.best_checkpoint, CPU, tmp / "m.json", tmp / "figures")
    assert outputs.metrics["n_samples"] == 9

    # Re-fitting with the same config retrains nothing; a member killed mid-way resumes inside that member.
    calls = []
    real = training_module._Trainer.train_one_epoch
    monkeypatch.setattr(training_module._Trainer, "train_one_epoch", lambda self, *a: calls.append(1) or real(self))
    again = fit_model(store, splits, config, CPU, tmp / "models", tmp / "training_log.json")
    assert calls == [] and all(member.result.already_complete for member in again.members)
    assert (
        load_checkpoint(again.best_checkpoint)["members"][0]["fingerprint"]
        == load_checkpoint(fit.best_checkpoint)["members"][0]["fingerprint"]
    )
