import re

import numpy as np
import pandas as pd
import pytest
import torch

from ecg_assets.core.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from ecg_assets.core.training import (
    DeviceSettings,
    TrainingConfig,
    inference_batches,
    predict_probabilities,
    train_model,
)
from ecg_assets.predict import load_model, main, predict_folder

from .test_preprocessing import _process, _small_cinc2017

CPU = DeviceSettings(device=torch.device("cpu"))


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory):
    """A tiny model trained on 16 synthetic CinC 2017 records (most longer than 10 s)."""
    tmp = tmp_path_factory.mktemp("predict")
    folder = _small_cinc2017(demo_root, tmp / "data", n=16)
    store, _ = _process(folder, tmp / "processed")
    everything = list(range(len(store)))
    config = TrainingConfig(epochs=1, batch_size=8, base_channels=8, inference_stride_s=4.0)
    result = train_model(store, {"train": everything, "val": everything}, config, CPU, tmp / "models", tmp / "log.json")
    return folder, store, result.best_checkpoint, tmp


def test_predictions_match_the_training_pipeline_exactly(trained):
    folder, store, checkpoint, tmp = trained
    report = predict_folder(checkpoint, folder, tmp / "predictions.csv")
    table = pd.read_csv(tmp / "predictions.csv", keep_default_na=False)
    assert report.scored == len(store) == len(table) and not report.failures
    assert list(table.columns) == ["record_id", "predicted_label", "p_AF", "p_NORM", "p_OTHER", "error"]
    assert table["record_id"].tolist() == store.index["record_id"].tolist()
    loaded = load_model(checkpoint, torch.device("cpu"))
    labels = store.index["label_index"].to_numpy()
    batches = inference_batches(store, np.arange(len(store)), labels, 64, loaded.training)
    assert len(batches.items) > len(store)  # long records are scored on several windows
    expected, _, _ = predict_probabilities(loaded.model, batches, CPU, loaded.class_mask)
    np.testing.assert_allclose(table[["p_AF", "p_NORM", "p_OTHER"]].to_numpy(), expected[:, [1, 3, 4]], atol=1e-5)
    assert (table["predicted_label"] == [("MI", "AF", "BBB", "NORM", "OTHER")[i] for i in expected.argmax(1)]).all()


def test_unreadable_records_are_listed_with_their_reason(trained):
    folder, _, checkpoint, tmp = trained
    broken = tmp / "with_broken"
    broken.mkdir()
    for path in folder.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "A99999.mat").write_bytes(b"not a MAT file")
    with (broken / "REFERENCE.csv").open("a") as handle:
        handle.write("A99999,N\n")
    assert main(["--model", str(checkpoint), "--input", str(broken), "--output", str(tmp / "p.csv")]) == 0
    table = pd.read_csv(tmp / "p.csv", keep_default_na=False).set_index("record_id")
    assert len(table) == 17 and table.loc["A99999", "predicted_label"] == ""
    assert "is not a MAT file" in table.loc["A99999", "error"]


def test_tampered_or_incompatible_checkpoints_are_refused(trained, tmp_path, caplog):
    folder, _, checkpoint, _ = trained
    tampered = tmp_path / "tampered.pth"
    tampered.write_bytes(checkpoint.read_bytes()[:-100])
    assert main(["--model", str(tampered), "--input", str(folder), "--output", str(tmp_path / "p.csv")]) == 2
    assert "not a loadable checkpoint" in caplog.text and not (tmp_path / "p.csv").exists()

    payload = load_checkpoint(checkpoint)
    payload.pop("format")
    payload["model_config"] = {**payload["model_config"], "base_channels": 16}
    save_checkpoint(tmp_path / "other.pth", payload)
    with pytest.raises(CheckpointError, match="does not match this code's model"):
        load_model(tmp_path / "other.pth", torch.device("cpu"))
    payload.pop("preprocess")
    save_checkpoint(tmp_path / "old.pth", payload)
    with pytest.raises(CheckpointError, match="lacks preprocess"):
        load_model(tmp_path / "old.pth", torch.device("cpu"))


def test_training_resumes_across_an_unchanged_reprocessing(trained):
    folder, store, checkpoint, tmp = trained
    again, report = _process(folder, tmp / "processed")
    assert report.reused == len(store) and again.generation != store.generation
    everything = list(range(len(again)))
    config = TrainingConfig(epochs=1, batch_size=8, base_channels=8, inference_stride_s=4.0)
    result = train_model(again, {"train": everything, "val": everything}, config, CPU, tmp / "models", tmp / "log.json")
    assert result.already_complete  # same content: the finished run is recognised, not repeated


def _copy_without_labels(folder, target):
    target.mkdir()
    for path in folder.glob("*.mat"):
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("dataset_yaml", [None, "format: cinc2017\n"])
def test_a_folder_of_unlabelled_recordings_is_scored(trained, tmp_path, dataset_yaml):
    folder, store, checkpoint, _ = trained
    new = _copy_without_labels(folder, tmp_path / "new_recordings")  # no REFERENCE: recordings to score
    if dataset_yaml:
        (new / "dataset.yaml").write_text(dataset_yaml)
    assert main(["--model", str(checkpoint), "--input", str(new), "--output", str(tmp_path / "p.csv")]) == 0
    table = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert sorted(table["record_id"]) == sorted(store.index["record_id"]) and (table["error"] == "").all()
    assert set(table["predicted_label"]) <= {"AF", "NORM", "OTHER"}


_NOT_UTF8_REFERENCE = {"A00001.mat": b"x", "REFERENCE.csv": b"A\xe91,N\n"}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda folder: (folder / "notes.txt").write_text("hello"), "no supported format recognised"),
        (
            lambda folder: (folder / "r1.mat").write_bytes(b"MATLAB 5.0"),
            "MAT files without WFDB headers need sampling_rate and lead_names stated in dataset.yaml",
        ),
        (
            lambda folder: (folder / "dataset.yaml").write_text("format: edf\n"),
            "dataset.yaml: unknown format 'edf'",
        ),
        (
            lambda folder: [(folder / name).write_bytes(data) for name, data in _NOT_UTF8_REFERENCE.items()],
            r"REFERENCE.csv is not valid UTF-8 text: byte 0xe9 at offset 1 \(line 1\)",
        ),
    ],
    ids=["unknown layout", "mat without dataset.yaml", "invalid dataset.yaml", "reference not utf-8"],
)
def test_a_folder_that_cannot_be_read_is_one_line_and_exit_code_2(trained, tmp_path, caplog, make, message):
    _, _, checkpoint, _ = trained
    folder = tmp_path / "input"
    folder.mkdir()
    make(folder)
    assert main(["--model", str(checkpoint), "--input", str(folder), "--output", str(tmp_path / "p.csv")]) == 2
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0] and re.search(message, errors[0]), errors
    assert not (tmp_path / "p.csv").exists()
